"""The hello handler as a Google Cloud Functions HTTP function, for
functions-framework (Flask request by default, Starlette request with --asgi)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "hello"))
from handler import handler  # noqa: E402


def hello(request):
    args = getattr(request, "args", None)  # Flask
    if args is None:
        args = request.query_params  # Starlette, under --asgi
    return handler({"queryStringParameters": dict(args) or None}, None)
