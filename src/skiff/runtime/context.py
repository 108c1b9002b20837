"""Per-invocation context: ``InvokeContext`` is what the instance loop knows
about one call; ``LambdaContext`` is the view of it a Lambda handler expects."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

# Lambda's own ceiling; reported when the caller set no deadline (deadline_ms 0).
_MAX_REMAINING_MS = 900_000


@dataclass(slots=True)
class InvokeContext:
    request_id: str
    app: str
    revision: str
    memory_mb: int = 256
    deadline_ms: float = 0.0  # epoch milliseconds; 0 means no deadline


class LambdaContext:
    """The ``context`` argument of a Lambda handler (the attributes of the AWS
    Python runtime's context object). Derived names are properties so that
    building one per request costs only the slot stores."""

    __slots__ = ("_ctx", "aws_request_id", "function_name", "function_version",
                 "memory_limit_in_mb")

    identity = None
    client_context = None
    tenant_id = None

    def __init__(self, ctx: InvokeContext) -> None:
        self._ctx = ctx
        self.aws_request_id = ctx.request_id
        self.function_name = ctx.app
        self.function_version = ctx.revision
        self.memory_limit_in_mb = int(ctx.memory_mb)

    @property
    def invoked_function_arn(self) -> str:
        region = os.environ.get("AWS_REGION", "us-east-1")
        return f"arn:aws:lambda:{region}:000000000000:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        # Lambda names a stream per execution environment (an instance process here),
        # set in the environment when it starts
        stream = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        if not stream:
            day = time.strftime("%Y/%m/%d", time.gmtime())
            stream = f"{day}/[{self.function_version}]{os.getpid():08x}"
        return stream

    def get_remaining_time_in_millis(self) -> int:
        deadline = self._ctx.deadline_ms
        if not deadline:
            return _MAX_REMAINING_MS
        return max(0, int(deadline - time.time() * 1000))

    def __repr__(self) -> str:
        return (f"LambdaContext(aws_request_id={self.aws_request_id!r}, "
                f"function_name={self.function_name!r}, function_version={self.function_version!r})")
