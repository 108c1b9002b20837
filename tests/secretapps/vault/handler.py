import hashlib
import os


def handler(event, context):
    # never echo a secret: a fingerprint is enough to tell versions apart
    return {"fingerprint": hashlib.sha256(os.environ["DB_PASSWORD"].encode()).hexdigest()[:12]}
