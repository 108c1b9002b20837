"""Run an execution to its end in memory, with a fake clock: the smallest driver of the
interpreter, for tests and ``skiff sfn validate``-style dry runs.

Tasks are plain functions ``fn(input, call) -> result`` looked up by Resource (exact name,
or a prefix ending in ``:`` such as ``task:fail:``); raising TaskError fails the task.
Nothing sleeps: timers and task durations advance the fake clock, so a Wait of an hour
or a Retry backoff costs nothing, and a task that "sleeps" longer than its TimeoutSeconds
is timed out by the interpreter's own timer.

The durable executor is the same loop with the history in the store.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from . import events
from .definition import StateMachine, parse
from .interpreter import Execution, step
from .limits import Limits

DEFAULT_START = 1_700_000_000.0  # a fixed epoch: runs are reproducible


class TaskError(Exception):
    """Raised by a local task function to fail the task with ``error`` and ``cause``."""

    def __init__(self, error: str, cause: str | None = None) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


@dataclass(frozen=True)
class TaskCall:
    """What a task function is told beside its input."""

    resource: str
    state: str
    attempt: int
    token: str
    now: float


@dataclass(frozen=True)
class Sleep:
    """A task result that arrives ``seconds`` later on the fake clock."""

    seconds: float
    result: Any


@dataclass
class Result:
    status: str
    output: Any = None
    error: str | None = None
    cause: str | None = None
    history: list[dict] = field(default_factory=list)
    commands: list[events.Command] = field(default_factory=list)
    now: float = 0.0


TaskFn = Callable[[Any, TaskCall], Any]

# Bounds a runaway definition (a Choice loop with no exit) in tests and dry runs.
MAX_EVENTS = 200_000


def _json(value: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))


def _resolve(tasks: Mapping[str, TaskFn], resource: str) -> TaskFn:
    if resource in tasks:
        return tasks[resource]
    best = ""
    for name in tasks:
        if name.endswith(":") and resource.startswith(name) and len(name) > len(best):
            best = name
    if not best:
        raise KeyError(resource)
    return tasks[best]


def run(definition: StateMachine | Mapping[str, Any], input: Any = None, *,
        tasks: Mapping[str, TaskFn] | None = None, start: float = DEFAULT_START,
        seed: int = 0, execution_id: str = "arn:aws:states:local:0:execution:sm:exec",
        state_machine_name: str = "sm", limits: Limits | None = None,
        replay: bool = False) -> Result:
    """Run ``definition`` on ``input`` to its end; returns status, output and history.

    With ``replay`` every event goes through the pure ``step(machine, history, event)``,
    rebuilding the execution from its history each time, as the durable executor does
    after a restart (slower: for tests that hold the core to its purity)."""
    machine = definition if isinstance(definition, StateMachine) else parse(definition)
    tasks = tasks or {}
    ex = Execution(machine, limits)
    history: list[dict] = ex.history
    clock = start
    queue: list[tuple[float, int, dict]] = []
    seq = 0
    armed: dict[str, float] = {}  # timer -> when it fires now (a re-armed timer moves)
    all_commands: list[events.Command] = []

    def push(at: float, ev: dict) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(queue, (at, seq, ev))

    push(clock, {"type": events.EXECUTION_STARTED, "input": input, "seed": seed,
                 "execution": {"Id": execution_id},
                 "state_machine": {"Name": state_machine_name}})
    while queue:
        at, _, ev = heapq.heappop(queue)
        if ev["type"] == events.TIMER_FIRED:
            if armed.get(ev["timer"]) != at:
                continue  # cancelled or re-armed
            del armed[ev["timer"]]
        clock = max(clock, at)
        if replay:
            decision = step(machine, history, {**ev, "timestamp": clock}, limits)
            history.extend(decision.events)
        else:
            decision = ex.apply({**ev, "timestamp": clock})
        if len(history) > MAX_EVENTS:
            raise RuntimeError(f"execution passed {MAX_EVENTS} events; is it looping?")
        for cmd in decision.commands:
            all_commands.append(cmd)
            if isinstance(cmd, events.Finish):
                return Result(cmd.status, cmd.output, cmd.error, cmd.cause, history,
                              all_commands, clock)
            if isinstance(cmd, events.StartTimer):
                armed[cmd.timer] = cmd.fire_at
                push(cmd.fire_at, {"type": events.TIMER_FIRED, "timer": cmd.timer})
            elif isinstance(cmd, events.CancelTimer):
                armed.pop(cmd.timer, None)
            elif isinstance(cmd, events.RunTask):
                call = TaskCall(cmd.resource, cmd.state, cmd.attempt, cmd.token, clock)
                delay = 0.0
                try:
                    fn = _resolve(tasks, cmd.resource)
                    # a JSON round trip each way, as over the wire to an app: a task that
                    # changes its input in place cannot reach the recorded history
                    result = fn(_json(cmd.input), call)
                    if isinstance(result, Sleep):
                        delay, result = result.seconds, result.result
                    result = _json(result)
                    done = {"type": events.TASK_SUCCEEDED, "token": cmd.token,
                            "output": result}
                except TaskError as e:
                    done = {"type": events.TASK_FAILED, "token": cmd.token, "error": e.error,
                            "cause": e.cause}
                except (msgspec.EncodeError, TypeError) as e:
                    done = {"type": events.TASK_FAILED, "token": cmd.token,
                            "error": "States.TaskFailed",
                            "cause": f"the task returned a value that is not JSON: {e}"}
                except KeyError:
                    done = {"type": events.TASK_FAILED, "token": cmd.token,
                            "error": "States.TaskFailed",
                            "cause": f"no task function for resource {cmd.resource!r}"}
                push(clock + delay, done)
    # the queue ran dry without a Finish: something waits for an event nobody will send
    return Result("RUNNING", history=history, commands=all_commands, now=clock)
