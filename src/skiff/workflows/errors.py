"""Errors of the workflows package.

Two families, kept apart on purpose:

    SkiffError
    └── InvalidDefinition   400 invalid_definition   the definition does not validate; carries
                                                     ``diagnostics`` shaped like AWS's
                                                     ValidateStateMachineDefinition answer

    StatesError (not a SkiffError: an execution outcome, never an HTTP answer)
        error + cause, named as AWS names them (States.Runtime, States.TaskFailed, ...);
        raised inside the interpreter, matched by Retry/Catch, recorded in the history.
"""

from __future__ import annotations

from dataclasses import dataclass

from skiff.errors import SkiffError

ALL = "States.ALL"
TASK_FAILED = "States.TaskFailed"
TIMEOUT = "States.Timeout"
HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"
RUNTIME = "States.Runtime"
RESULT_PATH_MATCH_FAILURE = "States.ResultPathMatchFailure"
PARAMETER_PATH_FAILURE = "States.ParameterPathFailure"
INTRINSIC_FAILURE = "States.IntrinsicFailure"
QUERY_EVALUATION_ERROR = "States.QueryEvaluationError"
BRANCH_FAILED = "States.BranchFailed"
NO_CHOICE_MATCHED = "States.NoChoiceMatched"
EXCEEDED_TOLERATED_FAILURE_THRESHOLD = "States.ExceedToleratedFailureThreshold"
ITEM_READER_FAILED = "States.ItemReaderFailed"
RESULT_WRITER_FAILED = "States.ResultWriterFailed"
PERMISSIONS = "States.Permissions"
DATA_LIMIT_EXCEEDED = "States.DataLimitExceeded"

# States.ALL matches every error but these two (AWS: both are terminal).
NOT_MATCHED_BY_ALL = frozenset({RUNTIME, DATA_LIMIT_EXCEEDED})


@dataclass(frozen=True)
class Diagnostic:
    """One finding of validation, as AWS's ValidateStateMachineDefinition reports it."""

    code: str  # e.g. SCHEMA_VALIDATION_FAILED, MISSING_TRANSITION_TARGET
    message: str
    location: str  # e.g. /States/Wait/Timestamp
    severity: str = "ERROR"

    def to_dict(self) -> dict:
        return {"severity": self.severity, "code": self.code, "message": self.message,
                "location": self.location}


class InvalidDefinition(SkiffError):
    status = 400
    code = "invalid_definition"

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        first = diagnostics[0]
        more = f" (and {len(diagnostics) - 1} more)" if len(diagnostics) > 1 else ""
        super().__init__(f"invalid state machine definition: {first.message} at "
                         f"{first.location}{more}; fix the definition and deploy again",
                         diagnostics=[d.to_dict() for d in diagnostics])
        self.diagnostics = diagnostics


class StatesError(Exception):
    """A failure inside an execution: what a Retrier or Catcher sees as Error and Cause.

    ``catchable`` is False for the few failures AWS lets no Catcher handle (a States.Runtime
    raised by a state's own OutputPath, say)."""

    def __init__(self, error: str | None, cause: str | None = None, *,
                 catchable: bool = True) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause
        self.catchable = catchable

    def output(self) -> dict:
        """The error output a Catcher hands on (``{"Error": ..., "Cause": ...}``)."""
        out: dict = {}
        if self.error is not None:
            out["Error"] = self.error
        if self.cause is not None:
            out["Cause"] = self.cause
        return out
