"""What goes over the wire: chat messages out, the structured answer (``LlmView``) back, the
JSON schema sent for it, and parsing.

The schema sent to providers is written out by hand rather than generated, so its bytes (part
of every cache key) do not change with the pydantic version. It keeps to the subset every
provider enforces (all fields required, no extra fields, no numeric or length limits); the
limits are stated in the descriptions and checked here, on our side.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ffe.domain.errors import FfeError

RATIONALE_MAX = 1000

Message = Mapping[str, str]
"""A chat message: ``{"role": "system" | "user" | "assistant", "content": text}``."""


class LlmError(FfeError):
    """An LLM could not give a usable view (server, request, answer or cache).

    ``reason`` names the kind of failure for counting (``timeout``, ``unreachable``,
    ``http_error``, ``breaker_open``, ``bad_answer``, ``cache``); ``brief`` says what happened
    in a few words, for the decision the failure affected (no URL, no key, no answer text)."""

    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None, brief: str | None = None):
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.brief = brief or self.reason.replace("_", " ")


class LlmAnswerError(LlmError):
    """The model answered, but not with JSON that fits the ``LlmView`` schema."""

    reason = "bad_answer"


class LlmView(BaseModel):
    """A model's view of one asset over the horizon it was asked about."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    direction: Literal["up", "down", "flat"]
    expected_return_pct: float = Field(gt=-100)
    uncertainty_pct: float = Field(gt=0)
    confidence: float = Field(ge=0, le=1)
    rationale: str = Field(max_length=RATIONALE_MAX)


VIEW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "direction": {
            "type": "string",
            "enum": ["up", "down", "flat"],
            "description": "where the price goes over the horizon",
        },
        "expected_return_pct": {
            "type": "number",
            "description": "expected change of the price over the horizon, in percent "
            "(2.5 means +2.5%); greater than -100",
        },
        "uncertainty_pct": {
            "type": "number",
            "description": "one standard deviation of that change, in percent; greater than 0",
        },
        "confidence": {
            "type": "number",
            "description": "confidence in the direction, from 0 to 1",
        },
        "rationale": {
            "type": "string",
            "description": f"the reasoning in a few sentences, at most {RATIONALE_MAX} characters",
        },
    },
    "required": ["direction", "expected_return_pct", "uncertainty_pct", "confidence", "rationale"],
    "additionalProperties": False,
}
"""The JSON schema of ``LlmView`` as providers receive it."""

SCHEMA_NAME = "llm_view"


def parse_view(text: str) -> LlmView:
    """The view in a model's answer; LlmAnswerError when it is not JSON or breaks the schema."""
    try:
        data = json.loads(_strip_fence(text))
    except json.JSONDecodeError as exc:
        raise LlmAnswerError(
            f"the model's answer is not valid JSON ({exc.msg} at character {exc.pos}): "
            f"{_excerpt(text)}",
            brief="the answer is not JSON",
        ) from None
    try:
        return LlmView.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}" for e in exc.errors()
        )
        fields = sorted({str(e["loc"][0]) if e["loc"] else "answer" for e in exc.errors()})
        raise LlmAnswerError(
            f"the model's answer breaks the schema: {problems}",
            brief=f"the answer breaks the schema ({', '.join(fields)})",
        ) from None


def _strip_fence(text: str) -> str:
    """JSON inside a Markdown code fence, as servers that ignore the schema tend to send it."""
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```"):
        body = stripped[3:-3]
        return body.removeprefix("json").strip()
    return stripped


def _excerpt(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[:limit] + "...")
