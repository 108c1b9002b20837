"""The Step Functions JSON protocol at ``POST /_skiff/sfn``, so boto3's ``stepfunctions``
client and the AWS CLI work against Skiff with an endpoint URL.

AWS's protocol: ``X-Amz-Target: AWSStepFunctions.<Operation>``, a JSON body
(``application/x-amz-json-1.0``), answers in JSON with dates as epoch seconds, and
errors as ``{"__type": "ExecutionDoesNotExist", "message": ...}`` with a 400, which
botocore raises as ``client.exceptions.ExecutionDoesNotExist``.

Authentication: the route sits behind the admin guard, so it takes the admin token (or
a service token) as ``Authorization: Bearer``. A boto3 client signs with SigV4, whose
signature Skiff cannot check without a shared AWS secret; instead of half-checking it,
the client sends the token (``skiff.gateway.sfn`` docs, README: a ``before-send``
hook that replaces the Authorization header). Reading needs the viewer role,
starting and stopping executions and deploying machines the operator role.

StartSyncExecution: botocore prefixes the host with ``sync-`` for it; create the client
with ``Config(inject_host_prefix=False)``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from skiff.errors import NotFound, SkiffError
from skiff.governance import Principal, Role
from skiff.workflows import validate
from skiff.workflows.durations import state_durations

PATH = "/_skiff/sfn"
ADMIN_PATH = "/_skiff/api/sfn"
TARGET = "AWSStepFunctions."
CONTENT_TYPE = "application/x-amz-json-1.0"
#: GetExecutionHistory / ListExecutions pages (AWS: at most 1000 per call).
MAX_RESULTS = 1000

_READS = {"DescribeExecution", "GetExecutionHistory", "ListExecutions", "ListStateMachines",
          "DescribeStateMachine", "ValidateStateMachineDefinition"}


def _answer(body: dict, status: int = 200) -> Response:
    return Response(json.dumps(body), status_code=status, media_type=CONTENT_TYPE)


def _fault(aws_type: str, message: str, status: int = 400) -> Response:
    return _answer({"__type": aws_type, "message": message}, status)


def _text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _input(body: dict) -> Any:
    raw = body.get("input")
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, str):
        raise SkiffError("input must be a JSON text", aws_type="InvalidExecutionInput", status=400)
    try:
        return json.loads(raw)
    except ValueError:
        raise SkiffError(f"Invalid execution input: {raw[:200]!r} is not JSON",
                         aws_type="InvalidExecutionInput", status=400) from None


def _definition(body: dict) -> Any:
    raw = body.get("definition")
    if not isinstance(raw, str):
        raise SkiffError("definition is required (the ASL JSON as a string)",
                         aws_type="InvalidDefinition", status=400)
    return raw


def mount(api: FastAPI, sfn: Callable[[], Any], caller: Callable[[Request], Principal]) -> None:
    """Add the route to the admin API; ``sfn()`` gives the platform's StepFunctions."""

    # the admin API's own view (JSON, snake case), for the dashboard and scripts
    @api.get(f"{ADMIN_PATH}/machines")
    async def machines(request: Request) -> list[dict]:
        caller(request).require(Role.viewer, "listing state machines")
        return [{"name": r.name, "arn": _machine_arn(r.name), "revision": r.revision,
                 "type": r.type, "app": r.app, "triggers": list(r.triggers),
                 "created": r.created} for r in sfn().history.machines()]

    @api.get(f"{ADMIN_PATH}/executions")
    async def executions(request: Request, machine: str | None = None,
                         status: str | None = None, limit: int = 100) -> list[dict]:
        caller(request).require(Role.viewer, "listing executions")
        rows = sfn().executions(machine, status, max(1, min(limit, MAX_RESULTS)))
        return [_admin_execution(r) for r in rows]

    @api.get(f"{ADMIN_PATH}/executions/{{arn}}")
    async def execution(request: Request, arn: str) -> dict:
        """An execution with the duration of every state it entered."""
        caller(request).require(Role.viewer, "reading an execution")
        platform = sfn()
        try:
            out = _admin_execution(platform.describe(arn))
            history = platform.events(arn)
        except SkiffError as exc:
            if exc.details.get("aws_type") != "ExecutionDoesNotExist":
                raise
            raise NotFound(f"no execution {arn!r}: `skiff sfn ls MACHINE` lists them",
                           code="execution_not_found") from None
        out["states"] = state_durations(history)
        return out

    @api.post(PATH, include_in_schema=False)
    async def step_functions(request: Request) -> Response:
        target = request.headers.get("x-amz-target", "")
        if not target.startswith(TARGET):
            return _fault("UnknownOperationException",
                          f"X-Amz-Target must be {TARGET}<Operation>, got {target[:100]!r}")
        op = target[len(TARGET):]
        handler = _OPERATIONS.get(op)
        if handler is None:
            return _fault("UnknownOperationException", f"Skiff does not implement {op[:100]}")
        try:
            caller(request).require(Role.viewer if op in _READS else Role.operator,
                                    f"AWSStepFunctions.{op}")
            raw = await request.body()
            body = json.loads(raw) if raw.strip() else {}
            if not isinstance(body, dict):
                raise ValueError
        except SkiffError as exc:
            return _fault("AccessDeniedException", exc.message, exc.status)
        except (ValueError, RecursionError):
            return _fault("SerializationException", "the request body must be a JSON object")
        try:
            return _answer(await handler(sfn(), body))
        except SkiffError as exc:
            aws_type = exc.details.get("aws_type") or {
                "invalid_definition": "InvalidDefinition"}.get(exc.code, "ValidationException")
            return _fault(aws_type, exc.message, exc.status if exc.status < 500 else 500)


# -- operations: (the platform's StepFunctions, the request) -> the answer -----------------
async def _create(sfn: Any, body: dict) -> dict:
    row = sfn.save(str(body.get("name", "")), _definition(body), body.get("type", "STANDARD"))
    return {"stateMachineArn": _machine_arn(row.name), "creationDate": row.created,
            "stateMachineVersionArn": f"{_machine_arn(row.name)}:{row.revision}"}


async def _update(sfn: Any, body: dict) -> dict:
    current = sfn.machine_row(str(body.get("stateMachineArn", "")))
    row = sfn.save(current.name, _definition(body) if "definition" in body
                   else current.definition, current.type, current.app, current.triggers)
    return {"updateDate": row.created, "revisionId": row.revision}


async def _delete(sfn: Any, body: dict) -> dict:
    sfn.delete_machine(str(body.get("stateMachineArn", "")))
    return {}


async def _describe_machine(sfn: Any, body: dict) -> dict:
    row = sfn.machine_row(str(body.get("stateMachineArn", "")))
    return {"stateMachineArn": _machine_arn(row.name), "name": row.name, "status": "ACTIVE",
            "definition": row.definition, "roleArn": "arn:aws:iam::000000000000:role/skiff",
            "type": row.type, "creationDate": row.created, "revisionId": row.revision}


async def _list_machines(sfn: Any, body: dict) -> dict:
    return {"stateMachines": [{"stateMachineArn": _machine_arn(r.name), "name": r.name,
                               "type": r.type, "creationDate": r.created}
                              for r in sfn.history.machines()]}


async def _validate(sfn: Any, body: dict) -> dict:
    found = validate(_definition(body))
    if not found:
        try:
            sfn.check(body["definition"])
        except SkiffError as exc:
            found = list(getattr(exc, "diagnostics", []))
    return {"result": "FAIL" if found else "OK",
            "diagnostics": [d.to_dict() for d in found], "truncated": False}


async def _start(sfn: Any, body: dict) -> dict:
    row = await sfn.start_execution(str(body.get("stateMachineArn", "")), _input(body),
                                    body.get("name"))
    return {"executionArn": row.arn, "startDate": row.start}


async def _start_sync(sfn: Any, body: dict) -> dict:
    row = await sfn.start_sync(str(body.get("stateMachineArn", "")), _input(body),
                               body.get("name"))
    return _execution(row)


async def _describe(sfn: Any, body: dict) -> dict:
    return _execution(sfn.describe(str(body.get("executionArn", ""))))


async def _stop(sfn: Any, body: dict) -> dict:
    row = await sfn.stop_execution(str(body.get("executionArn", "")), body.get("error"),
                                   body.get("cause"))
    return {"stopDate": row.stop or row.start}


async def _list(sfn: Any, body: dict) -> dict:
    limit = _max_results(body)
    if body.get("stateMachineArn"):
        sfn.machine_row(str(body["stateMachineArn"]))  # StateMachineDoesNotExist, as on AWS
    rows = sfn.executions(str(body.get("stateMachineArn", "")) or None,
                          body.get("statusFilter"), limit)
    return {"executions": [{k: v for k, v in (
        ("executionArn", r.arn), ("stateMachineArn", _machine_arn(r.machine)),
        ("name", r.name), ("status", r.status), ("startDate", r.start),
        ("stopDate", r.stop)) if v is not None} for r in rows]}


async def _history(sfn: Any, body: dict) -> dict:
    events = aws_events(sfn.events(str(body.get("executionArn", ""))),
                        bool(body.get("includeExecutionData", True)))
    if body.get("reverseOrder"):
        events.reverse()
    start = int(body["nextToken"]) if str(body.get("nextToken", "")).isdigit() else 0
    limit = _max_results(body)
    page = events[start:start + limit]
    out: dict = {"events": page}
    if start + limit < len(events):
        out["nextToken"] = str(start + limit)
    return out


async def _redrive(sfn: Any, body: dict) -> dict:
    await sfn.redrive(str(body.get("executionArn", "")))
    return {"redriveDate": time.time()}


def _admin_execution(row: Any) -> dict:
    stop = row.stop
    return {"arn": row.arn, "name": row.name, "machine": row.machine,
            "revision": row.revision, "status": row.status, "start": row.start, "stop": stop,
            "duration_ms": None if stop is None else round((stop - row.start) * 1000, 3),
            "input": row.input, "output": row.output, "error": row.error, "cause": row.cause}


def _max_results(body: dict) -> int:
    n = body.get("maxResults") or MAX_RESULTS
    return max(1, min(int(n), MAX_RESULTS)) if isinstance(n, int) else MAX_RESULTS


def _machine_arn(name: str) -> str:
    return f"arn:aws:states:local:000000000000:stateMachine:{name}"


def _execution(row: Any) -> dict:
    out = {"executionArn": row.arn, "stateMachineArn": _machine_arn(row.machine),
           "name": row.name, "status": row.status, "startDate": row.start,
           "input": _text(row.input), "inputDetails": {"included": True}}
    if row.stop is not None:
        out["stopDate"] = row.stop
    if row.status == "SUCCEEDED":
        out["output"] = _text(row.output)
        out["outputDetails"] = {"included": True}
    if row.error is not None:
        out["error"] = row.error
    if row.cause is not None:
        out["cause"] = row.cause
    return out


async def _task_success(sfn: Any, body: dict) -> dict:
    raw = body.get("output")
    try:
        output = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        raise SkiffError("output must be JSON text", aws_type="InvalidOutput",
                         status=400) from None
    await sfn.send_task_result(str(body.get("taskToken", "")), output=output)
    return {}


async def _task_failure(sfn: Any, body: dict) -> dict:
    await sfn.send_task_result(str(body.get("taskToken", "")),
                               error=body.get("error") or "", cause=body.get("cause"))
    return {}


async def _task_heartbeat(sfn: Any, body: dict) -> dict:
    await sfn.send_task_result(str(body.get("taskToken", "")), heartbeat=True)
    return {}


_OPERATIONS = {
    "CreateStateMachine": _create, "UpdateStateMachine": _update,
    "DeleteStateMachine": _delete, "DescribeStateMachine": _describe_machine,
    "ListStateMachines": _list_machines, "ValidateStateMachineDefinition": _validate,
    "StartExecution": _start, "StartSyncExecution": _start_sync,
    "DescribeExecution": _describe, "StopExecution": _stop, "ListExecutions": _list,
    "GetExecutionHistory": _history, "SendTaskSuccess": _task_success,
    "SendTaskFailure": _task_failure, "SendTaskHeartbeat": _task_heartbeat,
    "RedriveExecution": _redrive,
}


# -- history events in AWS's shape ------------------------------------------------------
def _resource(resource: str) -> tuple[str, str]:
    """AWS's (resourceType, resource) of a task's Resource."""
    if resource.startswith("arn:aws:states:::"):
        kind, _, rest = resource[len("arn:aws:states:::"):].partition(":")
        return kind, rest
    if resource.startswith("arn:aws:lambda:"):
        return "lambda", resource
    kind, _, rest = resource.partition(":")
    return kind, rest


def aws_events(history: list[dict], include_data: bool = True) -> list[dict]:
    """The interpreter's history as GetExecutionHistory answers it: ``*EventDetails``
    members, inputs and outputs as JSON text. Events AWS does not show (timers,
    heartbeats, branch starts) are left out; ids stay those of the record."""
    resources: dict[str, str] = {}
    out: list[dict] = []
    previous = 0

    def data(value: Any) -> str | None:
        return _text(value) if include_data else None

    for e in history:
        t = e["type"]
        details: dict | None
        key = t[0].lower() + t[1:] + "EventDetails"
        if t == "ExecutionStarted":
            details = {"input": data(e.get("input")), "inputDetails": {"truncated": False},
                       "roleArn": "arn:aws:iam::000000000000:role/skiff"}
        elif t.endswith("StateEntered"):
            key = "stateEnteredEventDetails"
            details = {"name": e["name"], "input": data(e.get("input"))}
        elif t.endswith("StateExited"):
            key = "stateExitedEventDetails"
            details = {"name": e["name"], "output": data(e.get("output"))}
        elif t == "TaskScheduled":
            resources[e["token"]] = e["resource"]
            kind, res = _resource(e["resource"])
            details = {"resourceType": kind, "resource": res, "region": "local",
                       "parameters": _text(e.get("input")) or "null"}
            if e.get("timeoutInSeconds"):
                details["timeoutInSeconds"] = int(e["timeoutInSeconds"])
        elif t in ("TaskSucceeded", "TaskFailed", "TaskTimedOut"):
            kind, res = _resource(resources.get(e["token"], ""))
            details = {"resourceType": kind, "resource": res}
            if t == "TaskSucceeded":
                details["output"] = data(e.get("output"))
            else:
                details["error"] = e.get("error")
                details["cause"] = e.get("cause")
        elif t in ("MapIterationStarted", "MapIterationSucceeded", "MapIterationFailed"):
            key = t[0].lower() + t[1:] + "EventDetails"
            details = {"name": e["name"], "index": e["index"]}
        elif t == "ExecutionSucceeded":
            details = {"output": data(e.get("output"))}
        elif t == "ExecutionRedriven":
            details = {"redriveCount": sum(x["type"] == t for x in history
                                           if x["id"] <= e["id"])}
        elif t in ("ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut"):
            details = {k: e[k] for k in ("error", "cause") if e.get(k) is not None}
        else:  # TimerStarted, TimerFired, TaskHeartbeat, ParallelBranchStarted
            continue
        event = {"timestamp": e["timestamp"], "type": t, "id": e["id"],
                 "previousEventId": previous,
                 key: {k: v for k, v in details.items() if v is not None}}
        previous = e["id"]
        out.append(event)
    return out
