"""The durable workflow executor: state machines run on the pure interpreter
(skiff.workflows), their histories in the store, their tasks through the invoke path.

The rule that makes a ``kill -9`` harmless: the events a step returns are appended to
the history (one fsync'd transaction) BEFORE any of its commands is carried out. So

- a task whose TaskSucceeded is recorded is never run again: after a restart the
  execution is rebuilt from its history (``replay``) and ``pending()`` names only the
  tasks not yet answered;
- a task in flight at the crash runs again with the same token (``$$.Task.Token``: the
  execution, the state, its visit and the attempt) and the same request id (a UUID made
  from the token), so an ``@idempotent`` handler keyed on either does its side effect
  once;
- a Wait or a retry delay is a timer the history holds (TimerStarted, and no
  TimerFired yet): re-armed at start, firing at once when its time passed meanwhile.

Express machines run the same way with the history in memory only (AWS: at-least-once,
not durable); they are not resumed after a restart.

On a shared history (several nodes on PostgreSQL) each execution runs on one node: the
one holding its lease (the execution's row: owner and until when), taken when it starts
or resumes and renewed every third of ``lease_seconds``. A node that dies stops renewing;
when its leases run out another node claims each execution and resumes it from the
history as a restart would (the task in flight runs again with its token). A node that
finds its lease taken (it was cut off longer than the lease) drops the execution; the
history's unique event ids keep two writers from recording two pasts meanwhile.

Each execution's events are applied one at a time (an asyncio lock per execution):
the interpreter is a sequential event-sourced machine, and task results of a Map
arrive concurrently.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import math
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from skiff import ipc as p
from skiff.errors import Conflict, InvocationTimeout, SkiffError
from skiff.platform.registry import Registry
from skiff.scheduler import Invocation
from skiff.store.workflow_history import (
    FINAL,
    ExecutionRow,
    MachineRow,
    WorkflowHistory,
)
from skiff.store.workflow_history import Finish as FinishRow
from skiff.workflows import Execution, InvalidDefinition, Limits, StateMachine, parse, replay
from skiff.workflows import events as ev
from skiff.workflows.errors import TASK_FAILED, TIMEOUT, Diagnostic, StatesError
from skiff.workflows.integrations import ServiceCall, is_service, reaches, service_call
from skiff.workflows.resources import Target, apps_named, target

log = logging.getLogger("skiff.workflows")

Invoke = Callable[[Invocation], Awaitable[p.Response]]


class Services(Protocol):
    """Skiff's services as an app reaches them (skiff.sdk.services.Services): a state
    machine's service integrations call them as the app it belongs to."""

    def call(self, app: str, op: str, args: dict[str, Any]) -> Any: ...
    def check_send(self, app: str, queue: str) -> None: ...


class Triggers(Protocol):
    """What starts a machine's executions (skiff.triggers.EventPlane): its queue,
    schedule and event triggers, wired for the current revision of each machine."""

    def check_machine(self, name: str, app: str | None,
                      triggers: Sequence[Mapping[str, Any]]) -> None: ...
    def wire_machine(self, name: str, app: str | None, triggers: Sequence[Mapping[str, Any]],
                     start: Callable[[str, Any, str], Awaitable[None]]) -> None: ...
    def unwire_machine(self, name: str) -> None: ...
    def forget_machine(self, name: str) -> None: ...

REGION = "local"
ACCOUNT = "000000000000"
TYPES = ("STANDARD", "EXPRESS")
#: AWS's rule for state machine and execution names: 1-80 characters, none of
#: whitespace, brackets, wildcards, punctuation that ARNs and URLs reserve, or controls.
_NAME = re.compile(r"[^\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]{1,80}")
#: Finished Express executions kept in memory for DescribeExecution (they have no
#: other record): the newest ones, so a flood of them cannot grow the platform.
EXPRESS_KEPT = 1000
#: How long a node's hold on an execution lasts unrenewed (shared histories): how soon
#: another node resumes the executions of one that died.
LEASE_SECONDS = 15.0


class StepFunctionsError(SkiffError):
    """An error of the Step Functions API, named as AWS names it (``aws_type``), so the
    JSON protocol answers ``{"__type": ..., "message": ...}`` that boto3 raises as the
    same exception class as on AWS."""

    status = 400
    code = "sfn_error"

    def __init__(self, aws_type: str, message: str, *, status: int = 400) -> None:
        super().__init__(message, code=f"sfn_{aws_type}", status=status, aws_type=aws_type)
        self.aws_type = aws_type


def machine_arn(name: str) -> str:
    return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"


def execution_arn(machine: str, name: str, express: bool = False) -> str:
    kind = "express" if express else "execution"
    return f"arn:aws:states:{REGION}:{ACCOUNT}:{kind}:{machine}:{name}"


def machine_of(arn: str) -> str:
    """The machine name in a state machine ARN (or a bare name)."""
    parts = arn.split(":")
    if arn.startswith("arn:") and len(parts) >= 7 and parts[5] == "stateMachine":
        return parts[6]
    return arn


def revision_of(definition: str, type_: str, app: str | None = None,
                triggers: tuple[dict, ...] = ()) -> str:
    # a machine with no app and no triggers keeps the revision it had before either
    bound = f"{app}\n" if app else ""
    if triggers:
        bound += json.dumps(list(triggers), sort_keys=True) + "\n"
    return hashlib.sha256(f"{bound}{type_}\n{definition}".encode()).hexdigest()[:12]


def request_id(token: str) -> str:
    """The invocation id of a task attempt: the same UUID for every run of one token."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, token))


@dataclass
class _Live:
    row: ExecutionRow
    machine: StateMachine
    ex: Execution
    durable: bool
    app: str | None = None  # the app its service integrations act as
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    tasks: set[asyncio.Task] = field(default_factory=set)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class StepFunctions:
    """State machines and their executions (what the sfn route and CLI drive)."""

    def __init__(self, history: WorkflowHistory, registry: Registry, invoke: Invoke, *,
                 limits: Limits | None = None, max_running: int = 10_000,
                 log_app: Callable[[str, str], None] | None = None,
                 services: Services | None = None, triggers: Triggers | None = None,
                 node: str = "local", lease_seconds: float = LEASE_SECONDS) -> None:
        self.history = history
        self.node = node
        self.lease_seconds = lease_seconds
        self._leases: asyncio.Task | None = None
        self._services = services
        self._triggers = triggers
        self.max_running = max_running
        self._registry = registry
        self._invoke = invoke
        self.limits = limits or Limits()
        self._log_app = log_app or (lambda app, line: None)
        self._live: dict[str, _Live] = {}
        self._express: collections.OrderedDict[str, _Live] = collections.OrderedDict()
        self._machines: dict[tuple[str, str], StateMachine] = {}
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        #: app -> (method, path) -> machine: the HTTP routes that start executions
        self._routes: dict[str, dict[tuple[str, str], str]] = {}

    # -- state machines --------------------------------------------------------------
    def check(self, definition: Any, app: str | None = None,
              name: str | None = None) -> StateMachine:
        """Parse ``definition`` (dict or JSON text) and check that every app its tasks
        name exists, and that the services they call are ones ``app`` (the app the
        machine ``name`` acts as) may reach; InvalidDefinition with AWS-shaped
        diagnostics otherwise."""
        machine = parse(definition)
        missing = [(app, state) for app, state in sorted(apps_named(machine).items())
                   if app not in self._registry.apps]
        problems = [
            Diagnostic("INVALID_RESOURCE",
                       f"the task names the app {app!r}, which is not deployed; deploy it "
                       "first" if app else
                       "the Resource is not one Skiff runs (lambda:invoke, a Lambda "
                       "function ARN, skiff:app/NAME, or a service integration)",
                       f"/States/{state}/Resource")
            for app, state in missing]
        problems += [Diagnostic("INVALID_RESOURCE", why, f"/States/{state}/Resource")
                     for state, why in self._unreachable(machine, app, name)]
        if problems:
            raise InvalidDefinition(problems)
        return machine

    def _unreachable(self, machine: StateMachine, app: str | None,
                     name: str | None) -> list[tuple[str, str]]:
        """(state, why) of each service call the machine may not make as ``app``."""
        out = []
        for reach in reaches(machine):
            if app is None:
                out.append((reach.state, f"the task calls a service ({reach.service}); a state "
                            "machine reaches queues, KV, events and other machines only as "
                            "the app it belongs to: set spec.app in its skiff.yaml"))
            elif reach.service == "queue" and reach.name is not None:
                if self._services is None:
                    out.append((reach.state, "queues are not available on this platform"))
                    continue
                try:
                    self._services.check_send(app, reach.name)
                except SkiffError as exc:
                    out.append((reach.state, f"{exc.message} (the machine acts as app {app})"))
            elif reach.service == "execution" and reach.name is not None:
                other = machine_of(reach.name)
                if other == name:
                    continue  # itself, recursively: the same app
                row = self.history.machine(other)
                if row is None:
                    out.append((reach.state, f"the task starts the state machine {other!r}, "
                                "which is not deployed; deploy it first"))
                elif row.app != app:
                    out.append((reach.state, f"the task starts the state machine {other!r} of "
                                f"app {row.app or 'none'}; a machine of app {app} starts only "
                                "machines of its own app"))
        return out

    def save(self, name: str, definition: Any, type_: str = "STANDARD",
             app: str | None = None, triggers: tuple[dict, ...] = ()) -> MachineRow:
        """Deploy a revision of the machine ``name`` (the same definition is the same
        revision); it becomes the current one. ``app``: the app it acts as (the caller
        checked that the deployer may speak for it)."""
        if not _NAME.fullmatch(name or ""):
            raise StepFunctionsError("InvalidName", f"invalid state machine name {name!r}: "
                                     "1-80 characters, no whitespace or ARN punctuation")
        if type_ not in TYPES:
            raise StepFunctionsError("ValidationException",
                                     f"type must be STANDARD or EXPRESS, not {type_!r}")
        text = definition if isinstance(definition, str) else json.dumps(definition)
        machine = self.check(text, app, name)
        self._check_routes(name, app, triggers)
        if self._triggers is not None:
            self._triggers.check_machine(name, app, _bus_triggers(triggers))
        elif _bus_triggers(triggers):
            raise StepFunctionsError("ValidationException",
                                     "triggers are not available on this platform")
        canonical = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
        row = MachineRow(name, revision_of(canonical, type_, app, triggers), text, type_,
                         time.time(), app, tuple(triggers))
        current = self.history.machine(name, row.revision)
        if current is not None:
            row = replace(current)
        self.history.save_machine(row)
        self._machines[(name, row.revision)] = machine
        self._wire(row)
        return row

    def _check_routes(self, name: str, app: str | None,
                      triggers: tuple[dict, ...]) -> None:
        for trig in triggers:
            if "http" not in trig:
                continue
            if app is None:
                raise StepFunctionsError("ValidationException", f"state machine {name}: an "
                                         "http trigger is a route of the machine's app: set "
                                         "spec.app")
            for method in trig["http"].get("methods", ["POST"]):
                other = self._routes.get(app, {}).get((method, trig["http"]["path"]))
                if other not in (None, name):
                    raise Conflict(f"{method} /{app}{trig['http']['path']} starts state "
                                   f"machine {other} already: a route has one target",
                                   code="route_conflict", app=app)

    def _route(self, row: MachineRow) -> None:
        self._unroute(row.name)
        for trig in row.triggers:
            if "http" in trig and row.app is not None:
                for method in trig["http"].get("methods", ["POST"]):
                    self._routes.setdefault(row.app, {})[(method, trig["http"]["path"])] = \
                        row.name

    def _unroute(self, name: str) -> None:
        for table in self._routes.values():
            for key in [k for k, m in table.items() if m == name]:
                del table[key]

    def route(self, app: str, method: str, path: str) -> str | None:
        """The machine an HTTP request to ``app`` starts, if any."""
        table = self._routes.get(app)
        return table.get((method, path)) if table else None

    async def start_routed(self, machine: str, body: bytes) -> dict:
        """An http trigger: the JSON body is the input; answered as API Gateway's
        StartExecution integration answers."""
        try:
            value = json.loads(body) if body.strip() else {}
        except (ValueError, RecursionError):
            raise SkiffError("the request body must be JSON: it is the execution's input",
                             code="bad_request", status=400) from None
        row = await self.start_execution(machine, value)
        return {"executionArn": row.arn, "startDate": row.start}

    def _wire(self, row: MachineRow) -> None:
        """Wire the revision's triggers on the event loop (consumers live there; a deploy
        saves from a thread). Before :meth:`start` there is nothing to do: it wires every
        machine."""
        self._route(row)
        if self._triggers is None or self._loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        args = (row.name, row.app, _bus_triggers(row.triggers), self._start_triggered)
        if running is self._loop:
            self._triggers.wire_machine(*args)
        else:
            self._loop.call_soon_threadsafe(self._triggers.wire_machine, *args)

    async def _start_triggered(self, machine: str, input: Any, name: str) -> None:  # noqa: A002
        """A trigger's message: start its execution, or find the one a delivery of the
        same message started already (the name is the message's)."""
        try:
            await self.start_execution(machine, input, name)
        except StepFunctionsError as exc:
            if exc.aws_type != "ExecutionAlreadyExists":
                raise

    def delete_machine(self, name_or_arn: str) -> None:
        """Forget the machine, its revisions, executions, histories and triggers."""
        row = self.machine_row(name_or_arn)
        self._unroute(row.name)
        if self._triggers is not None:
            self._triggers.unwire_machine(row.name)  # called on the loop (the sfn API)
            self._triggers.forget_machine(row.name)
        self.history.delete_machine(row.name)

    def rollback(self, name: str, revision: str | None = None) -> MachineRow:
        """Make ``revision`` (default: the one saved before the current) current again;
        executions running keep the revision they started on."""
        current = self.machine_row(name)
        revisions = self.history.machine_revisions(current.name)
        if revision is None:
            older = [r for r in revisions if r.created < current.created]
            if not older:
                raise StepFunctionsError("ValidationException",
                                         f"state machine {name} has no earlier revision")
            row = older[-1]
        else:
            found = [r for r in revisions if r.revision == revision]
            if not found:
                raise StepFunctionsError("ValidationException",
                                         f"state machine {name} has no revision {revision}; "
                                         f"it has {', '.join(r.revision for r in revisions)}")
            row = found[0]
        self.history.save_machine(row)
        self._wire(row)
        return row

    def machine_row(self, name_or_arn: str) -> MachineRow:
        row = self.history.machine(machine_of(name_or_arn))
        if row is None:
            raise StepFunctionsError("StateMachineDoesNotExist",
                                     f"State Machine Does Not Exist: '{name_or_arn}'")
        return row

    def _machine(self, row: MachineRow) -> StateMachine:
        key = (row.name, row.revision)
        if key not in self._machines:
            self._machines[key] = parse(row.definition)
        return self._machines[key]

    # -- executions ------------------------------------------------------------------
    async def start_execution(self, machine: str, input: Any = None, name: str | None = None,
                              *, express: bool | None = None) -> ExecutionRow:
        """Start an execution; a STANDARD one is recorded before this returns. The same
        name again: the running execution if its input is the same (AWS's idempotent
        StartExecution), else ExecutionAlreadyExists."""
        if self._closing:
            raise StepFunctionsError("ServiceUnavailable", "the platform is stopping",
                                     status=503)
        mrow = self.machine_row(machine)
        if len(self._live) >= self.max_running:
            raise StepFunctionsError(
                "ExecutionLimitExceeded", f"{len(self._live)} executions are running on this "
                f"node, its limit (SKIFF_SFN_MAX_RUNNING); start this one when some have "
                "ended", status=429)
        is_express = mrow.type == "EXPRESS" if express is None else express
        name = name or str(uuid.uuid4())
        if not _NAME.fullmatch(name):
            raise StepFunctionsError("InvalidName", f"invalid execution name {name!r}: 1-80 "
                                     "characters, no whitespace or ARN punctuation")
        arn = execution_arn(mrow.name, name, is_express)
        row = ExecutionRow(arn, name, mrow.name, mrow.revision, "RUNNING", input, time.time())
        if not is_express:
            lease = (self.node, time.time() + self.lease_seconds) if self.history.shared \
                else (None, None)
            if not await asyncio.to_thread(self.history.create_execution, row, *lease):
                existing = await asyncio.to_thread(self.history.execution, arn)
                if existing is not None and existing.status == "RUNNING" and \
                        existing.input == input:
                    return existing
                raise StepFunctionsError("ExecutionAlreadyExists",
                                         f"Execution Already Exists: '{arn}'")
        elif arn in self._express or arn in self._live:
            raise StepFunctionsError("ExecutionAlreadyExists",
                                     f"Execution Already Exists: '{arn}'")
        live = _Live(row, self._machine(mrow), Execution(self._machine(mrow), self.limits),
                     durable=not is_express, app=mrow.app)
        self._live[arn] = live
        await self._apply(live, {
            "type": ev.EXECUTION_STARTED, "input": input,
            "seed": random.getrandbits(63),  # recorded: a replay draws the same numbers
            "execution": {"Id": arn, "Name": name,
                          "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/skiff"},
            "state_machine": {"Id": machine_arn(mrow.name), "Name": mrow.name}})
        return live.row

    async def start_sync(self, machine: str, input: Any = None,
                         name: str | None = None) -> ExecutionRow:
        """Run an execution to its end (StartSyncExecution: Express machines only)."""
        mrow = self.machine_row(machine)
        if mrow.type != "EXPRESS":
            raise StepFunctionsError("StateMachineTypeNotSupported",
                                     "This operation is not supported by this type of state "
                                     "machine")
        row = await self.start_execution(machine, input, name, express=True)
        live = self._live.get(row.arn) or self._express.get(row.arn)
        assert live is not None
        await live.done.wait()
        return live.row

    async def stop_execution(self, arn: str, error: str | None = None,
                             cause: str | None = None) -> ExecutionRow:
        live = self._live.get(arn)
        if live is None:
            row = self.describe(arn)
            if row.status in FINAL:
                return row
            raise StepFunctionsError("ExecutionDoesNotExist",
                                     f"Execution Does Not Exist: '{arn}' (not running here)")
        details = {k: v for k, v in (("error", error), ("cause", cause)) if v is not None}
        await self._apply(live, {"type": ev.EXECUTION_ABORTED, **details})
        return live.row

    async def redrive(self, arn: str) -> ExecutionRow:
        """RedriveExecution: a FAILED, TIMED_OUT or ABORTED Standard execution runs again
        where it stopped (the interpreter answers what ended from its history), with its
        tokens and timers new, ``$$.Execution.RedriveCount`` one more."""
        if self._closing:
            raise StepFunctionsError("ServiceUnavailable", "the platform is stopping",
                                     status=503)
        row = await asyncio.to_thread(self.history.execution, arn)
        if row is None:
            if arn in self._express:
                raise StepFunctionsError("ExecutionNotRedrivable", "Express executions are "
                                         "not redriven (they have no durable history)")
            raise StepFunctionsError("ExecutionDoesNotExist",
                                     f"Execution Does Not Exist: '{arn}'")
        if arn in self._live or row.status not in ("FAILED", "TIMED_OUT", "ABORTED"):
            raise StepFunctionsError("ExecutionNotRedrivable",
                                     f"Execution {arn} is {row.status}: only a FAILED, "
                                     "TIMED_OUT or ABORTED execution is redriven")
        mrow = await asyncio.to_thread(self.history.machine, row.machine, row.revision)
        if mrow is None:
            raise StepFunctionsError("ExecutionNotRedrivable", f"the revision {row.revision} "
                                     f"of state machine {row.machine} it ran is gone")
        machine = self._machine(mrow)
        ex = replay(machine, await asyncio.to_thread(self.history.history, arn), self.limits)
        if arn in self._live:  # another redrive won the race meanwhile
            raise StepFunctionsError("ExecutionNotRedrivable", f"Execution {arn} is RUNNING")
        live = _Live(row, machine, ex, durable=True, app=mrow.app)
        self._live[arn] = live
        await self._apply(live, {"type": ev.EXECUTION_REDRIVEN})
        if self.history.shared and live.row.status == "RUNNING":
            # it had ended, so no node runs it: this one takes it whatever lease it had
            await asyncio.to_thread(self.history.claim, arn, self.node,
                                    time.time() + self.lease_seconds, math.inf)
        return live.row

    async def send_task_result(self, token: str, *, output: Any = None,
                               error: str | None = None, cause: str | None = None,
                               heartbeat: bool = False) -> None:
        """SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat: the answer of a
        ``.waitForTaskToken`` task (or of any task still waiting, by its token)."""
        live = self._live.get(token.partition("/")[0])
        waiting = False
        if live is not None:
            async with live.lock:  # a step may be changing the execution in its thread
                waiting = any(isinstance(c, ev.RunTask) and c.token == token
                              for c in live.ex.pending())
        if live is None or not waiting:
            raise StepFunctionsError("TaskDoesNotExist", "Task Does Not Exist: no task of a "
                                     "running execution waits for this token")
        if heartbeat:
            event: dict = {"type": ev.TASK_HEARTBEAT, "token": token}
        elif error is not None or cause is not None:
            event = {"type": ev.TASK_FAILED, "token": token, "error": error, "cause": cause}
        else:
            event = {"type": ev.TASK_SUCCEEDED, "token": token, "output": output}
        await self._apply(live, event)

    def describe(self, arn: str) -> ExecutionRow:
        live = self._live.get(arn) or self._express.get(arn)
        if live is not None:
            return live.row
        row = self.history.execution(arn)
        if row is None:
            raise StepFunctionsError("ExecutionDoesNotExist",
                                     f"Execution Does Not Exist: '{arn}'")
        return row

    def events(self, arn: str) -> list[dict]:
        live = self._live.get(arn) or self._express.get(arn)
        if live is not None and not live.durable:
            return list(live.ex.history)
        self.describe(arn)
        return self.history.history(arn)

    def executions(self, machine: str | None = None, status: str | None = None,
                   limit: int = 1000) -> list[ExecutionRow]:
        name = machine_of(machine) if machine else None
        rows = self.history.executions(name, status, limit)
        express = [x.row for x in list(self._express.values()) + list(self._live.values())
                   if not x.durable and (name is None or x.row.machine == name)
                   and (status is None or x.row.status == status)]
        return sorted(rows + express, key=lambda r: -r.start)[:limit]

    # -- skiff.sdk.workflows: an app's own machines -----------------------------------
    def for_app(self, app: str, op: str, args: dict[str, Any]) -> dict:
        """``skiff.sdk.workflows`` calls (from an SDK thread): ``app`` reaches only the
        machines that belong to it (spec.app)."""
        if self._loop is None:
            raise SkiffError("workflows are starting; try again", code="server_busy",
                             status=503)
        if op == "start":
            machine = args["machine"]
            if not isinstance(machine, str):
                raise SkiffError("machine must be a state machine name", code="bad_call",
                                 status=400)
            self._own(app, machine)
            future = asyncio.run_coroutine_threadsafe(
                self.start_execution(machine, args.get("input"), args.get("name")), self._loop)
            return _sdk_view(future.result(timeout=60))
        arn = args["execution_arn"]
        row = self.describe(arn)
        self._own(app, row.machine)
        return _sdk_view(row)

    def _own(self, app: str, machine: str) -> None:
        row = self.history.machine(machine_of(machine))
        if row is None or row.app != app:
            # one answer for "none" and "not yours": another app's machines stay unseen
            raise SkiffError(f"app {app} has no state machine {machine!r}: a machine an app "
                             f"starts says `app: {app}` in the spec of its skiff.yaml",
                             code="state_machine_not_found", status=404)

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Resume every RUNNING Standard execution where its history left it."""
        self._loop = asyncio.get_running_loop()
        for mrow in await asyncio.to_thread(self.history.machines):
            try:
                self._wire(mrow)
            except Exception:  # one machine's triggers never stop the others'
                log.exception("wiring the triggers of state machine %s failed", mrow.name)
        for row in await asyncio.to_thread(self.history.running):
            if self.history.shared and not await self._claim(row.arn):
                continue  # another node runs it
            try:
                await self._resume(row)
            except Exception:  # one broken execution never stops the others resuming
                log.exception("resuming execution %s failed", row.arn)
        if self.history.shared:
            self._leases = asyncio.ensure_future(self._keep_leases())

    async def _claim(self, arn: str) -> bool:
        now = time.time()
        return await asyncio.to_thread(self.history.claim, arn, self.node,
                                       now + self.lease_seconds, now)

    async def _keep_leases(self) -> None:
        """Renew this node's leases; drop what another node took; resume what a node
        that stopped renewing left (shared histories only)."""
        while not self._closing:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                mine = [a for a, x in list(self._live.items()) if x.durable]
                held = await asyncio.to_thread(self.history.renew, self.node, mine,
                                               time.time() + self.lease_seconds)
                for arn in mine:
                    live = self._live.get(arn)
                    if arn not in held and live is not None and not live.done.is_set():
                        log.warning("execution %s: another node holds it now; it runs there",
                                    arn)
                        self._drop(live)
                for row in await asyncio.to_thread(self.history.orphans, time.time()):
                    if row.arn not in self._live and await self._claim(row.arn):
                        log.info("execution %s: its node stopped; resuming it here", row.arn)
                        await self._resume(row)
            except Exception:  # the database away a moment: try again next round
                log.exception("keeping the workflow leases failed")

    def _drop(self, live: _Live) -> None:
        for task in list(live.tasks):
            task.cancel()
        self._forget(live)

    async def _resume(self, row: ExecutionRow) -> None:
        mrow = await asyncio.to_thread(self.history.machine, row.machine, row.revision)
        if mrow is None:
            log.warning("execution %s: its machine revision %s is gone", row.arn, row.revision)
            return
        machine = self._machine(mrow)
        past = await asyncio.to_thread(self.history.history, row.arn)
        if not past:  # recorded, then the platform died before its first event
            self._live[row.arn] = live = _Live(row, machine, Execution(machine, self.limits),
                                               durable=True, app=mrow.app)
            await self._apply(live, {
                "type": ev.EXECUTION_STARTED, "input": row.input,
                "seed": random.getrandbits(63),
                "execution": {"Id": row.arn, "Name": row.name},
                "state_machine": {"Id": machine_arn(row.machine), "Name": row.machine}})
            return
        ex = replay(machine, past, self.limits)
        if len(ex.history) != len(past):
            # the interpreter regenerates its own events: a different count means the code
            # that wrote this history decided otherwise; carry on from what it recorded
            log.warning("execution %s: replay made %d events of the %d recorded", row.arn,
                        len(ex.history), len(past))
        live = _Live(row, machine, ex, durable=True, app=mrow.app)
        self._live[row.arn] = live
        pending = ex.pending()
        self._log_resume(row, pending)
        for cmd in pending:
            self._carry_out(live, cmd)

    def _log_resume(self, row: ExecutionRow, pending: list) -> None:
        tasks = sum(isinstance(c, ev.RunTask) for c in pending)
        log.info("execution %s resumed: %d task(s) run again, %d timer(s) armed", row.arn,
                 tasks, len(pending) - tasks)

    async def stop(self) -> None:
        self._closing = True
        if self._leases is not None:
            self._leases.cancel()
            with contextlib.suppress(BaseException):
                await self._leases
        for live in list(self._live.values()):
            for handle in live.timers.values():
                handle.cancel()
            for task in list(live.tasks):
                task.cancel()
            for task in list(live.tasks):
                with contextlib.suppress(BaseException):
                    await task

    # -- the loop: record, then act ---------------------------------------------------
    async def _apply(self, live: _Live, event: dict) -> None:
        async with live.lock:
            if live.done.is_set() or self._closing:
                return
            try:
                # off the event loop, in one thread hop: a step may run thousands of
                # states (a Map of Pass states) and its commit waits for an fsync, and the
                # loop serves every app meanwhile; the lock keeps one step at a time
                decision, row = await asyncio.to_thread(self._step, live, event)
            except Exception:
                # nothing of this step was recorded: the execution stops here and resumes
                # from what its history holds at the next start
                log.exception("a step of %s failed; it resumes at restart", live.row.arn)
                self._forget(live)
                return
            live.row = row
            for cmd in decision.commands:
                self._carry_out(live, cmd)

    def _step(self, live: _Live, event: dict) -> tuple[ev.Decision, ExecutionRow]:
        """Apply ``event``, then record what it produced (before any of it is done)."""
        decision = live.ex.apply({**event, "timestamp": time.time()})
        end = next((c for c in decision.commands if isinstance(c, ev.Finish)), None)
        row = live.row
        # a redrive makes the row RUNNING again in the transaction that records it
        reopened = event["type"] == ev.EXECUTION_REDRIVEN and row.status in FINAL
        if reopened:
            row = replace(row, status="RUNNING", output=None, error=None, cause=None,
                          stop=None)
        if end is not None:
            row = replace(row, status=end.status, output=end.output, error=end.error,
                          cause=end.cause, stop=time.time())
        finish = None
        if end is not None or reopened:
            finish = FinishRow(row.status, row.stop, row.output, row.error, row.cause)
        if live.durable and decision.events:
            self.history.append(row.arn, decision.events, finish)
        return decision, row

    def _carry_out(self, live: _Live, cmd: ev.Command) -> None:
        if isinstance(cmd, ev.RunTask):
            task = asyncio.ensure_future(self._run_task(live, cmd))
            live.tasks.add(task)
            task.add_done_callback(live.tasks.discard)
        elif isinstance(cmd, ev.StartTimer):
            old = live.timers.pop(cmd.timer, None)
            if old is not None:
                old.cancel()
            delay = max(0.0, cmd.fire_at - time.time())
            live.timers[cmd.timer] = asyncio.get_running_loop().call_later(
                delay, self._fire, live, cmd.timer)
        elif isinstance(cmd, ev.CancelTimer):
            handle = live.timers.pop(cmd.timer, None)
            if handle is not None:
                handle.cancel()
        elif isinstance(cmd, ev.Finish):
            self._forget(live)
            if not live.durable:
                self._express[live.row.arn] = live
                while len(self._express) > EXPRESS_KEPT:
                    self._express.popitem(last=False)
            live.done.set()

    def _forget(self, live: _Live) -> None:
        for handle in live.timers.values():
            handle.cancel()
        live.timers.clear()
        if self._live.get(live.row.arn) is live:
            del self._live[live.row.arn]

    def _fire(self, live: _Live, timer: str) -> None:
        live.timers.pop(timer, None)
        task = asyncio.ensure_future(self._apply(live, {"type": ev.TIMER_FIRED,
                                                        "timer": timer}))
        live.tasks.add(task)
        task.add_done_callback(live.tasks.discard)

    async def _run_task(self, live: _Live, cmd: ev.RunTask) -> None:
        try:
            if is_service(cmd.resource):
                output = await self._call_service(live, cmd)
            else:
                output = await self._invoke_task(cmd)
            if output is _CALLBACK:
                return  # its result comes with SendTaskSuccess or SendTaskFailure
            done = {"type": ev.TASK_SUCCEEDED, "token": cmd.token, "output": output}
        except StatesError as e:
            done = {"type": ev.TASK_FAILED, "token": cmd.token, "error": e.error,
                    "cause": e.cause}
        except Exception as exc:  # a bug here must fail the task, not hang the execution
            log.exception("task %s of %s failed inside the platform", cmd.state,
                          live.row.arn)
            done = {"type": ev.TASK_FAILED, "token": cmd.token, "error": TASK_FAILED,
                    "cause": f"internal error ({type(exc).__name__}); the server log has it"}
        await self._apply(live, done)

    async def _invoke_task(self, cmd: ev.RunTask) -> Any:
        tgt: Target = target(cmd.resource, cmd.input)
        app = self._registry.apps.get(tgt.app)
        if app is None or app.pool is None:
            raise StatesError("Lambda.ResourceNotFoundException",
                              f"Function not found: the app {tgt.app!r} is not deployed")
        payload = json.dumps(tgt.payload).encode()
        rid = request_id(cmd.token)
        msg: p.HttpRequest | p.Event
        if app.kind == "lambda":
            msg = p.Event(id=rid, payload=payload)
        else:
            msg = p.HttpRequest(id=rid, method="POST", path="/",
                                headers=[("content-type", "application/json")], body=payload,
                                host=f"{app.name}.localhost", mount="")
        timeout = app.manifest.spec.resources.timeout
        if cmd.timeout_seconds:
            timeout = min(timeout, cmd.timeout_seconds)
        try:
            resp = await self._invoke(Invocation.start(app.name, "workflow", msg,
                                                       timeout=timeout))
        except InvocationTimeout as exc:
            raise StatesError(TIMEOUT, exc.message) from None
        except SkiffError as exc:
            raise _task_error(exc) from None
        if app.kind != "lambda" and resp.status >= 400:
            raise StatesError(TASK_FAILED, f"the app answered HTTP {resp.status}: "
                                           f"{resp.body[:1000].decode('utf-8', 'replace')}")
        try:
            result = json.loads(resp.body) if resp.body.strip() else None
        except RecursionError:
            raise StatesError(TASK_FAILED, "the task result is nested too deeply") from None
        except ValueError:
            result = resp.body.decode("utf-8", "replace")
        if _depth_over(result, MAX_RESULT_DEPTH):
            raise StatesError(TASK_FAILED, f"the task result is nested deeper than "
                                           f"{MAX_RESULT_DEPTH} levels")
        if tgt.callback:
            return _CALLBACK
        if tgt.wrap:
            return {"ExecutedVersion": "$LATEST", "Payload": result, "StatusCode": 200}
        return result


    # -- service integrations (skiff.workflows.integrations) -------------------------
    async def _call_service(self, live: _Live, cmd: ev.RunTask) -> Any:
        """A task that calls a Skiff service as the machine's app. The checks of the deploy
        are made again here: a path or JSONata may name a queue or machine only now, and
        an app's queues change with its deploys."""
        call = service_call(cmd.resource, cmd.input)
        app = live.app
        if app is None or self._services is None:
            raise StatesError(TASK_FAILED, f"the machine {live.row.machine} belongs to no app, "
                              "so it reaches no queue, KV, events or machine: set spec.app")
        if call.service == "execution":
            result = await self._start_nested(live, cmd, call)
        else:
            result = await asyncio.to_thread(self._call_blocking, app, cmd, call)
        return _CALLBACK if call.wait == "token" else result

    def _call_blocking(self, app: str, cmd: ev.RunTask, call: ServiceCall) -> Any:
        assert self._services is not None
        try:
            if call.service == "queue":
                params = call.params
                body = params["body"]
                text = body if isinstance(body, str) else json.dumps(body)
                message_id = self._services.call(app, "queue.send", {
                    "queue": params["queue"], "body": text, "attributes": params["attributes"],
                    "delay": float(params["delay"])})
                if not call.aws:
                    return {"MessageId": message_id}
                return {"MessageId": message_id,
                        "MD5OfMessageBody": hashlib.md5(text.encode()).hexdigest()}  # noqa: S324 - SQS's checksum
            if call.service == "events":
                out = []
                for i, given in enumerate(call.params):
                    # the id is the attempt's own, so a task re-run after a crash publishes
                    # the same event again, not a second one (rules dedupe on it)
                    event = {"specversion": "1.0", "id": request_id(f"{cmd.token}#{i}"),
                             "time": _now_iso(), **given}
                    if event.get("data") is not None:
                        event.setdefault("datacontenttype", "application/json")
                    elif "data" in event:
                        del event["data"]
                    out.append(self._services.call(app, "events.publish", {"event": event}))
                if not call.aws:
                    return out[0]
                return {"Entries": [{"EventId": o["id"]} for o in out], "FailedEntryCount": 0}
            params = call.params
            if call.action == "get":
                return self._services.call(app, "kv.get", {"key": params["key"]})
            if call.action == "put":
                return self._services.call(app, "kv.put", {
                    "key": params["key"], "value": params["value"], "ttl": params.get("ttl"),
                    "if_absent": bool(params.get("ifAbsent", False)),
                    "if_version": params.get("ifVersion")})
            if call.action == "delete":
                return {"deleted": self._services.call(app, "kv.delete", {
                    "key": params["key"], "if_version": params.get("ifVersion")})}
            return {"value": self._services.call(app, "kv.incr", {
                "key": params["key"], "by": params.get("by", 1)})}
        except SkiffError as exc:
            raise _service_error(call.service, exc) from None
        except (TypeError, ValueError) as exc:
            raise StatesError(TASK_FAILED, str(exc)) from None

    async def _start_nested(self, live: _Live, cmd: ev.RunTask, call: ServiceCall) -> Any:
        """states:startExecution: a machine of the same app. Its name defaults to one made
        from the task's token, so a task run again after a crash finds the execution it
        started instead of starting a second one."""
        params = call.params
        try:
            mrow = self.machine_row(params["machine"])
        except StepFunctionsError as exc:
            raise StatesError("StepFunctions.StateMachineDoesNotExistException",
                              exc.message) from None
        if mrow.app != live.app:
            raise StatesError("StepFunctions.AccessDeniedException",
                              f"the machine {live.row.machine} (app {live.app}) may not start "
                              f"{mrow.name}, a machine of app {mrow.app or 'none'}: a machine "
                              "starts only machines of its own app")
        given = params["input"]
        if isinstance(given, str):  # AWS takes the input as JSON text or as JSON
            try:
                given = json.loads(given)
            except ValueError:
                raise StatesError("StepFunctions.InvalidExecutionInputException",
                                  "Input is a string that is not JSON") from None
        name = params["name"] or request_id(cmd.token)
        try:
            row = await self.start_execution(mrow.name, given, name)
        except StepFunctionsError as exc:
            existing = self._live.get(execution_arn(mrow.name, name, mrow.type == "EXPRESS"))
            row_ = existing.row if existing is not None else \
                await asyncio.to_thread(self.history.execution,
                                        execution_arn(mrow.name, name))
            if exc.aws_type != "ExecutionAlreadyExists" or row_ is None or row_.input != given:
                raise StatesError(f"StepFunctions.{exc.aws_type}Exception"
                                  if not exc.aws_type.endswith("Exception") else
                                  f"StepFunctions.{exc.aws_type}", exc.message) from None
            row = row_  # this task's own execution, started before a crash
        if not call.wait.startswith("sync"):
            return {"ExecutionArn": row.arn, "StartDate": int(row.start * 1000)}
        row = await self._ended(row.arn)
        out = _describe_sync(row, mrow.name, as_json=call.wait == "sync:2")
        if row.status != "SUCCEEDED":
            raise StatesError(TASK_FAILED, json.dumps(out))
        return out

    async def _ended(self, arn: str) -> ExecutionRow:
        """The execution's row once it has ended (it may run on another node: the store
        says when)."""
        while True:
            live = self._live.get(arn) or self._express.get(arn)
            if live is not None:
                await live.done.wait()
                return live.row
            row = await asyncio.to_thread(self.history.execution, arn)
            if row is None or row.status in FINAL:
                return row if row is not None else self.describe(arn)
            await asyncio.sleep(0.5)


def _bus_triggers(triggers: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The triggers the event plane wires (http ones are routes, kept here)."""
    return [t for t in triggers if "http" not in t]


def _sdk_view(row: ExecutionRow) -> dict:
    return {"execution_arn": row.arn, "name": row.name, "state_machine": row.machine,
            "status": row.status, "input": row.input, "output": row.output,
            "error": row.error, "cause": row.cause, "start": row.start, "stop": row.stop}


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _describe_sync(row: ExecutionRow, machine: str, *, as_json: bool) -> dict:
    """What a .sync task returns (DescribeExecution's fields; .sync:2 with Input and
    Output as JSON, .sync with them as JSON text)."""
    def shown(value: Any) -> Any:
        return value if as_json else json.dumps(value, separators=(",", ":"))

    out = {"ExecutionArn": row.arn, "StateMachineArn": machine_arn(machine), "Name": row.name,
           "Status": row.status, "StartDate": int(row.start * 1000),
           "StopDate": int((row.stop or row.start) * 1000), "Input": shown(row.input),
           "InputDetails": {"Included": True}}
    if row.status == "SUCCEEDED":
        out.update(Output=shown(row.output), OutputDetails={"Included": True})
    else:
        out.update({k: v for k, v in (("Error", row.error), ("Cause", row.cause)) if v})
    return out


#: Skiff's refusals as the AWS service behind each integration names them.
_SERVICE_ERRORS = {
    ("queue", "queue_not_found"): "SQS.QueueDoesNotExistException",
    ("queue", "queue_forbidden"): "SQS.AccessDeniedException",
    ("queue", "reserved_queue"): "SQS.AccessDeniedException",
    ("kv", "condition_failed"): "Skiff.KV.ConditionFailed",
}
_SERVICE_PREFIX = {"queue": "SQS", "events": "EventBridge", "kv": "Skiff.KV"}


def _service_error(service: str, exc: SkiffError) -> StatesError:
    name = _SERVICE_ERRORS.get((service, exc.code))
    if name is None:
        camel = "".join(part.capitalize() for part in exc.code.split("_"))
        name = f"{_SERVICE_PREFIX.get(service, 'Skiff')}.{camel}"
    return StatesError(name, exc.message)


_CALLBACK = object()  # a .waitForTaskToken task was handed to its app

#: How deeply a task result may nest: the interpreter's paths, JSONata and the
#: history's JSON recurse over it, and Python's stack is ~1,000 frames.
MAX_RESULT_DEPTH = 200


def _depth_over(value: Any, limit: int) -> bool:
    """Is ``value`` nested deeper than ``limit``? (iterative: a hostile result cannot
    exhaust the stack here)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict | list):
            if depth > limit:
                return True
            stack.extend((c, depth + 1) for c in (v.values() if isinstance(v, dict) else v))
    return False


_ERROR_TYPE = re.compile(r"([A-Za-z_][\w.]*): (.*)", re.S)


def _task_error(exc: SkiffError) -> StatesError:
    """A failed invocation as Step Functions reports a failed Lambda: the exception's
    class as Error, ``{"errorMessage", "errorType"}`` as Cause."""
    if exc.code == "handler_error":
        m = _ERROR_TYPE.fullmatch(exc.message)
        if m:
            return StatesError(m.group(1), json.dumps(
                {"errorMessage": m.group(2), "errorType": m.group(1)}))
    return StatesError(TASK_FAILED, f"{exc.code}: {exc.message}")


WorkflowLimits = Limits  # the interpreter's bounds, as the composition root names them

__all__ = ["StepFunctions", "StepFunctionsError", "WorkflowLimits", "execution_arn",
           "machine_arn"]
