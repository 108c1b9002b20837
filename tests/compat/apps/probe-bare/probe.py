"""What an instance can import: sys.path and which packages resolve."""

import importlib.util
import sys

NAMES = ["flask", "fastapi", "pydantic", "starlette", "requests", "httpx", "yaml",
         "aws_lambda_powertools", "uvicorn", "typer", "rich", "cryptography", "croniter",
         "detect_secrets", "setuptools", "_distutils_hack", "pip", "msgspec", "skiff"]


def handler(event, context):
    return {"path": sys.path, "importable": {n: importlib.util.find_spec(n) is not None
                                             for n in NAMES}}
