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
import re
from collections.abc import Generator, Iterable, Mapping
from typing import Any

from . import events, timestamps
from .definition import State, StateMachine
from .errors import DATA_LIMIT_EXCEEDED, HEARTBEAT_TIMEOUT, RUNTIME, TIMEOUT, StatesError
from .limits import Limits, payload_size
from .states import AwaitAny, StateRun, TaskWait, TimerWait

DEFAULT_MACHINE_NAME = "StateMachine"


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
        self._tasks: dict[str, tuple[_Fiber, TaskWait]] = {}
        self._timers: dict[str, tuple[_Fiber, str, float]] = {}
        self._timeout_of: dict[str, str] = {}  # timer -> task token it times out
        self._root: _Fiber | None = None
        self._current: _Fiber | None = None
        self._out: events.Decision | None = None
        self._visits: collections.Counter = collections.Counter()
        self._seed = 0
        #: redrives so far; tokens and timer names of a redriven run end with ``tag``
        self.redrives = 0
        self.tag = ""
        # what a redriven run answers from the history (untagged names): task results of
        # state visits that ended, and timers of those (Waits, retry delays) that fired
        self._memo: dict[str, tuple[str, Any, Any]] = {}
        self._memo_fired: set[str] = set()

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
        t = event["type"]
        if t == events.EXECUTION_REDRIVEN:
            if self.status in ("FAILED", "TIMED_OUT", "ABORTED"):
                self._redrive()
                self._run()
            return self._take()
        if self.status in ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"):
            return self._take()
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
        self._seed = ev.get("seed", 0)
        self.rng = random.Random(self._seed)
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
        self._arm_execution_timeout()

    def _arm_execution_timeout(self) -> None:
        if self.machine.timeout_seconds:
            timer = "execution-timeout" + self.tag
            fire_at = self.now + self.machine.timeout_seconds
            self._timers[timer] = (self._root, "execution-timeout", fire_at)
            self._command(events.StartTimer(timer, fire_at, "execution-timeout"))

    def _redrive(self) -> None:
        """Run again from the start, on the recorded input and seed, with what ended
        before answered from the history (:func:`_memo`): the run carries on at the
        states that did not end, each with fresh retries, new tokens and new timers."""
        self._memo, self._memo_fired = _memo(self.history)
        self.redrives += 1
        self.tag = f"/redrive{self.redrives}"
        self.status = "RUNNING"
        self.rng = random.Random(self._seed)
        self._ready.clear()
        self._tasks.clear()
        self._timers.clear()
        self._timeout_of.clear()
        self._visits.clear()
        self.variables = {}
        execution = {**self.context["Execution"], "RedriveCount": self.redrives}
        self.context = {**self.context, "Execution": execution}
        self._root = _Fiber(self._machine(self.machine, execution["Input"], self.variables,
                                          ""), "")
        self._ready.append((self._root, "send", None))
        self._arm_execution_timeout()

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
        if isinstance(wait, TaskWait) and _untag(wait.token) in self._memo:
            kind, value, cause = self._memo[_untag(wait.token)]  # ended before a redrive
            self._ready.append((fiber, "send", value) if kind == "ok" else
                               (fiber, "throw", StatesError(value, cause)))
        elif isinstance(wait, TimerWait) and _untag(wait.timer) in self._memo_fired:
            self._ready.append((fiber, "send", None))
        elif isinstance(wait, TaskWait):
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
        elif isinstance(wait, TimerWait):
            self._timers[wait.timer] = (fiber, wait.reason, wait.fire_at)
            self._record(events.TIMER_STARTED, timer=wait.timer, fireAt=wait.fire_at,
                         reason=wait.reason)
            self._command(events.StartTimer(wait.timer, wait.fire_at, wait.reason))
        elif isinstance(wait, AwaitAny):
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
        run = StateRun(self, st, raw, variables, ctx, frame, visit, entered["id"])
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


_TAG = re.compile(r"/redrive\d+$")


def _untag(name: str) -> str:
    return _TAG.sub("", name)


def _memo(history: list[dict]) -> tuple[dict[str, tuple[str, Any, Any]], set[str]]:
    """What a redrive answers from ``history``: every task attempt of a state visit
    that ended (its Exited event: by success or by a Catch), and the fired timers of
    those visits and of Waits that elapsed. Visits are counted as the interpreter counts
    them (per frame and state, from 1, anew at each redrive)."""
    visits: collections.Counter = collections.Counter()
    open_: dict[str, list[int]] = {}
    ended: set[str] = set()
    results: dict[str, tuple[str, Any, Any]] = {}
    fired: set[str] = set()
    waits: set[str] = set()
    for ev in history:
        t = ev["type"]
        if t == events.EXECUTION_REDRIVEN:
            visits.clear()
            open_.clear()
        elif t.endswith("StateEntered"):
            key = f"{ev.get('frame', '')}{ev.get('name')}"
            visits[key] += 1
            open_.setdefault(key, []).append(visits[key])
        elif t.endswith("StateExited"):
            key = f"{ev.get('frame', '')}{ev.get('name')}"
            if open_.get(key):
                ended.add(f"{key}#{open_[key].pop()}")
        elif t == events.TASK_SUCCEEDED:
            results[_untag(ev["token"])] = ("ok", ev.get("output"), None)
        elif t in (events.TASK_FAILED, events.TASK_TIMED_OUT):
            results[_untag(ev["token"])] = ("error", ev.get("error"), ev.get("cause"))
        elif t == events.TIMER_STARTED and ev.get("reason") == "wait":
            waits.add(_untag(ev["timer"]))
        elif t == events.TIMER_FIRED:
            fired.add(_untag(ev["timer"]))

    def visit(name: str) -> str:  # "<frame><state>#<visit>" of a token or a timer name
        return name.rsplit("/", 1)[0]

    memo = {token: r for token, r in results.items()
            if visit(token.split("/", 1)[1]) in ended}
    timers = {t for t in fired if t in waits or visit(t) in ended}
    return memo, timers


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


__all__ = ["Execution", "replay", "step"]
