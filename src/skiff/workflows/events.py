"""The vocabulary between the interpreter and whatever drives it: history events (named
as AWS's GetExecutionHistory names them) and the commands the interpreter asks for.

An event is a plain dict ``{"id", "type", "timestamp", ...details}`` (ids count from 1,
timestamps are epoch seconds), so a history stores as JSON rows as it is; commands are
frozen dataclasses, carried out and forgotten.

Input events (the driver records them; replaying them rebuilds the execution):

    ExecutionStarted   input, seed (int: UUID, MathRandom, jitter), execution {Id, Name,
                       StartTime, ...: $$.Execution}, state_machine {Id, Name}
    TaskSucceeded      token, output
    TaskFailed         token, error, cause
    TaskHeartbeat      token
    TimerFired         timer
    ExecutionAborted   error?, cause?   (StopExecution; also the execution's last event)
    ExecutionRedriven  (RedriveExecution of a FAILED, TIMED_OUT or ABORTED execution: it
                       runs again from the start, every task that succeeded and every
                       Wait that elapsed answered from the history, so it carries on
                       from where it stopped; its new tokens and timers end /redriveN)

Events the interpreter writes:

    <Type>StateEntered     name, frame, input        (TaskStateEntered, MapStateEntered...)
    <Type>StateExited      name, frame, output, assignedVariables?
    TaskScheduled          token, state, resource, input, attempt, timeoutInSeconds,
                           heartbeatInSeconds
    TaskTimedOut           token, error (States.Timeout or States.HeartbeatTimeout)
    TimerStarted           timer, fireAt, reason (wait | retry)
    MapIterationStarted    name, index, frame;  MapIterationSucceeded  name, index
    MapIterationFailed     name, index, error, cause
    ParallelBranchStarted  name, branch, frame
    ExecutionSucceeded     output
    ExecutionFailed        error?, cause?
    ExecutionTimedOut      error, cause

``frame`` names where a state runs: "" at the top, ``Map#1.0[3]/`` inside iteration 3 of
the first visit, first attempt, of state Map. Timers for task deadlines are armed by
StartTimer commands only (they belong to the task, whose TaskScheduled says them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EXECUTION_STARTED = "ExecutionStarted"
TASK_SUCCEEDED = "TaskSucceeded"
TASK_FAILED = "TaskFailed"
TASK_HEARTBEAT = "TaskHeartbeat"
TIMER_FIRED = "TimerFired"
EXECUTION_ABORTED = "ExecutionAborted"
EXECUTION_REDRIVEN = "ExecutionRedriven"
EXTERNAL = frozenset({EXECUTION_STARTED, TASK_SUCCEEDED, TASK_FAILED, TASK_HEARTBEAT,
                      TIMER_FIRED, EXECUTION_ABORTED, EXECUTION_REDRIVEN})

EXECUTION_SUCCEEDED = "ExecutionSucceeded"
EXECUTION_FAILED = "ExecutionFailed"
EXECUTION_TIMED_OUT = "ExecutionTimedOut"
TASK_SCHEDULED = "TaskScheduled"
TASK_TIMED_OUT = "TaskTimedOut"
TIMER_STARTED = "TimerStarted"
MAP_ITERATION_STARTED = "MapIterationStarted"
MAP_ITERATION_SUCCEEDED = "MapIterationSucceeded"
MAP_ITERATION_FAILED = "MapIterationFailed"
PARALLEL_BRANCH_STARTED = "ParallelBranchStarted"


def entered(state_type: str) -> str:
    return f"{state_type}StateEntered"  # PassStateEntered, MapStateEntered, ...


def exited(state_type: str) -> str:
    return f"{state_type}StateExited"


@dataclass(frozen=True)
class RunTask:
    """Invoke ``resource`` with ``input``. ``token`` is the idempotency key: the same for
    a re-run of the same attempt (after a crash), different for each retry."""

    token: str
    resource: str
    input: Any
    state: str
    attempt: int
    timeout_seconds: float | None = None
    heartbeat_seconds: float | None = None


@dataclass(frozen=True)
class StartTimer:
    """Send TimerFired ``{"timer": timer}`` at ``fire_at`` (epoch seconds)."""

    timer: str
    fire_at: float
    reason: str  # wait | retry | task-timeout | heartbeat | execution-timeout


@dataclass(frozen=True)
class CancelTimer:
    timer: str


@dataclass(frozen=True)
class Finish:
    """The execution ended: SUCCEEDED with ``output``, or FAILED / TIMED_OUT / ABORTED
    with ``error`` and ``cause``."""

    status: str
    output: Any = None
    error: str | None = None
    cause: str | None = None


Command = RunTask | StartTimer | CancelTimer | Finish


@dataclass
class Decision:
    """What one step produced: the events to append to the history (the incoming event
    first) and the commands to carry out."""

    events: list[dict] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
