"""What a Task's ``Resource`` names on Skiff: an app, and how its result comes back.

Three forms, so AWS definitions run unchanged:

- ``arn:aws:states:::lambda:invoke`` with ``FunctionName`` (an app name, or a Lambda
  ARN whose function part is the app name) and ``Payload`` in the task input; the result
  is wrapped as AWS's optimized integration wraps it (``{"Payload": ..., "StatusCode": 200,
  "ExecutedVersion": "$LATEST"}``);
- a Lambda function ARN ``arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]``: the
  task input is the event, the result is the handler's own;
- ``skiff:app/NAME``: the same, Skiff's short form.

Pure: the executor does the invoking; a deploy calls :func:`apps_named` to refuse a
machine whose tasks name apps that do not exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .definition import StateMachine
from .errors import TASK_FAILED, StatesError
from .integrations import is_service

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
#: the callback form: the app is invoked, and the task waits for SendTaskSuccess /
#: SendTaskFailure naming its token ($$.Task.Token, passed in the Payload)
WAIT_FOR_TOKEN = ".waitForTaskToken"
SKIFF_APP = "skiff:app/"


@dataclass(frozen=True)
class Target:
    app: str
    payload: Any
    wrap: bool  # the result as lambda:invoke returns it, {"Payload": ...}
    callback: bool = False  # .waitForTaskToken: the result comes by SendTaskSuccess


def function_app(name: str) -> str:
    """The app a Lambda FunctionName means: ``NAME``, ``NAME:QUALIFIER``,
    ``ACCOUNT:function:NAME`` or a function ARN."""
    if name.startswith("arn:"):
        parts = name.split(":")
        return parts[6] if len(parts) > 6 else ""
    parts = name.split(":")
    if len(parts) >= 3 and parts[1] == "function":
        return parts[2]
    return parts[0]


def target(resource: str, value: Any) -> Target:
    """Where a task goes; an unusable resource or input is States.TaskFailed (what AWS
    answers a Lambda integration called with no FunctionName, say)."""
    if resource == LAMBDA_INVOKE + WAIT_FOR_TOKEN:
        return Target(**{**target(LAMBDA_INVOKE, value).__dict__, "callback": True})
    if resource == LAMBDA_INVOKE:
        if not isinstance(value, Mapping) or not isinstance(value.get("FunctionName"), str):
            raise StatesError(TASK_FAILED, "lambda:invoke needs a FunctionName (an app name) "
                                           "in the task's Parameters or Arguments")
        app = function_app(value["FunctionName"])
        return Target(app, value.get("Payload"), True)
    if resource.startswith("arn:aws:lambda:"):
        return Target(function_app(resource), value, False)
    if resource.startswith(SKIFF_APP):
        return Target(resource[len(SKIFF_APP):], value, False)
    raise StatesError(TASK_FAILED, f"the resource {resource!r} is not one Skiff runs: use "
                                   f"{LAMBDA_INVOKE}, a Lambda function ARN, skiff:app/NAME or "
                                   "a service integration (sqs:sendMessage, events:putEvents, "
                                   "states:startExecution, skiff:queue/, skiff:kv/)")


def apps_named(machine: StateMachine) -> dict[str, str]:
    """Every app the machine's tasks name where the definition says it literally
    (``FunctionName.$`` is only known when the task runs), keyed by app, valued by the
    state naming it; plus "" for a resource that is no Skiff form."""
    out: dict[str, str] = {}
    for st in machine.states.values():
        if st.type == "Task":
            resource = st.get("Resource")
            args = st.get("Parameters") if "Parameters" in st else st.get("Arguments")
            if resource in (LAMBDA_INVOKE, LAMBDA_INVOKE + WAIT_FOR_TOKEN):
                name = args.get("FunctionName") if isinstance(args, Mapping) else None
                if isinstance(name, str) and not name.startswith("{%"):
                    out.setdefault(function_app(name), st.name)
            elif isinstance(resource, str) and not is_service(resource):
                try:
                    out.setdefault(target(resource, None).app, st.name)
                except StatesError:
                    out.setdefault("", st.name)
        for b in st.branches:
            for app, state in apps_named(b).items():
                out.setdefault(app, state)
    return out
