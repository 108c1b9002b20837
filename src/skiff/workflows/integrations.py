"""Service integrations: a Task whose ``Resource`` names one of Skiff's own services
instead of an app, in AWS's forms (so AWS definitions run unchanged) and Skiff's short
ones:

===========================================  =========================================
``arn:aws:states:::sqs:sendMessage``         ``QueueUrl`` (a queue URL, ARN or name),
``skiff:queue/NAME``                         ``MessageBody``; the short form sends its
                                             input as the body
``arn:aws:states:::events:putEvents``        ``Entries`` (``Source``, ``DetailType``,
``skiff:events``                             ``Detail``): one CloudEvent each; the short
                                             form publishes its input as a CloudEvent
``skiff:kv/get|put|delete|incr``             ``key`` (and ``value``, ``ttl``,
                                             ``ifAbsent``, ``ifVersion``, ``by``)
``arn:aws:states:::states:startExecution``   ``StateMachineArn``, ``Input``, ``Name``;
                                             ``.sync`` and ``.sync:2`` wait for its end
===========================================  =========================================

``.waitForTaskToken`` works on the queue, event and execution forms, as on AWS.

A machine reaches these as the app it belongs to (``spec.app``): that app's KV, the
queues it may send to (its own, and those whose owner lists it in ``allowFrom``), and
machines of the same app. Pure: :func:`service_call` says what a task asks for,
:func:`reaches` what a definition names literally (a deploy checks those), the executor
does the calling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .definition import StateMachine
from .errors import TASK_FAILED, StatesError

SQS_SEND = "arn:aws:states:::sqs:sendMessage"
EVENTS_PUT = "arn:aws:states:::events:putEvents"
START_EXECUTION = "arn:aws:states:::states:startExecution"
SKIFF_QUEUE = "skiff:queue/"
SKIFF_EVENTS = "skiff:events"
SKIFF_KV = "skiff:kv/"
KV_ACTIONS = ("get", "put", "delete", "incr")
WAIT_FOR_TOKEN = ".waitForTaskToken"
#: what AWS allows in one PutEvents call
MAX_ENTRIES = 10


@dataclass(frozen=True)
class ServiceCall:
    service: str  # queue | events | kv | execution
    action: str  # send | publish | get | put | delete | incr | start
    params: Any
    #: "" (the call's result is the task's), "token" (.waitForTaskToken), "sync" /
    #: "sync:2" (a nested execution's end, its Output as a string / as JSON)
    wait: str = ""
    aws: bool = True  # the AWS form: the result is shaped as AWS returns it


def _bad(message: str) -> StatesError:
    return StatesError(TASK_FAILED, message)


def _split(resource: str) -> tuple[str, str]:
    for suffix, wait in ((WAIT_FOR_TOKEN, "token"), (".sync:2", "sync:2"), (".sync", "sync")):
        if resource.endswith(suffix):
            return resource[: -len(suffix)], wait
    return resource, ""


def is_service(resource: Any) -> bool:
    """Does ``resource`` name a Skiff service (not an app)?"""
    if not isinstance(resource, str):
        return False
    base, _ = _split(resource)
    return (base in (SQS_SEND, EVENTS_PUT, START_EXECUTION, SKIFF_EVENTS)
            or base.startswith((SKIFF_QUEUE, SKIFF_KV)))


def queue_name(url: str) -> str:
    """The queue a ``QueueUrl`` names: ``https://sqs.REGION.amazonaws.com/ACCOUNT/NAME``,
    ``arn:aws:sqs:REGION:ACCOUNT:NAME`` or the bare NAME (the platform checks it)."""
    if url.startswith("arn:"):
        return url.rsplit(":", 1)[-1]
    return url.rstrip("/").rsplit("/", 1)[-1]


def service_call(resource: str, value: Any) -> ServiceCall:
    """What a task of ``resource`` with ``value`` (its effective input) asks for; a
    malformed one is States.TaskFailed naming the field, as AWS answers a bad call."""
    base, wait = _split(resource)
    if wait.startswith("sync") and base != START_EXECUTION:
        raise _bad(f"{resource!r}: only states:startExecution has a .sync form")
    if wait == "token" and base.startswith(SKIFF_KV):
        raise _bad(f"{resource!r}: KV calls answer at once; they have no "
                   ".waitForTaskToken form")
    if base == SQS_SEND:
        params = _mapping(value, "sqs:sendMessage")
        url, body = params.get("QueueUrl"), params.get("MessageBody")
        if not isinstance(url, str) or not url:
            raise _bad("sqs:sendMessage needs a QueueUrl (a queue URL or name)")
        if body is None:
            raise _bad("sqs:sendMessage needs a MessageBody")
        delay = params.get("DelaySeconds", 0)
        if isinstance(delay, bool) or not isinstance(delay, int) or not 0 <= delay <= 900:
            raise _bad(f"DelaySeconds must be an integer from 0 to 900, got {delay!r}")
        return ServiceCall("queue", "send", {
            "queue": queue_name(url), "body": body, "delay": delay,
            "attributes": _attributes(params.get("MessageAttributes"))}, wait)
    if base.startswith(SKIFF_QUEUE):
        return ServiceCall("queue", "send", {"queue": base[len(SKIFF_QUEUE):], "body": value,
                                             "delay": 0, "attributes": None}, wait, aws=False)
    if base == EVENTS_PUT:
        entries = _mapping(value, "events:putEvents").get("Entries")
        if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_ENTRIES:
            raise _bad(f"events:putEvents needs Entries: a list of 1 to {MAX_ENTRIES} events")
        events = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, Mapping) or not all(
                    isinstance(entry.get(k), str) and entry.get(k)
                    for k in ("Source", "DetailType")):
                raise _bad(f"Entries[{i}] needs a Source and a DetailType (strings)")
            events.append({"type": entry["DetailType"], "source": entry["Source"],
                           "data": entry.get("Detail")})
        return ServiceCall("events", "publish", events, wait)
    if base == SKIFF_EVENTS:
        event = _mapping(value, SKIFF_EVENTS)
        return ServiceCall("events", "publish", [dict(event)], wait, aws=False)
    if base.startswith(SKIFF_KV):
        action = base[len(SKIFF_KV):]
        if action not in KV_ACTIONS:
            raise _bad(f"{resource!r}: KV tasks are skiff:kv/{'|'.join(KV_ACTIONS)}")
        params = _mapping(value, resource)
        if not isinstance(params.get("key"), str):
            raise _bad(f"{resource} needs a key (a string)")
        if action == "put" and "value" not in params:
            raise _bad("skiff:kv/put needs a value")
        allowed = {"get": ("key",), "delete": ("key", "ifVersion"), "incr": ("key", "by"),
                   "put": ("key", "value", "ttl", "ifAbsent", "ifVersion")}[action]
        extra = sorted(set(params) - set(allowed))
        if extra:
            raise _bad(f"{resource} takes {', '.join(allowed)}; not {', '.join(extra)}")
        return ServiceCall("kv", action, dict(params), aws=False)
    if base == START_EXECUTION:
        params = _mapping(value, "states:startExecution")
        arn = params.get("StateMachineArn")
        if not isinstance(arn, str) or not arn:
            raise _bad("states:startExecution needs a StateMachineArn")
        name = params.get("Name")
        if name is not None and not isinstance(name, str):
            raise _bad("Name must be a string")
        return ServiceCall("execution", "start", {
            "machine": arn, "input": params.get("Input", {}), "name": name}, wait)
    raise _bad(f"the resource {resource!r} is no Skiff service")


def _mapping(value: Any, what: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise _bad(f"{what} takes an object (its Parameters or Arguments), got "
                   f"{type(value).__name__}")
    return value


def _attributes(given: Any) -> dict[str, str] | None:
    """SQS MessageAttributes (``{NAME: {DataType, StringValue}}``) as the bus's string
    attributes; binary ones have no place there."""
    if given is None:
        return None
    if not isinstance(given, Mapping):
        raise _bad("MessageAttributes must be an object of {DataType, StringValue}")
    out = {}
    for name, attr in given.items():
        if not isinstance(attr, Mapping) or not isinstance(attr.get("StringValue"), str):
            raise _bad(f"MessageAttributes.{name} needs a StringValue (binary attributes "
                       "are not supported)")
        out[str(name)] = attr["StringValue"]
    return out


@dataclass(frozen=True)
class Reach:
    """A service a task names: ``name`` is the queue or machine when the definition says
    it literally (None when a path or JSONata gives it at run time)."""

    service: str
    name: str | None
    state: str


def reaches(machine: StateMachine) -> list[Reach]:
    """Every service the machine's tasks call, nested machines included."""
    out: list[Reach] = []
    for st in machine.states.values():
        resource = st.get("Resource") if st.type == "Task" else None
        if is_service(resource):
            base, _ = _split(resource)
            args = st.get("Parameters") if "Parameters" in st else st.get("Arguments")
            args = args if isinstance(args, Mapping) else {}
            if base.startswith(SKIFF_QUEUE):
                out.append(Reach("queue", base[len(SKIFF_QUEUE):], st.name))
            elif base == SQS_SEND:
                url = args.get("QueueUrl")
                out.append(Reach("queue", queue_name(url) if _literal(url) else None, st.name))
            elif base == START_EXECUTION:
                arn = args.get("StateMachineArn")
                out.append(Reach("execution", arn if _literal(arn) else None, st.name))
            else:
                out.append(Reach("kv" if base.startswith(SKIFF_KV) else "events", None,
                                 st.name))
        for b in st.branches:
            out.extend(reaches(b))
    return out


def _literal(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and not value.startswith("{%")
