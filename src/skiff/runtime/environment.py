"""The environment an instance starts with: the variables Lambda's Python runtime
sets (so Powertools, boto3 and friends import and configure themselves as on
Lambda) and the ones Cloud Run sets (``K_SERVICE``...), computed here once for
the instance process and for ``skiff.testing``.

A user's ``spec.env`` cannot override them: Lambda reserves these names too.
"""

from __future__ import annotations

import sys
import time
import uuid

#: Where boto3, Powertools and the AWS SDKs look for the region; a Skiff node
#: has none of its own, so the operator names one (SKIFF_AWS_REGION).
DEFAULT_REGION = "us-east-1"


def log_stream_name(version: str, *, now: float | None = None) -> str:
    """Lambda's name for one execution environment's log stream:
    ``YYYY/MM/DD/[version]<32 hex>``, fixed when the environment starts."""
    day = time.strftime("%Y/%m/%d", time.gmtime(now))
    return f"{day}/[{version}]{uuid.uuid4().hex}"


def instance_environment(*, app: str, revision: str, handler: str | None, code_dir: str,
                         memory_mb: int, region: str = DEFAULT_REGION,
                         initialization: str = "on-demand") -> dict[str, str]:
    """The reserved variables of one instance (Lambda's documented set, minus
    credentials: Skiff hands an app none; plus Cloud Run's service names)."""
    env = {
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}",
        "AWS_LAMBDA_FUNCTION_NAME": app,
        "AWS_LAMBDA_FUNCTION_VERSION": revision,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_INITIALIZATION_TYPE": initialization,
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{app}",
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream_name(revision),
        "LAMBDA_TASK_ROOT": code_dir,
        "K_SERVICE": app,
        "K_REVISION": f"{app}-{revision[:12]}",
        "K_CONFIGURATION": app,
        "SKIFF_APP": app,
        "SKIFF_REVISION": revision,
    }
    if handler:
        env["_HANDLER"] = handler
    return env


#: What Lambda sets unless the function does; an app may set its own.
DEFAULTS = {"LANG": "en_US.UTF-8", "TZ": ":UTC"}
