"""The ASL interpreter: pure, event-sourced.

``step(machine, history, event)`` rebuilds the execution from ``history`` and applies
``event``; it returns a Decision: the events to append and the commands to carry out (run
a task, start or cancel a timer, finish). No clock, no I/O, no randomness inside: time is
each event's ``timestamp``, randomness (UUID, MathRandom, FULL jitter) comes from a PRNG
seeded by the ``seed`` of ExecutionStarted, so a replay regenerates the same history.

Rebuilding replays only the events that came from outside (EXTERNAL); the interpreter's
own events are regenerated on the way. A driver that keeps an Execution in memory calls
``Execution.apply`` instead and pays no replay; the durable executor replays once after a
restart, then does the same.

Inside, each running (sub)machine is a *fiber*: a generator that runs states until it must
wait (for a task result, a timer, or child fibers of a Map or Parallel). Fibers are run in
FIFO order, so everything, including the order Map iterations start in, is deterministic.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from . import choice, events, jsonata, paths, retry, timestamps
from .definition import JSONATA, State, StateMachine
from .errors import (
    DATA_LIMIT_EXCEEDED,
    EXCEEDED_TOLERATED_FAILURE_THRESHOLD,
    HEARTBEAT_TIMEOUT,
    NO_CHOICE_MATCHED,
    QUERY_EVALUATION_ERROR,
    RUNTIME,
    TIMEOUT,
    StatesError,
)
from .intrinsics import Evaluator as IntrinsicEvaluator

DEFAULT_MACHINE_NAME = "StateMachine"


@dataclass(frozen=True)
class Limits:
    """The bounds an execution runs within; AWS's quotas by default (Step Functions
    developer guide, "Quotas"). The executor passes the operator's configured values."""

    # 256 KiB of UTF-8: the largest execution input, state input/output or task result
    max_payload_bytes: int = 262_144
    # events in one execution's history; past it the execution fails
    max_history_events: int = 25_000
    # iterations an inline Map runs at once, whatever its MaxConcurrency says (AWS: 40)
    max_map_concurrency: int = 40


def payload_size(value: Any) -> int:
    """The UTF-8 size of ``value`` as JSON (msgspec: ~10x faster than json.dumps here,
    and it runs on every state transition)."""
    return len(msgspec.json.encode(value))


@dataclass
class _TaskWait:
    token: str
    command: events.RunTask
    timers: list[str] = field(default_factory=list)
    beats: int = 0


@dataclass
class _TimerWait:
    timer: str
    fire_at: float
    reason: str


@dataclass
class _AwaitAny:
    fibers: list[_Fiber]


class _Fiber:
    __slots__ = ("gen", "name", "done", "result", "error", "cancelled", "awaiting",
                 "watchers", "children")

    def __init__(self, gen: Generator, name: str) -> None:
        self.gen = gen
        self.name = name
        self.done = False
        self.result: Any = None
        self.error: StatesError | None = None
        self.cancelled = False
        self.awaiting: list[_Fiber] | None = None
        self.watchers: list[_Fiber] = []
        self.children: list[_Fiber] = []


class _Output(Exception):
    """Raised by a state's output processing: not catchable when AWS says so."""


class Execution:
    """One execution, in memory. Feed it events with ``apply``."""

    def __init__(self, machine: StateMachine, limits: Limits | None = None) -> None:
        self.machine = machine
        self.limits = limits or Limits()
        self._over_history = False
        self.history: list[dict] = []
        self.status = "PENDING"
        self.now = 0.0
        self.rng = random.Random(0)
        self.context: dict[str, Any] = {}
        self.variables: dict[str, Any] = {}
        self._ready: collections.deque = collections.deque()
        self._tasks: dict[str, tuple[_Fiber, _TaskWait]] = {}
        self._timers: dict[str, tuple[_Fiber, str, float]] = {}
        self._timeout_of: dict[str, str] = {}  # timer -> task token it times out
        self._root: _Fiber | None = None
        self._current: _Fiber | None = None
        self._out: events.Decision | None = None
        self._visits: collections.Counter = collections.Counter()

    # -- the public surface ---------------------------------------------------------------

    def apply(self, event: Mapping[str, Any]) -> events.Decision:
        """Apply one external event; returns the events to record (``event`` first, with
        its id filled in) and the commands to run."""
        if event["type"] not in events.EXTERNAL:
            raise ValueError(f"{event['type']} is not an input event")
        self._out = events.Decision()
        self.now = float(event.get("timestamp", self.now))
        ev = self._record(event["type"], **{k: v for k, v in event.items()
                                              if k not in ("type", "id", "timestamp")})
        if self.status in ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"):
            return self._take()
        t = event["type"]
        if t == events.EXECUTION_STARTED:
            self._start(ev)
        elif t in (events.TASK_SUCCEEDED, events.TASK_FAILED):
            self._task_done(ev)
        elif t == events.TASK_HEARTBEAT:
            self._heartbeat(ev)
        elif t == events.TIMER_FIRED:
            self._timer_fired(ev)
        elif t == events.EXECUTION_ABORTED:
            self._finish("ABORTED", error=ev.get("error"), cause=ev.get("cause"))
        self._run()
        return self._take()

    def pending(self) -> list[events.Command]:
        """What is outstanding: every task not yet answered (to run again, with the same
        token, after a restart) and every timer not yet fired (to arm again)."""
        out: list[events.Command] = [wait.command for _f, wait in self._tasks.values()]
        out += [events.StartTimer(t, at, reason) for t, (_f, reason, at) in self._timers.items()]
        return out

    # -- bookkeeping ----------------------------------------------------------------------

    def _history_cause(self) -> str:
        return (f"The execution reached the maximum number of history events "
                f"({self.limits.max_history_events}).")

    def _take(self) -> events.Decision:
        out, self._out = self._out, None
        assert out is not None
        return out

    def _record(self, type_: str, **details: Any) -> dict:
        ev = {"id": len(self.history) + 1, "type": type_, "timestamp": self.now, **details}
        self.history.append(ev)
        if len(self.history) > self.limits.max_history_events:
            self._over_history = True
        if self._out is not None:
            self._out.events.append(ev)
        return ev

    def _command(self, cmd: events.Command) -> None:
        assert self._out is not None
        self._out.commands.append(cmd)

    # -- external events ------------------------------------------------------------------

    def _start(self, ev: dict) -> None:
        self.status = "RUNNING"
        self.rng = random.Random(ev.get("seed", 0))
        execution = dict(ev.get("execution") or {})
        execution.setdefault("Id", "execution")
        execution.setdefault("Name", execution["Id"].rpartition(":")[2])
        execution.setdefault("StartTime", timestamps.format_epoch(self.now))
        execution.setdefault("RoleArn", "")
        execution.setdefault("RedriveCount", 0)
        execution["Input"] = ev.get("input")
        sm = dict(ev.get("state_machine") or {})
        sm.setdefault("Name", DEFAULT_MACHINE_NAME)
        sm.setdefault("Id", sm["Name"])
        self.context = {"Execution": execution, "StateMachine": sm}
        self._root = _Fiber(self._machine(self.machine, ev.get("input"), self.variables, ""),
                            "")
        size = payload_size(ev.get("input"))
        if size > self.limits.max_payload_bytes:
            self._finish("FAILED", error=DATA_LIMIT_EXCEEDED,
                         cause=f"The execution input has {size} bytes, more than the "
                               f"{self.limits.max_payload_bytes} allowed.")
            return
        self._ready.append((self._root, "send", None))
        if self.machine.timeout_seconds:
            timer = "execution-timeout"
            fire_at = self.now + self.machine.timeout_seconds
            self._timers[timer] = (self._root, "execution-timeout", fire_at)
            self._command(events.StartTimer(timer, fire_at, "execution-timeout"))

    def _task_done(self, ev: dict) -> None:
        entry = self._tasks.pop(ev["token"], None)
        if entry is None:
            return  # stale: timed out, cancelled, or a duplicate delivery
        fiber, wait = entry
        for timer in wait.timers:
            if self._timers.pop(timer, None) is not None:
                self._timeout_of.pop(timer, None)
                self._command(events.CancelTimer(timer))
        if ev["type"] == events.TASK_SUCCEEDED:
            size = payload_size(ev.get("output"))
            if size > self.limits.max_payload_bytes:
                self._ready.append((fiber, "throw", StatesError(
                    DATA_LIMIT_EXCEEDED, f"The task result has {size} bytes, more than the "
                                         f"{self.limits.max_payload_bytes} allowed.")))
            else:
                self._ready.append((fiber, "send", ev.get("output")))
        else:
            self._ready.append((fiber, "throw", StatesError(ev.get("error"), ev.get("cause"))))

    def _heartbeat(self, ev: dict) -> None:
        """A heartbeat moves the heartbeat deadline: a new timer (a new name, so a late
        fire of the old one is ignored) replaces the old."""
        entry = self._tasks.get(ev["token"])
        if entry is None:
            return
        fiber, wait = entry
        hb = wait.command.heartbeat_seconds
        for i, timer in enumerate(wait.timers):
            if "/heartbeat" in timer and timer in self._timers and hb:
                del self._timers[timer]
                self._timeout_of.pop(timer, None)
                self._command(events.CancelTimer(timer))
                wait.beats += 1
                new = f"{wait.token}/heartbeat.{wait.beats}"
                wait.timers[i] = new
                self._timers[new] = (fiber, "heartbeat", self.now + hb)
                self._timeout_of[new] = wait.token
                self._command(events.StartTimer(new, self.now + hb, "heartbeat"))

    def _timer_fired(self, ev: dict) -> None:
        timer = ev["timer"]
        entry = self._timers.pop(timer, None)
        if entry is None:
            return
        fiber, what, _at = entry
        if what == "execution-timeout":
            self._finish("TIMED_OUT", error=TIMEOUT,
                         cause="The execution ran longer than its TimeoutSeconds")
            return
        token = self._timeout_of.pop(timer, None)
        if token is not None:
            task = self._tasks.pop(token, None)
            if task is None:
                return
            fiber, wait = task
            for other in wait.timers:
                if other != timer and self._timers.pop(other, None) is not None:
                    self._command(events.CancelTimer(other))
            heartbeat = "/heartbeat" in timer
            self._record(events.TASK_TIMED_OUT, token=token,
                         error=HEARTBEAT_TIMEOUT if heartbeat else TIMEOUT)
            self._ready.append((fiber, "throw", StatesError(
                HEARTBEAT_TIMEOUT if heartbeat else TIMEOUT,
                "Task timed out: no heartbeat in time" if heartbeat else
                "Task timed out after its TimeoutSeconds")))
            return
        self._ready.append((fiber, "send", None))

    # -- the fiber scheduler --------------------------------------------------------------

    def _run(self) -> None:
        while self._ready and self.status == "RUNNING":
            if self._over_history:
                self._finish("FAILED", error=RUNTIME, cause=self._history_cause())
                return
            fiber, how, value = self._ready.popleft()
            if fiber.cancelled or fiber.done:
                continue
            self._resume(fiber, how, value)

    def _resume(self, fiber: _Fiber, how: str, value: Any) -> None:
        self._current = fiber  # the parent of any fiber it spawns
        try:
            wait = fiber.gen.send(value) if how == "send" else fiber.gen.throw(value)
        except StopIteration as stop:
            self._fiber_done(fiber, result=stop.value)
            return
        except StatesError as e:
            self._fiber_done(fiber, error=e)
            return
        if isinstance(wait, _TaskWait):
            self._tasks[wait.token] = (fiber, wait)
            cmd = wait.command
            self._record(events.TASK_SCHEDULED, token=wait.token, state=cmd.state,
                         resource=cmd.resource, input=cmd.input, attempt=cmd.attempt,
                         timeoutInSeconds=cmd.timeout_seconds,
                         heartbeatInSeconds=cmd.heartbeat_seconds)
            self._command(cmd)
            for timer, secs, reason in ((f"{wait.token}/timeout", cmd.timeout_seconds,
                                         "task-timeout"),
                                        (f"{wait.token}/heartbeat", cmd.heartbeat_seconds,
                                         "heartbeat")):
                if secs:
                    wait.timers.append(timer)
                    self._timers[timer] = (fiber, reason, self.now + secs)
                    self._timeout_of[timer] = wait.token
                    self._command(events.StartTimer(timer, self.now + secs, reason))
        elif isinstance(wait, _TimerWait):
            self._timers[wait.timer] = (fiber, wait.reason, wait.fire_at)
            self._record(events.TIMER_STARTED, timer=wait.timer, fireAt=wait.fire_at,
                         reason=wait.reason)
            self._command(events.StartTimer(wait.timer, wait.fire_at, wait.reason))
        elif isinstance(wait, _AwaitAny):
            for child in wait.fibers:
                if child.done:
                    self._ready.append((fiber, "send", child))
                    return
            fiber.awaiting = wait.fibers
            for child in wait.fibers:
                child.watchers.append(fiber)
        else:  # pragma: no cover - a bug in a state implementation
            raise TypeError(f"a fiber yielded {wait!r}")

    def _fiber_done(self, fiber: _Fiber, *, result: Any = None,
                    error: StatesError | None = None) -> None:
        fiber.done = True
        fiber.result = result
        fiber.error = error
        for w in fiber.watchers:
            if w.awaiting is not None and fiber in w.awaiting and not w.cancelled:
                for other in w.awaiting:
                    if other is not fiber and w in other.watchers:
                        other.watchers.remove(w)
                w.awaiting = None
                self._ready.append((w, "send", fiber))
        fiber.watchers = []
        if fiber is self._root:
            if error is None:
                self._finish("SUCCEEDED", output=result)
            else:
                self._finish("FAILED", error=error.error, cause=error.cause)

    def _spawn(self, gen: Generator, name: str) -> _Fiber:
        """A child fiber of the running one (a branch, an iteration): cancelling the
        parent cancels it too."""
        fiber = _Fiber(gen, name)
        if self._current is not None:
            self._current.children.append(fiber)
        self._ready.append((fiber, "send", None))
        return fiber

    def _cancel(self, fiber: _Fiber) -> None:
        if fiber.done or fiber.cancelled:
            return
        fiber.cancelled = True
        for child in fiber.children:
            self._cancel(child)
        for token, (f, wait) in list(self._tasks.items()):
            if f is fiber:
                del self._tasks[token]
                for timer in wait.timers:
                    if self._timers.pop(timer, None) is not None:
                        self._timeout_of.pop(timer, None)
                        self._command(events.CancelTimer(timer))
        for timer, (f, _what, _at) in list(self._timers.items()):
            if f is fiber:
                del self._timers[timer]
                self._command(events.CancelTimer(timer))
        fiber.gen.close()

    def _finish(self, status: str, *, output: Any = None, error: str | None = None,
                cause: str | None = None) -> None:
        self.status = status
        for timer in list(self._timers):
            self._command(events.CancelTimer(timer))
        self._timers.clear()
        self._tasks.clear()
        if status == "SUCCEEDED":
            self._record(events.EXECUTION_SUCCEEDED, output=output)
        elif status == "TIMED_OUT":
            self._record(events.EXECUTION_TIMED_OUT, error=error, cause=cause)
        elif status == "FAILED":
            self._record(events.EXECUTION_FAILED,
                         **({"error": error} if error is not None else {}),
                         **({"cause": cause} if cause is not None else {}))
        # ABORTED: the ExecutionAborted input event is itself the record
        self._command(events.Finish(status, output=output, error=error, cause=cause))

    # -- running a (sub)machine -----------------------------------------------------------

    def _machine(self, machine: StateMachine, value: Any, variables: dict[str, Any],
                 frame: str, extra_context: Mapping[str, Any] | None = None) -> Generator:
        name = machine.start_at
        while True:
            st = machine.states[name]
            value, name = yield from self._state(st, value, variables, frame, extra_context)
            if name is None:
                return value

    def _state(self, st: State, raw: Any, variables: dict[str, Any], frame: str,
               extra_context: Mapping[str, Any] | None) -> Generator:
        """Run one state: returns ``(output, next state name or None at the end)``."""
        key = f"{frame}{st.name}"
        self._visits[key] += 1
        visit = self._visits[key]
        entered = self._record(events.entered(st.type), name=st.name, frame=frame,
                               input=raw)
        if self._over_history:  # a loop of Pass/Choice states never yields: stop it here
            raise StatesError(RUNTIME, self._history_cause(), catchable=False)
        ctx = self._context(st, entered, extra_context)
        run = _StateRun(self, st, raw, variables, ctx, frame, visit, entered["id"])
        try:
            output, nxt, assigned = yield from run.execute()
        except StatesError as e:
            caught = run.catch(e)
            if caught is None:
                raise
            output, nxt, assigned = caught
        size = payload_size(output)
        if size > self.limits.max_payload_bytes:
            raise StatesError(DATA_LIMIT_EXCEEDED,
                              f"The state '{st.name}' produced an output of {size} bytes, "
                              f"more than the {self.limits.max_payload_bytes} allowed.")
        exited = {"name": st.name, "frame": frame, "output": output}
        if assigned:
            exited["assignedVariables"] = assigned
        self._record(events.exited(st.type), **exited)
        if assigned:
            variables.update(assigned)
        return output, nxt

    def _context(self, st: State, entered: dict, extra: Mapping[str, Any] | None) -> dict:
        ctx = dict(self.context)
        ctx["State"] = {"Name": st.name, "EnteredTime": timestamps.format_epoch(self.now),
                        "RetryCount": 0}
        if extra:
            ctx.update(extra)
        return ctx


class _StateRun:
    """One entry of one state: its input/output processing and its type's behaviour."""

    def __init__(self, ex: Execution, st: State, raw: Any, variables: dict[str, Any],
                 ctx: dict, frame: str, visit: int, entered_id: int) -> None:
        self.ex = ex
        self.st = st
        self.raw = raw
        self.variables = variables
        self.ctx = ctx
        self.frame = frame
        self.visit = visit
        self.entered_id = entered_id
        self.jsonata = st.query_language == JSONATA
        self.scope = paths.Scope(ctx, variables)
        self.intrinsic = IntrinsicEvaluator(ex.rng)
        self._jsonata: jsonata.Evaluator | None = None

    # -- helpers --------------------------------------------------------------------------

    def fail(self, error: str, message: str) -> StatesError:
        return StatesError(error, f"An error occurred while executing the state "
                                  f"'{self.st.name}' (entered at the event id "
                                  f"#{self.entered_id}). {message}")

    def _wrap(self, e: StatesError) -> StatesError:
        if e.error in (RUNTIME, QUERY_EVALUATION_ERROR) and e.cause and \
                not e.cause.startswith("An error occurred"):
            return StatesError(e.error, f"An error occurred while executing the state "
                                        f"'{self.st.name}' (entered at the event id "
                                        f"#{self.entered_id}). {e.cause}",
                               catchable=e.catchable)
        return e

    def jx(self) -> jsonata.Evaluator:
        if self._jsonata is None:
            self._jsonata = jsonata.Evaluator(self.ex.rng, int(self.ex.now * 1000))
        return self._jsonata

    def states_var(self, **extra: Any) -> dict:
        return {"input": self.raw, "context": self.ctx, **extra}

    def jtemplate(self, tmpl: Any, field_: str, **extra: Any) -> Any:
        try:
            return self.jx().template(tmpl, self.states_var(**extra), self.variables,
                                      field=field_, state=self.st.name)
        except StatesError as e:
            raise self._wrap(e) from None

    def read(self, path: str, value: Any) -> Any:
        try:
            return paths.read(path, value, self.scope)
        except StatesError as e:
            raise self._wrap(e) from None

    def template(self, tmpl: Any, value: Any) -> Any:
        try:
            return paths.template(tmpl, value, self.scope, self.intrinsic)
        except StatesError as e:
            raise self._wrap(e) from None

    def path_or_intrinsic(self, expr: str, value: Any, field_: str) -> Any:
        if expr.startswith("$"):
            def missing(path: str) -> StatesError:
                return self.fail(RUNTIME, f"The JSONPath '{path}' specified for the field "
                                          f"'{field_}' could not be found in the input "
                                          f"'{paths.dumps(value)}'")
            try:
                return paths.read(expr, value, self.scope, on_missing=missing)
            except StatesError as e:
                raise self._wrap(e) from None
        try:
            return self.intrinsic(expr, value, self.scope)
        except StatesError as e:
            raise self._wrap(e) from None

    # -- JSONPath input/output processing ----------------------------------------------

    def effective_input(self) -> Any:
        st = self.st
        if "InputPath" in st:
            ip = st.get("InputPath")
            value = {} if ip is None else self.read(ip, self.raw)
        else:
            value = self.raw
        if "Parameters" in st and st.type != "Map":
            value = self.template(st.get("Parameters"), value)
        return value

    def select(self, result: Any) -> Any:
        if "ResultSelector" in self.st:
            return self.template(self.st.get("ResultSelector"), result)
        return result

    def place(self, result: Any) -> Any:
        """ResultPath then OutputPath. A failure of OutputPath is not catchable (AWS)."""
        st = self.st
        rp = st.get("ResultPath", "$") if "ResultPath" in st else "$"
        try:
            combined = paths.put(rp, self.raw, result)
        except StatesError as e:
            raise self._wrap(e) from None
        if "OutputPath" in st:
            op = st.get("OutputPath")
            if op is None:
                return {}
            try:
                return paths.read(op, combined, self.scope)
            except StatesError as e:
                w = self._wrap(e)
                raise StatesError(w.error, w.cause, catchable=False) from None
        return combined

    def assign(self, spec: Any, value: Any, **states_extra: Any) -> dict | None:
        if spec is None:
            return None
        if self.jsonata:
            return self.jtemplate(spec, "Assign", **states_extra)
        return self.template(spec, value)

    def output(self, default: Any, **states_extra: Any) -> Any:
        """The JSONata state's output: Output evaluated, or ``default``."""
        if "Output" in self.st:
            return self.jtemplate(self.st.get("Output"), "Output", **states_extra)
        return default

    # -- execute --------------------------------------------------------------------------

    def execute(self) -> Generator:
        t = self.st.type
        if t == "Pass":
            return (yield from self._pass())
        if t == "Task":
            return (yield from self._retrying(self._task))
        if t == "Choice":
            return self._choice()
        if t == "Wait":
            return (yield from self._wait())
        if t == "Succeed":
            return self._succeed()
        if t == "Fail":
            raise self._fail_state()
        if t == "Parallel":
            return (yield from self._retrying(self._parallel))
        if t == "Map":
            return (yield from self._retrying(self._map))
        raise AssertionError(t)
        yield  # pragma: no cover - makes this a generator

    def _next(self) -> str | None:
        return None if self.st.end else self.st.next

    def _pass(self) -> Generator:
        st = self.st
        if self.jsonata:
            result = self.output(self.raw)
            assigned = self.assign(st.get("Assign"), None)
            return result, self._next(), assigned
        value = self.effective_input()
        result = st.get("Result") if "Result" in st else value
        out = self.place(result)
        assigned = self.assign(st.get("Assign"), result)
        return out, self._next(), assigned
        yield  # pragma: no cover

    def _succeed(self) -> tuple:
        if self.jsonata:
            return self.output(self.raw), None, None
        value = self.effective_input()
        if "OutputPath" in self.st:
            op = self.st.get("OutputPath")
            value = {} if op is None else self.read(op, value)
        return value, None, None

    def _fail_state(self) -> StatesError:
        st = self.st
        if self.jsonata:
            error = self.jtemplate(st.get("Error"), "Error") if "Error" in st else None
            cause = self.jtemplate(st.get("Cause"), "Cause") if "Cause" in st else None
            return StatesError(error, cause)
        error, cause = st.get("Error"), st.get("Cause")
        if "ErrorPath" in st:
            error = self._fail_field(st.get("ErrorPath"), "ErrorPath")
        if "CausePath" in st:
            cause = self._fail_field(st.get("CausePath"), "CausePath")
        return StatesError(error, cause)

    def _fail_field(self, expr: str, field_: str) -> Any:
        if expr.startswith("$"):
            def missing(path: str) -> StatesError:
                return self.fail(RUNTIME, f"The JSONPath '{path}' specified for the field "
                                          f"'{field_}' could not be found in the input "
                                          f"'{paths.dumps(self.raw)}'")
            return paths.read(expr, self.raw, self.scope, on_missing=missing)
        return self.intrinsic(expr, self.raw, self.scope)

    def _choice(self) -> tuple:
        st = self.st
        if self.jsonata:
            for i, rule in enumerate(st.get("Choices")):
                ok = self.jtemplate(rule.get("Condition"), f"Choices/{i}/Condition")
                if not isinstance(ok, bool):
                    raise self.fail(QUERY_EVALUATION_ERROR,
                                    f"The Condition of Choices/{i} must be a boolean, got "
                                    f"{paths.dumps(ok)}")
                if ok:
                    out = (self.jtemplate(rule["Output"], "Output") if "Output" in rule
                           else self.output(self.raw))
                    return out, rule["Next"], self.assign(rule.get("Assign"), None)
            if "Default" not in st:
                raise self.fail(NO_CHOICE_MATCHED, "No Choice rule matched and there is "
                                                   "no Default")
            return self.output(self.raw), st.get("Default"), self.assign(st.get("Assign"),
                                                                         None)
        if "InputPath" in st:
            ip = st.get("InputPath")
            value = {} if ip is None else self.read(ip, self.raw)
        else:
            value = self.raw
        for rule in st.get("Choices"):
            try:
                ok = choice.evaluate(rule, value, self.scope)
            except StatesError as e:
                raise self._wrap(e) from None
            if ok:
                return (self._choice_output(value), rule["Next"],
                        self.assign(rule.get("Assign"), value))
        if "Default" not in st:
            raise self.fail(NO_CHOICE_MATCHED, "No Choice rule matched and there is no "
                                               "Default")
        return self._choice_output(value), st.get("Default"), \
            self.assign(st.get("Assign"), value)

    def _choice_output(self, value: Any) -> Any:
        if "OutputPath" in self.st:
            op = self.st.get("OutputPath")
            return {} if op is None else self.read(op, value)
        return value

    def _wait(self) -> Generator:
        st = self.st
        now = self.ex.now
        if self.jsonata:
            if "Seconds" in st:
                secs = self.jtemplate(st.get("Seconds"), "Seconds")
                if not _is_int(secs) or secs < 0:
                    raise self.fail(QUERY_EVALUATION_ERROR,
                                    f"The Seconds field must be a non-negative integer, "
                                    f"got {paths.dumps(secs)}")
                fire_at = now + secs
            else:
                ts = self.jtemplate(st.get("Timestamp"), "Timestamp")
                moment = timestamps.parse(ts)
                if moment is None:
                    raise self.fail(QUERY_EVALUATION_ERROR,
                                    "The Timestamp field cannot be parsed as an ISO-8601 "
                                    f"extended offset date-time format string: {ts}")
                fire_at = timestamps.to_epoch(moment)
            value = self.output(self.raw)
        else:
            value = self.effective_input()
            if "Seconds" in st:
                fire_at = now + st.get("Seconds")
            elif "Timestamp" in st:
                fire_at = timestamps.to_epoch(timestamps.parse(st.get("Timestamp")))
            elif "SecondsPath" in st:
                sp = st.get("SecondsPath")
                try:
                    secs = paths.read(sp, value, self.scope)
                except StatesError:
                    raise self.fail(RUNTIME, f"The SecondsPath parameter does not reference "
                                             f"an input value: {sp}") from None
                if not _is_int(secs):
                    raise self.fail(RUNTIME, f"The SecondsPath parameter cannot be parsed as "
                                             f"a long value: {sp} == {_show(secs)}")
                if secs < 0:
                    raise self.fail(RUNTIME, f"The SecondsPath parameter references a "
                                             f"negative value: {sp} == {_show(secs)}")
                fire_at = now + int(secs)
            else:
                tp = st.get("TimestampPath")
                try:
                    ts = paths.read(tp, value, self.scope)
                except StatesError:
                    raise self.fail(RUNTIME, f"The TimestampPath parameter does not "
                                             f"reference an input value: {tp}") from None
                moment = timestamps.parse(ts)
                if moment is None:
                    raise self.fail(RUNTIME, "The TimestampPath parameter does not reference a "
                                             "valid ISO-8601 extended offset date-time format "
                                             f"string: {tp} == {_show(ts)}")
                fire_at = timestamps.to_epoch(moment)
            value = self._choice_output(value)
        assigned = self.assign(st.get("Assign"), value if not self.jsonata else None)
        if fire_at > now:
            yield _TimerWait(f"{self.frame}{st.name}#{self.visit}/wait", fire_at, "wait")
        return value, self._next(), assigned

    # -- retry and catch ------------------------------------------------------------------

    def _retrying(self, attempt_fn: Any) -> Generator:
        counts = [0] * len(self.st.retry)
        attempt = 0
        while True:
            try:
                return (yield from attempt_fn(attempt))
            except StatesError as e:
                if not e.catchable:
                    raise
                idx = retry.find(self.st.retry, e.error)
                if idx is None:
                    raise
                r = self.st.retry[idx]
                if counts[idx] >= r.max_attempts:
                    raise
                counts[idx] += 1
                attempt += 1
                # a new context object, never an update: recorded events may hold the old one
                self.ctx = {**self.ctx, "State": {**self.ctx["State"], "RetryCount": attempt}}
                self.scope = paths.Scope(self.ctx, self.variables)
                delay = r.delay(counts[idx], self.ex.rng.random())
                if delay > 0:
                    yield _TimerWait(f"{self.frame}{self.st.name}#{self.visit}/retry{attempt}",
                                     self.ex.now + delay, "retry")

    def catch(self, e: StatesError) -> tuple | None:
        """``(output, next, assigned)`` when a Catcher takes ``e``, else None."""
        if not e.catchable:
            return None
        idx = retry.find(self.st.catch, e.error)
        if idx is None:
            return None
        c = self.st.catch[idx]
        err = e.output()
        if self.jsonata:
            # without Output, a JSONata Catcher hands on the error output (AWS-recorded)
            out = (self.jtemplate(c.output, "Output", errorOutput=err) if c.output is not None
                   else err)
            assigned = self.assign(c.assign, None, errorOutput=err)
            return out, c.next, assigned
        try:
            out = paths.put(c.result_path, self.raw, err)
        except StatesError as e2:
            raise self._wrap(e2) from None
        assigned = self.assign(c.assign, err)
        return out, c.next, assigned

    # -- Task -----------------------------------------------------------------------------

    def _task(self, attempt: int) -> Generator:
        st = self.st
        exec_id = self.ex.context["Execution"]["Id"]
        # the idempotency token: $$.Execution.Id, the state (its frame inside a Map or
        # Parallel, and which visit of it in a loop) and the attempt. It is also the
        # callback token: Parameters can pass $$.Task.Token to a .waitForTaskToken task.
        token = f"{exec_id}/{self.frame}{st.name}#{self.visit}/{attempt}"
        self.ctx = {**self.ctx, "Task": {"Token": token}}
        self.scope = paths.Scope(self.ctx, self.variables)
        if self.jsonata:
            value = (self.jtemplate(st.get("Arguments"), "Arguments") if "Arguments" in st
                     else self.raw)
            timeout = self._jnumber("TimeoutSeconds")
            heartbeat = self._jnumber("HeartbeatSeconds")
        else:
            value = self.effective_input()
            timeout = self._number("TimeoutSeconds", value)
            heartbeat = self._number("HeartbeatSeconds", value)
        cmd = events.RunTask(token=token, resource=st.get("Resource"), input=value,
                             state=st.name, attempt=attempt, timeout_seconds=timeout,
                             heartbeat_seconds=heartbeat)
        result = yield _TaskWait(token, cmd)
        if self.jsonata:
            out = self.output(result, result=result)
            assigned = self.assign(st.get("Assign"), None, result=result)
            return out, self._next(), assigned
        selected = self.select(result)
        out = self.place(selected)
        return out, self._next(), self.assign(st.get("Assign"), selected)

    def _number(self, key: str, value: Any) -> float | None:
        if key in self.st:
            return self.st.get(key)
        if f"{key}Path" in self.st:
            n = self.read(self.st.get(f"{key}Path"), value)
            if not _is_int(n) or n <= 0:
                raise self.fail(RUNTIME, f"The {key}Path field refers to an invalid value: "
                                         f"{_show(n)}")
            return n
        return None

    def _jnumber(self, key: str) -> float | None:
        if key not in self.st:
            return None
        n = self.jtemplate(self.st.get(key), key)
        if not _is_int(n) or n <= 0:
            raise self.fail(QUERY_EVALUATION_ERROR, f"The {key} field must be a positive "
                                                    f"integer, got {_show(n)}")
        return n

    # -- Parallel -------------------------------------------------------------------------

    def _parallel(self, attempt: int) -> Generator:
        st = self.st
        value = (self.jtemplate(st.get("Arguments"), "Arguments") if "Arguments" in st
                 else self.raw) if self.jsonata else self.effective_input()
        fibers = []
        for i, branch in enumerate(st.branches):
            frame = f"{self.frame}{st.name}#{self.visit}.{attempt}[{i}]/"
            self.ex._record(events.PARALLEL_BRANCH_STARTED, name=st.name, branch=i,
                            frame=frame)
            gen = self.ex._machine(branch, value, dict(self.variables), frame)
            fibers.append(self.ex._spawn(gen, frame))
        results: list[Any] = [None] * len(fibers)
        pending = list(fibers)
        while pending:
            done = yield _AwaitAny(pending)
            pending.remove(done)
            if done.error is not None:
                for f in pending:
                    self.ex._cancel(f)
                raise done.error
            results[fibers.index(done)] = done.result
        return self._finish_collection(results)

    def _finish_collection(self, results: list[Any]) -> tuple:
        st = self.st
        if self.jsonata:
            out = self.output(results, result=results)
            return out, self._next(), self.assign(st.get("Assign"), None, result=results)
        selected = self.select(results)
        return self.place(selected), self._next(), self.assign(st.get("Assign"), selected)

    # -- Map ------------------------------------------------------------------------------

    def _map(self, attempt: int) -> Generator:
        st = self.st
        if self.jsonata:
            if "Items" in st:
                items = self.jtemplate(st.get("Items"), "Items")
                if not isinstance(items, list):
                    raise self.fail(QUERY_EVALUATION_ERROR,
                                    f"The JSONata expression '{_body(st.get('Items'))}' "
                                    f"specified for the field 'Items' returned an unexpected "
                                    f"result type. Expected 'array', but was "
                                    f"'{_json_type(items)}' for value: {paths.dumps(items)}")
            else:
                items = self.raw
                if not isinstance(items, list):
                    raise self.fail(QUERY_EVALUATION_ERROR,
                                    "Map state input must be an array but was: "
                                    f"{paths.dumps(items)}")
            value = self.raw
            max_conc = self._jnumber_any("MaxConcurrency", 0)
            tol_count = self._jnumber_any("ToleratedFailureCount", None)
            tol_pct = self._jnumber_any("ToleratedFailurePercentage", None, float)
        else:
            value = self.raw
            if "InputPath" in st:
                ip = st.get("InputPath")
                value = {} if ip is None else self.read(ip, self.raw)
            items = self.read(st.get("ItemsPath", "$"), value) if "ItemsPath" in st else value
            if not isinstance(items, list):
                raise self.fail(RUNTIME, f"Map state input must be an array but was: "
                                         f"{paths.dumps(items)}")
            max_conc = self._map_int("MaxConcurrency", value, 0)
            tol_count = self._map_int("ToleratedFailureCount", value, None)
            tol_pct = self._map_float("ToleratedFailurePercentage", value)
        if tol_count is not None and tol_count < 0:
            raise self.fail(RUNTIME, "ToleratedFailureCount cannot be negative.")
        if tol_pct is not None and not 0 <= tol_pct <= 100:
            raise self.fail(RUNTIME, "ToleratedFailurePercentage must be between 0 and 100.")
        selector = st.get("ItemSelector", st.get("Parameters"))
        inputs = []
        for i, item in enumerate(items):
            map_ctx = {"Map": {"Item": {"Index": i, "Value": item}}}
            if selector is None:
                inputs.append(item)
            elif self.jsonata:
                ctx = {**self.ctx, **map_ctx}
                try:
                    inputs.append(self.jx().template(selector, {"input": self.raw,
                                                                "context": ctx},
                                                     self.variables, field="ItemSelector",
                                                     state=st.name))
                except StatesError as e:
                    raise self._wrap(e) from None
            else:
                scope = paths.Scope({**self.ctx, **map_ctx}, self.variables)
                try:
                    inputs.append(paths.template(selector, value, scope, self.intrinsic))
                except StatesError as e:
                    raise self._wrap(e) from None
        if "ItemBatcher" in st:
            inputs = items = self._batches(st.get("ItemBatcher"), inputs, value)
        processor = st.branches[0]
        results: list[Any] = [None] * len(inputs)
        running: list[_Fiber] = []
        index_of: dict[int, int] = {}
        failures = 0
        nxt = 0
        cap = self.ex.limits.max_map_concurrency
        limit = min(max_conc, cap) if max_conc and max_conc > 0 else cap
        while nxt < len(inputs) or running:
            while nxt < len(inputs) and len(running) < limit:
                frame = f"{self.frame}{st.name}#{self.visit}.{attempt}[{nxt}]/"
                self.ex._record(events.MAP_ITERATION_STARTED, name=st.name, index=nxt,
                                frame=frame)
                map_ctx = {"Map": {"Item": {"Index": nxt, "Value": items[nxt]}}}
                gen = self.ex._machine(processor, inputs[nxt], dict(self.variables), frame,
                                       map_ctx)
                f = self.ex._spawn(gen, frame)
                index_of[id(f)] = nxt
                running.append(f)
                nxt += 1
            done = yield _AwaitAny(running)
            running.remove(done)
            i = index_of[id(done)]
            if done.error is None:
                self.ex._record(events.MAP_ITERATION_SUCCEEDED, name=st.name, index=i)
                results[i] = done.result
                continue
            self.ex._record(events.MAP_ITERATION_FAILED, name=st.name, index=i,
                            error=done.error.error, cause=done.error.cause)
            failures += 1
            results[i] = done.error.output()
            tolerated = tol_count is not None or tol_pct is not None
            over = (not tolerated) or (
                (tol_count is None or failures > tol_count)
                and (tol_pct is None or failures * 100 > tol_pct * len(inputs)))
            if over:
                for f in running:
                    self.ex._cancel(f)
                if tolerated:
                    raise StatesError(EXCEEDED_TOLERATED_FAILURE_THRESHOLD,
                                      "The specified tolerated failure threshold was "
                                      "exceeded")
                raise done.error
        return self._finish_collection(results)

    def _batches(self, spec: Mapping[str, Any], inputs: list[Any], value: Any) -> list[dict]:
        """ItemBatcher: the items in batches ``{"Items": [...], "BatchInput": ...}``,
        each within MaxItemsPerBatch items and MaxInputBytesPerBatch bytes."""
        def bound(key: str) -> Any:
            if self.jsonata:
                return (self.jtemplate(spec[key], f"ItemBatcher/{key}") if key in spec
                        else None)
            if key in spec:
                return spec[key]
            if f"{key}Path" in spec:
                n = _as_number(self.read(spec[f"{key}Path"], value), int)
                if n is None or n <= 0:
                    raise self.fail(RUNTIME, f"The {key}Path field must refer to a positive "
                                             f"integer: {spec[f'{key}Path']}")
                return n
            return None

        max_items = bound("MaxItemsPerBatch") or len(inputs) or 1
        max_bytes = bound("MaxInputBytesPerBatch") or self.ex.limits.max_payload_bytes
        extra: dict[str, Any] = {}
        if "BatchInput" in spec:
            extra["BatchInput"] = (self.jtemplate(spec["BatchInput"], "ItemBatcher/BatchInput")
                                   if self.jsonata else self.template(spec["BatchInput"], value))
        batches: list[dict] = []
        current: list[Any] = []
        size = 0
        for item in inputs:
            n = payload_size(item) + 1
            if current and (len(current) >= max_items or size + n > max_bytes):
                batches.append({**extra, "Items": current})
                current, size = [], 0
            current.append(item)
            size += n
        if current:
            batches.append({**extra, "Items": current})
        return batches

    def _jnumber_any(self, key: str, default: Any, kind: type = int) -> Any:
        if key not in self.st:
            return default
        n = self.jtemplate(self.st.get(key), key)
        if not (_is_int(n) if kind is int else _is_number(n)):
            raise self.fail(QUERY_EVALUATION_ERROR,
                            f"The {key} field must be {'an integer' if kind is int else 'a number'}"
                            f", got {_show(n)}")
        return n

    def _map_int(self, key: str, value: Any, default: Any) -> Any:
        if key in self.st:
            return self.st.get(key)
        if f"{key}Path" in self.st:
            path = self.st.get(f"{key}Path")
            n = _as_number(self.read(path, value), int)
            if n is None:
                raise self.fail(RUNTIME, f"The {key}Path field refers to value "
                                         f"\"{_show(self.read(path, value))}\" which is not a "
                                         f"valid integer: {path}")
            return n
        return default

    def _map_float(self, key: str, value: Any) -> Any:
        if key in self.st:
            return self.st.get(key)
        if f"{key}Path" in self.st:
            path = self.st.get(f"{key}Path")
            n = _as_number(self.read(path, value), float)
            if n is None:
                raise self.fail(RUNTIME, f"The {key}Path field refers to value "
                                         f"\"{_show(self.read(path, value))}\" which is not a "
                                         f"valid float: {path}")
            return n
        return None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _as_number(v: Any, kind: type) -> Any:
    """A number, or a string holding one (AWS takes ``"1"`` for MaxConcurrencyPath)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, str):
        try:
            return kind(v.strip())
        except ValueError:
            return None
    if kind is int:
        return v if isinstance(v, int) else None
    return v if isinstance(v, (int, float)) else None


def _show(v: Any) -> str:
    return v if isinstance(v, str) else paths.dumps(v)


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _body(v: Any) -> str:
    return jsonata.body(v) if jsonata.is_expression(v) else str(v)


def replay(machine: StateMachine, history: Iterable[Mapping[str, Any]],
           limits: Limits | None = None) -> Execution:
    """The execution ``history`` describes, rebuilt by re-applying its input events.
    ``pending()`` on the result says what to run and arm again after a restart."""
    ex = Execution(machine, limits)
    for ev in history:
        if ev["type"] in events.EXTERNAL:
            ex.apply(ev)
    return ex


def step(machine: StateMachine, history: Iterable[Mapping[str, Any]],
         event: Mapping[str, Any], limits: Limits | None = None) -> events.Decision:
    """The pure core: what ``event`` does to the execution ``history`` records."""
    return replay(machine, history, limits).apply(event)


__all__ = ["Execution", "Limits", "payload_size", "replay", "step"]
