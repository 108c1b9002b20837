"""What each state type does, for one entry of one state: its input and output
processing (JSONPath or JSONata), Retry and Catch, and the behaviour of its type.

A state's work is a generator: it yields a TaskWait, TimerWait or AwaitAny when it must
wait, and the interpreter's scheduler (interpreter.py) resumes it with what it waited
for, or throws the StatesError it ended in."""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import choice, events, jsonata, paths, retry, timestamps
from .definition import JSONATA, State
from .errors import (
    EXCEEDED_TOLERATED_FAILURE_THRESHOLD,
    NO_CHOICE_MATCHED,
    QUERY_EVALUATION_ERROR,
    RUNTIME,
    StatesError,
)
from .intrinsics import Evaluator as IntrinsicEvaluator
from .limits import payload_size


@dataclass
class TaskWait:
    token: str
    command: events.RunTask
    timers: list[str] = field(default_factory=list)
    beats: int = 0


@dataclass
class TimerWait:
    timer: str
    fire_at: float
    reason: str


@dataclass
class AwaitAny:
    fibers: list[Any]  # the interpreter's fibers


class StateRun:
    """One entry of one state: its input/output processing and its type's behaviour."""

    def __init__(self, ex: Any, st: State, raw: Any, variables: dict[str, Any],
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
            yield TimerWait(f"{self.frame}{st.name}#{self.visit}/wait{self.ex.tag}", fire_at,
                            "wait")
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
                    yield TimerWait(f"{self.frame}{self.st.name}#{self.visit}/retry{attempt}"
                                    f"{self.ex.tag}", self.ex.now + delay, "retry")

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
        token = f"{exec_id}/{self.frame}{st.name}#{self.visit}/{attempt}{self.ex.tag}"
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
        result = yield TaskWait(token, cmd)
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
            done = yield AwaitAny(pending)
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
        running: list[Any] = []
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
            done = yield AwaitAny(running)
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
