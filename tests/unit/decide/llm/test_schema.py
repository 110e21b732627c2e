"""The LlmView schema: what is sent to providers and how answers are checked."""

from __future__ import annotations

import json

import pytest

from ffe.decide.llm.schema import VIEW_SCHEMA, LlmAnswerError, LlmError, LlmView, parse_view

VALID = {
    "direction": "up",
    "expected_return_pct": 1.25,
    "uncertainty_pct": 2.0,
    "confidence": 0.6,
    "rationale": "trend",
}


def test_view_schema_when_compared_with_model_then_same_fields_all_required():
    assert set(VIEW_SCHEMA["properties"]) == set(LlmView.model_fields)
    assert set(VIEW_SCHEMA["required"]) == set(LlmView.model_fields)
    assert VIEW_SCHEMA["additionalProperties"] is False
    assert VIEW_SCHEMA["properties"]["direction"]["enum"] == ["up", "down", "flat"]


def test_parse_view_when_valid_json_then_view():
    view = parse_view(json.dumps(VALID))

    assert view == LlmView(**VALID)


def test_parse_view_when_json_in_code_fence_then_view():
    view = parse_view(f"```json\n{json.dumps(VALID)}\n```")

    assert view.expected_return_pct == 1.25


def test_parse_view_when_not_json_then_answer_error_quotes_it():
    with pytest.raises(LlmAnswerError, match=r"not valid JSON.*the market goes up") as caught:
        parse_view("the market goes up")

    assert isinstance(caught.value, LlmError)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"direction": "sideways"}, "direction"),
        ({"uncertainty_pct": 0.0}, "uncertainty_pct"),
        ({"confidence": 1.5}, "confidence"),
        ({"expected_return_pct": -100.0}, "expected_return_pct"),
        ({"rationale": "x" * 1001}, "rationale"),
        ({"extra": 1}, "extra"),
    ],
)
def test_parse_view_when_schema_violated_then_answer_error_names_field(change, field):
    with pytest.raises(LlmAnswerError, match=f"breaks the schema: {field}"):
        parse_view(json.dumps({**VALID, **change}))


def test_parse_view_when_field_missing_then_answer_error_names_it():
    incomplete = {k: v for k, v in VALID.items() if k != "confidence"}

    with pytest.raises(LlmAnswerError, match="confidence: Field required"):
        parse_view(json.dumps(incomplete))


def test_parse_view_when_nan_then_answer_error():
    with pytest.raises(LlmAnswerError, match="expected_return_pct"):
        parse_view(json.dumps(VALID).replace("1.25", "NaN"))


def test_parse_view_when_top_level_not_object_then_answer_error():
    with pytest.raises(LlmAnswerError, match="breaks the schema"):
        parse_view("[1, 2]")
