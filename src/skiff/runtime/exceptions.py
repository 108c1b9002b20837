"""Errors raised by the runtime, inside an instance process.

    SkiffError
    ├── DeployError
    │   └── LoadError         422 deploy_failed    the app could not be imported or recognised
    └── InvocationError
        ├── BadResult         502 bad_result       a handler returned something HTTP can't carry
        └── NotSupported      400 not_supported    e.g. an event sent to an ASGI app

Exceptions raised by a handler itself are not wrapped: they reach the instance
loop unchanged, which reports them as a ``Failure`` frame.
"""

from __future__ import annotations

from skiff.errors import DeployError, InvocationError


class LoadError(DeployError):
    """Importing or recognising the app failed. ``traceback_summary`` is short:
    the last frames within the app's own code and the exception line."""

    def __init__(self, message: str, traceback_summary: str = "") -> None:
        super().__init__(message)
        self.traceback_summary = traceback_summary


class BadResult(InvocationError):
    code = "bad_result"


class NotSupported(InvocationError):
    status = 400
    code = "not_supported"
