"""Definition validation: findings shaped like AWS's ValidateStateMachineDefinition
(code, message, a location naming the state and field), raised as one SkiffError."""

from __future__ import annotations

import pytest

from skiff.errors import SkiffError
from skiff.workflows import InvalidDefinition, parse, validate
from skiff.workflows.definition import task_resources


def _one(definition: dict) -> dict:
    found = validate(definition)
    assert found, "expected the definition to be refused"
    return found[0].to_dict()


def test_a_valid_definition_freezes_into_states() -> None:
    m = parse({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"},
                                          "B": {"Type": "Succeed"}}})
    assert m.start_at == "A" and list(m.states) == ["A", "B"]
    assert m.states["A"].next == "B" and m.states["B"].end
    with pytest.raises(TypeError):
        m.states["C"] = m.states["A"]  # type: ignore[index]


def test_invalid_definition_is_a_skiff_error_with_diagnostics() -> None:
    with pytest.raises(InvalidDefinition) as info:
        parse({"StartAt": "A"})
    e = info.value
    assert isinstance(e, SkiffError) and e.status == 400 and e.code == "invalid_definition"
    assert e.to_dict()["error"]["diagnostics"] == [{
        "severity": "ERROR", "code": "SCHEMA_VALIDATION_FAILED",
        "message": "These fields are required: [States]", "location": "/"}]


def test_a_missing_transition_target_names_the_state_and_field() -> None:
    d = _one({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}})
    assert d["code"] == "MISSING_TRANSITION_TARGET"
    assert d["location"] == "/States/A/Next" and "Nowhere" in d["message"]


def test_targets_inside_choice_catch_and_nested_machines_are_checked() -> None:
    found = validate({"StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsNull": True,
                                             "Next": "Gone"}], "Default": "P"},
        "P": {"Type": "Parallel", "End": True, "Branches": [
            {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "r", "End": True,
                                              "Catch": [{"ErrorEquals": ["States.ALL"],
                                                         "Next": "Lost"}]}}}]}}})
    assert {f.location for f in found} == {"/States/C/Choices/0/Next",
                                          "/States/P/Branches/0/States/T/Catch/0/Next"}


@pytest.mark.parametrize(("state", "location"), [
    ({"Type": "Pass", "End": True, "Bogus": 1}, "/States/S/Bogus"),
    ({"Type": "Wait", "End": True, "Timestamp": "2016-03-14 01:59:00Z"}, "/States/S/Timestamp"),
    ({"Type": "Wait", "End": True, "Seconds": -1}, "/States/S/Seconds"),
    ({"Type": "Task", "Resource": "r", "End": True, "TimeoutSeconds": 5,
      "HeartbeatSeconds": 5}, "/States/S/HeartbeatSeconds"),
    ({"Type": "Task", "Resource": "r", "End": True,
      "Retry": [{"ErrorEquals": ["States.ALL"], "BackoffRate": 0.5}]},
     "/States/S/Retry/0/BackoffRate"),
    ({"Type": "Task", "Resource": "r", "End": True,
      "Retry": [{"ErrorEquals": ["States.ALL", "X"]}]}, "/States/S/Retry/0/ErrorEquals"),
    ({"Type": "Pass", "End": True, "Parameters": {"x.$": "States.Nope(1)"}},
     "/States/S/Parameters"),
    ({"Type": "Pass", "End": True, "Parameters": {"x.$": "States.Format('\\\"')"}},
     "/States/S/Parameters"),
    ({"Type": "Pass", "End": True, "Arguments": {}}, "/States/S/Arguments"),
    ({"Type": "Pass", "QueryLanguage": "JSONata", "End": True, "Output": "{% $x + %}"},
     "/States/S/Output"),
    ({"Type": "Pass", "Next": "S", "End": True}, "/States/S"),
    ({"Type": "Nope"}, "/States/S/Type"),
    ({"Type": "Choice", "Default": "S", "Choices": [{"Variable": "$.x", "NumericEquals": "1",
                                                     "Next": "S"}]},
     "/States/S/Choices/0/NumericEquals"),
    ({"Type": "Choice", "Default": "S", "Choices": [{"Variable": "$.x",
                                                     "StringEqualsPath": "nope", "Next": "S"}]},
     "/States/S/Choices/0/StringEqualsPath"),
    ({"Type": "Wait", "End": True, "TimestampPath": True}, "/States/S/TimestampPath"),
    ({"Type": "Pass", "End": True, "Assign": [1]}, "/States/S/Assign"),
    ({"Type": "Task", "Resource": "r", "End": True, "Retry": {"a": 1}}, "/States/S/Retry"),
])
def test_bad_fields_are_located(state: dict, location: str) -> None:
    d = _one({"StartAt": "S", "States": {"S": state}})
    assert d["location"] == location, d
    assert d["code"] == "SCHEMA_VALIDATION_FAILED"


def test_json_text_is_accepted_and_bad_json_refused() -> None:
    assert parse('{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}').start_at == "A"
    assert validate("{not json")[0].code == "INVALID_JSON_DESCRIPTION"


def test_task_resources_lists_every_task_including_nested_ones() -> None:
    m = parse({"StartAt": "M", "States": {
        "M": {"Type": "Map", "Next": "T", "ItemProcessor": {"StartAt": "I", "States": {
            "I": {"Type": "Task", "Resource": "skiff:app/inner", "End": True}}}},
        "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": True}}})
    assert task_resources(m) == {"skiff:app/inner", "arn:aws:states:::lambda:invoke"}


def test_state_names_are_unique_across_nested_machines() -> None:
    found = validate({"StartAt": "A", "States": {"A": {
        "Type": "Parallel", "End": True, "Branches": [
            {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}]}}})
    assert [(f.code, f.location) for f in found] == [
        ("DUPLICATE_STATE_NAME", "/States/A/Branches/0/States/A")]


def test_a_machine_without_a_terminal_state_is_refused() -> None:
    found = validate({"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "Next": "A"}}})
    assert [f.code for f in found] == ["MISSING_END_STATE"]


def test_a_state_name_is_at_most_80_characters() -> None:
    name = "x" * 81
    found = validate({"StartAt": name, "States": {name: {"Type": "Succeed"}}})
    assert [f.code for f in found] == ["INVALID_STATE_NAME"]


def test_states_all_must_be_in_the_last_catcher() -> None:
    found = validate({"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "r", "End": True, "Catch": [
            {"ErrorEquals": ["States.ALL"], "Next": "F"},
            {"ErrorEquals": ["Custom"], "Next": "F"}]},
        "F": {"Type": "Fail"}}})
    assert [f.location for f in found] == ["/States/T/Catch/0/ErrorEquals"]
