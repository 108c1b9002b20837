"""The interpreter's contract with the executor that drives it: commands, tokens,
timers, replay after a restart, limits. Events are fed by hand, so every step is seen."""

from __future__ import annotations

import pytest

from skiff.workflows import (
    CancelTimer,
    Execution,
    Finish,
    Limits,
    RunTask,
    StartTimer,
    local,
    parse,
    replay,
    retry,
    step,
)
from skiff.workflows.local import Sleep, TaskError

T0 = 1_000_000.0
EXEC = "arn:aws:states:local:0:execution:sm:e1"


def started(input=None, **kw) -> dict:
    return {"type": "ExecutionStarted", "timestamp": T0, "input": input, "seed": 7,
            "execution": {"Id": EXEC}, **kw}


def task(name="T", **fields) -> dict:
    return {"Type": "Task", "Resource": "app", "End": True, **fields}


def machine(*states: tuple[str, dict]) -> object:
    return parse({"StartAt": states[0][0], "States": dict(states)})


def only(commands, kind):
    found = [c for c in commands if isinstance(c, kind)]
    assert len(found) == 1, commands
    return found[0]


def test_a_task_is_a_command_and_its_result_finishes_the_execution() -> None:
    ex = Execution(machine(("T", task(ResultPath="$.r"))))
    d = ex.apply(started({"a": 1}))
    run = only(d.commands, RunTask)
    assert (run.resource, run.input, run.state, run.attempt) == ("app", {"a": 1}, "T", 0)
    assert run.token == f"{EXEC}/T#1/0"
    assert [e["type"] for e in d.events] == ["ExecutionStarted", "TaskStateEntered",
                                             "TaskScheduled"]
    d = ex.apply({"type": "TaskSucceeded", "timestamp": T0 + 1, "token": run.token,
                  "output": 2})
    assert d.commands == [Finish("SUCCEEDED", output={"a": 1, "r": 2})]
    assert d.events[-1]["type"] == "ExecutionSucceeded"


def test_each_retry_gets_a_new_token_and_a_durable_timer() -> None:
    m = machine(("T", task(Retry=[{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 3,
                                   "BackoffRate": 2, "MaxAttempts": 2}])))
    ex = Execution(m)
    first = only(ex.apply(started()).commands, RunTask)
    d = ex.apply({"type": "TaskFailed", "timestamp": T0, "token": first.token,
                  "error": "Boom", "cause": "x"})
    timer = only(d.commands, StartTimer)
    assert timer.fire_at == T0 + 3 and timer.reason == "retry"
    d = ex.apply({"type": "TimerFired", "timestamp": T0 + 3, "timer": timer.timer})
    second = only(d.commands, RunTask)
    assert second.attempt == 1 and second.token == f"{EXEC}/T#1/1" != first.token
    d = ex.apply({"type": "TaskFailed", "timestamp": T0 + 3, "token": second.token,
                  "error": "Boom", "cause": "x"})
    assert only(d.commands, StartTimer).fire_at == T0 + 3 + 6  # backoff 2: 3 s then 6 s


def test_a_restart_replays_the_history_and_reruns_the_task_in_flight_with_its_token() -> None:
    m = machine(("A", {"Type": "Pass", "Result": 1, "ResultPath": "$.a", "Next": "W"}),
                ("W", {"Type": "Wait", "Seconds": 60, "Next": "T"}), ("T", task()))
    history: list[dict] = []
    for ev in (started({}),):
        history += step(m, history, ev).events
    (timer,) = replay(m, history).pending()
    assert isinstance(timer, StartTimer) and timer.fire_at == T0 + 60  # the Wait survives
    history += step(m, history, {"type": "TimerFired", "timestamp": T0 + 60,
                                 "timer": timer.timer}).events
    # the process dies here, the task dispatched but not answered; after the restart:
    (again,) = replay(m, history).pending()
    assert isinstance(again, RunTask) and again.token == f"{EXEC}/T#1/0"
    assert again.input == {"a": 1}
    d = step(m, history, {"type": "TaskSucceeded", "timestamp": T0 + 61,
                          "token": again.token, "output": "done"})
    assert d.commands == [Finish("SUCCEEDED", output="done")]


def test_a_late_or_duplicate_task_result_changes_nothing() -> None:
    m = machine(("T", task(TimeoutSeconds=5)))
    ex = Execution(m)
    d = ex.apply(started())
    run, timer = only(d.commands, RunTask), only(d.commands, StartTimer)
    assert timer.fire_at == T0 + 5 and timer.reason == "task-timeout"
    d = ex.apply({"type": "TimerFired", "timestamp": T0 + 5, "timer": timer.timer})
    assert d.commands[-1] == Finish("FAILED", error="States.Timeout",
                                    cause="Task timed out after its TimeoutSeconds")
    d = ex.apply({"type": "TaskSucceeded", "timestamp": T0 + 60, "token": run.token,
                  "output": 1})
    assert d.commands == [] and ex.status == "FAILED"


def test_a_result_in_time_cancels_the_timeout_timer() -> None:
    ex = Execution(machine(("T", task(TimeoutSeconds=5))))
    d = ex.apply(started())
    run, timer = only(d.commands, RunTask), only(d.commands, StartTimer)
    d = ex.apply({"type": "TaskSucceeded", "timestamp": T0 + 1, "token": run.token,
                  "output": 1})
    assert CancelTimer(timer.timer) in d.commands


def test_a_heartbeat_rearms_the_heartbeat_timer_and_silence_times_out() -> None:
    ex = Execution(machine(("T", task(TimeoutSeconds=100, HeartbeatSeconds=10))))
    d = ex.apply(started())
    run = only(d.commands, RunTask)
    hb = next(c for c in d.commands if isinstance(c, StartTimer) and c.reason == "heartbeat")
    d = ex.apply({"type": "TaskHeartbeat", "timestamp": T0 + 8, "token": run.token})
    moved = only(d.commands, StartTimer)
    assert moved.fire_at == T0 + 18 and CancelTimer(hb.timer) in d.commands
    d = ex.apply({"type": "TimerFired", "timestamp": T0 + 10, "timer": hb.timer})
    assert d.commands == []  # the old deadline, moved: ignored
    d = ex.apply({"type": "TimerFired", "timestamp": T0 + 18, "timer": moved.timer})
    assert d.commands[-1].error == "States.HeartbeatTimeout"


def test_execution_timeout_ends_it_timed_out() -> None:
    m = parse({"StartAt": "W", "TimeoutSeconds": 30,
               "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}})
    r = local.run(m, {})
    assert (r.status, r.error) == ("TIMED_OUT", "States.Timeout")
    assert r.now == local.DEFAULT_START + 30


def test_map_runs_at_most_max_concurrency_tasks_at_once() -> None:
    m = machine(("M", {"Type": "Map", "MaxConcurrency": 2, "End": True,
                       "ItemProcessor": {"StartAt": "T", "States": {"T": task()}}}))
    ex = Execution(m)
    d = ex.apply(started([10, 20, 30]))
    runs = [c for c in d.commands if isinstance(c, RunTask)]
    assert [r.input for r in runs] == [10, 20]
    d = ex.apply({"type": "TaskSucceeded", "timestamp": T0, "token": runs[1].token,
                  "output": 2})
    assert [c.input for c in d.commands if isinstance(c, RunTask)] == [30]
    for token, out in ((runs[0].token, 1), (f"{EXEC}/M#1.0[2]/T#1/0", 3)):
        d = ex.apply({"type": "TaskSucceeded", "timestamp": T0, "token": token,
                      "output": out})
    assert d.commands == [Finish("SUCCEEDED", output=[1, 2, 3])]


def test_an_inline_map_is_capped_at_the_concurrency_limit() -> None:
    m = machine(("M", {"Type": "Map", "End": True,
                       "ItemProcessor": {"StartAt": "T", "States": {"T": task()}}}))
    d = Execution(m, Limits(max_map_concurrency=3)).apply(started(list(range(10))))
    assert len([c for c in d.commands if isinstance(c, RunTask)]) == 3


def test_a_failed_parallel_branch_cancels_its_siblings_timers() -> None:
    m = machine(("P", {"Type": "Parallel", "End": True, "Branches": [
        {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 100, "End": True}}},
        {"StartAt": "T", "States": {"T": task()}}]}))
    ex = Execution(m)
    d = ex.apply(started({}))
    wait, run = only(d.commands, StartTimer), only(d.commands, RunTask)
    d = ex.apply({"type": "TaskFailed", "timestamp": T0, "token": run.token,
                  "error": "E", "cause": "c"})
    assert CancelTimer(wait.timer) in d.commands
    assert d.commands[-1] == Finish("FAILED", error="E", cause="c")


def test_payloads_over_the_limit_fail_with_data_limit_exceeded() -> None:
    m = machine(("T", task()))
    r = local.run(m, {}, tasks={"app": lambda v, c: "x" * 2000},
                  limits=Limits(max_payload_bytes=1000))
    assert r.status == "FAILED" and r.error == "States.DataLimitExceeded"
    r = local.run(m, "y" * 2000, limits=Limits(max_payload_bytes=1000))
    assert r.error == "States.DataLimitExceeded"


def test_a_history_past_its_limit_fails_the_execution() -> None:
    loop = parse({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Next": "B"},
        "B": {"Type": "Choice", "Choices": [{"Variable": "$.never", "IsPresent": True,
                                             "Next": "End"}], "Default": "A"},
        "End": {"Type": "Succeed"}}})
    r = local.run(loop, {}, limits=Limits(max_history_events=100))
    assert (r.status, r.error) == ("FAILED", "States.Runtime")
    assert "maximum number of history events (100)" in r.cause
    assert len(r.history) <= 103


def test_randomness_comes_from_the_seed_so_a_replay_agrees() -> None:
    m = machine(("U", {"Type": "Pass", "End": True,
                       "Parameters": {"id.$": "States.UUID()",
                                      "n.$": "States.MathRandom(0, 1000000)"}}))
    a, b = local.run(m, {}, seed=1), local.run(m, {}, seed=1)
    assert a.output == b.output and local.run(m, {}, seed=2).output != a.output


def test_only_input_events_are_accepted() -> None:
    with pytest.raises(ValueError):
        Execution(machine(("T", task()))).apply({"type": "PassStateEntered"})


def test_local_tasks_sleep_on_the_fake_clock() -> None:
    m = machine(("T", task()))
    r = local.run(m, 5, tasks={"app": lambda v, c: Sleep(3600, v * 2)})
    assert (r.status, r.output, r.now) == ("SUCCEEDED", 10, local.DEFAULT_START + 3600)
    r = local.run(m, 5, tasks={"app": lambda v, c: (_ for _ in ()).throw(TaskError("E", "c"))})
    assert (r.error, r.cause) == ("E", "c")


@pytest.mark.parametrize(("rule", "n", "draw", "delay"), [
    ({"IntervalSeconds": 2, "BackoffRate": 3}, 1, 0.5, 2),
    ({"IntervalSeconds": 2, "BackoffRate": 3}, 3, 0.5, 18),
    ({"IntervalSeconds": 2, "BackoffRate": 3, "MaxDelaySeconds": 10}, 3, 0.5, 10),
    ({"IntervalSeconds": 4, "JitterStrategy": "FULL"}, 1, 0.25, 1),
    ({}, 2, 0.9, 2),  # the spec's defaults: 1 s, rate 2.0
])
def test_retry_delay(rule: dict, n: int, draw: float, delay: float) -> None:
    r = retry.Retrier.parse({"ErrorEquals": ["States.ALL"], **rule})
    assert r.delay(n, draw) == delay


@pytest.mark.parametrize(("equals", "error", "hit"), [
    (["States.ALL"], "Custom", True),
    (["States.ALL"], "States.Timeout", True),
    (["States.ALL"], "States.Runtime", False),
    (["States.ALL"], "States.DataLimitExceeded", False),
    (["States.TaskFailed"], "Custom", True),
    (["States.TaskFailed"], "States.Timeout", False),
    (["States.Runtime"], "States.Runtime", True),
    (["A", "B"], "B", True),
])
def test_error_matching(equals: list[str], error: str, hit: bool) -> None:
    assert retry.matches(equals, error) is hit


def test_item_batcher_hands_each_iteration_a_batch() -> None:
    m = machine(("M", {"Type": "Map", "End": True,
                       "ItemBatcher": {"MaxItemsPerBatch": 2, "BatchInput": {"k.$": "$.k"}},
                       "ItemsPath": "$.items",
                       "ItemProcessor": {"StartAt": "P", "States": {
                           "P": {"Type": "Pass", "End": True}}}}))
    r = local.run(m, {"k": "v", "items": [1, 2, 3]})
    assert r.output == [{"BatchInput": {"k": "v"}, "Items": [1, 2]},
                        {"BatchInput": {"k": "v"}, "Items": [3]}]


def test_item_reader_is_refused_rather_than_ignored() -> None:
    from skiff.workflows import validate

    found = validate({"StartAt": "M", "States": {"M": {
        "Type": "Map", "End": True, "ItemReader": {"Resource": "arn:aws:states:::s3:getObject"},
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}}}})
    assert [(f.code, f.location) for f in found] == [("UNSUPPORTED_FEATURE",
                                                      "/States/M/ItemReader")]


def test_a_task_that_changes_its_input_in_place_cannot_change_the_history() -> None:
    def rude(value: dict, call: object) -> dict:
        value["added"] = True
        return value

    r = local.run(machine(("T", task(ResultPath="$.r"))), {"a": 1}, tasks={"app": rude})
    assert r.output == {"a": 1, "r": {"a": 1, "added": True}}
    assert r.history[0]["input"] == {"a": 1}
    scheduled = next(e for e in r.history if e["type"] == "TaskScheduled")
    assert scheduled["input"] == {"a": 1}


def test_the_task_token_is_in_the_context_for_callback_tasks() -> None:
    m = machine(("T", task(Parameters={"token.$": "$$.Task.Token"})))
    run = only(Execution(m).apply(started()).commands, RunTask)
    assert run.input == {"token": run.token}
    m = parse({"QueryLanguage": "JSONata", "StartAt": "T", "States": {
        "T": task(Arguments={"token": "{% $states.context.Task.Token %}"})}})
    run = only(Execution(m).apply(started()).commands, RunTask)
    assert run.input == {"token": run.token}


def test_an_aborted_execution_cancels_its_timers_and_ignores_what_comes_later() -> None:
    ex = Execution(machine(("W", {"Type": "Wait", "Seconds": 9, "End": True})))
    timer = only(ex.apply(started()).commands, StartTimer)
    d = ex.apply({"type": "ExecutionAborted", "timestamp": T0 + 1, "error": "Stopped",
                  "cause": "by the operator"})
    assert d.commands == [CancelTimer(timer.timer),
                          Finish("ABORTED", error="Stopped", cause="by the operator")]
    assert ex.apply({"type": "TimerFired", "timestamp": T0 + 9,
                     "timer": timer.timer}).commands == []


def test_an_aborted_history_replays_to_itself() -> None:
    m = machine(("W", {"Type": "Wait", "Seconds": 9, "End": True}))
    history: list[dict] = []
    for ev in (started(), {"type": "ExecutionAborted", "timestamp": T0 + 1}):
        history += step(m, history, ev).events
    assert replay(m, history).history == history
    assert [e["type"] for e in history][-1] == "ExecutionAborted"


def test_cancelling_a_branch_cancels_the_map_iterations_inside_it() -> None:
    m = machine(("P", {"Type": "Parallel", "End": True, "Branches": [
        {"StartAt": "M", "States": {"M": {
            "Type": "Map", "MaxConcurrency": 1, "End": True,
            "ItemProcessor": {"StartAt": "I", "States": {
                "I": {**task(), "End": False, "Next": "I2"}, "I2": task()}}}}},
        {"StartAt": "F", "States": {"F": task()}}]}))
    ex = Execution(m)
    d = ex.apply(started([1, 2, 3]))
    runs = {c.state: c for c in d.commands if isinstance(c, RunTask)}
    assert set(runs) == {"I", "F"}
    fail = runs["F"]
    d = ex.apply({"type": "TaskFailed", "timestamp": T0, "token": fail.token, "error": "E"})
    assert d.commands[-1].status == "FAILED"
    ex2 = Execution(parse({"StartAt": "P", "States": {"P": {
        **m.states["P"].fields, "End": False, "Next": "Wait",
        "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Wait"}]},
        "Wait": {"Type": "Wait", "Seconds": 5, "End": True}}}))
    d = ex2.apply(started([1, 2, 3]))
    runs = {c.state: c for c in d.commands if isinstance(c, RunTask)}
    first, fail = runs["I"], runs["F"]
    ex2.apply({"type": "TaskFailed", "timestamp": T0, "token": fail.token, "error": "E"})
    # the iteration in flight answers late: neither its next state nor a further
    # iteration may start
    d = ex2.apply({"type": "TaskSucceeded", "timestamp": T0, "token": first.token,
                   "output": 1})
    assert d.commands == []
    assert ex2.pending() == [StartTimer("Wait#1/wait", T0 + 5, "wait")]


def test_after_a_restart_map_iterations_resume_individually() -> None:
    m = machine(("M", {"Type": "Map", "End": True,
                       "ItemProcessor": {"StartAt": "T", "States": {"T": task()}}}))
    history: list[dict] = []
    d = step(m, history, started([1, 2, 3]))
    history += d.events
    runs = [c for c in d.commands if isinstance(c, RunTask)]
    history += step(m, history, {"type": "TaskSucceeded", "timestamp": T0,
                                 "token": runs[1].token, "output": "two"}).events
    # restart: the two unanswered iterations run again, the answered one does not
    assert replay(m, history).pending() == [runs[0], runs[2]]
    for r, out in ((runs[0], "one"), (runs[2], "three")):
        d = step(m, history, {"type": "TaskSucceeded", "timestamp": T0, "token": r.token,
                              "output": out})
        history += d.events
    assert d.commands == [Finish("SUCCEEDED", output=["one", "two", "three"])]
