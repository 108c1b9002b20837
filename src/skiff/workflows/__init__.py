"""Amazon States Language: definitions, a pure interpreter over an execution history,
and an in-memory driver (the durable executor builds on the same interpreter).

    machine = workflows.parse(definition_dict)          # or InvalidDefinition
    decision = workflows.step(machine, history, event)  # events to record + commands
    result = workflows.local.run(machine, input, tasks={...})
"""

from __future__ import annotations

from .definition import State, StateMachine, parse, validate
from .errors import Diagnostic, InvalidDefinition, StatesError
from .events import CancelTimer, Decision, Finish, RunTask, StartTimer
from .interpreter import Execution, replay, step
from .limits import Limits

__all__ = [
    "CancelTimer", "Decision", "Diagnostic", "Execution", "Finish", "InvalidDefinition", "Limits",
    "RunTask", "StartTimer", "State", "StateMachine", "StatesError", "parse", "replay",
    "step", "validate",
]
