"""An app with a dependency of its own (requirements.txt), served from its
environment inside the minimal root."""

import itsdangerous


def handler(event, context):
    signer = itsdangerous.Signer("k")
    return {"signed": signer.sign(b"hi").decode(), "module": itsdangerous.__file__}
