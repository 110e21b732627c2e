"""What a request body may hold, as types: a symbol, a calendar date, a parameter name, a
strategy or a metric by name. The constraints live in the types, so the spec states them and
a client (or a fuzzer) reading it knows what is accepted."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field

SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$"
_DATE = r"^\d{4}-\d{2}-\d{2}$"
_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
Scalar = int | float | str | bool
Symbol = Annotated[str, Field(pattern=SYMBOL_PATTERN, description="letters, digits and ._:/-")]
Day = Annotated[str, Field(pattern=_DATE, json_schema_extra={"format": "date"})]
ParamName = Annotated[str, Field(pattern=_NAME)]


def _strategy_names() -> list[str]:
    from ffe.decide.strategy import available

    return available()


def _strategy_enum(schema: dict[str, Any]) -> None:
    """The strategies in the spec, read when the spec is built (not when this module is
    imported): the built-ins, installed entry points and the files the settings offer."""
    schema["enum"] = _strategy_names()


def _metric_names() -> list[str]:
    from ffe.backtest.objective import DIRECTIONS

    return list(DIRECTIONS)


def model_pattern(schema: dict[str, Any]) -> None:
    """``models`` in the spec: empty (every model) or known names separated by commas. Read
    when the spec is built, so the forecasting libraries load only then."""
    from ffe.forecast.models import available_models

    name = "(" + "|".join(available_models()) + ")"
    schema["pattern"] = rf"^$|^ *{name} *(, *{name} *)*$"


# A dict whose keys must match a pattern: pydantic states the pattern (patternProperties);
# this says no other key is accepted, as the validator does.
CLOSED: dict[str, Any] = {"additionalProperties": False}


def _not_a_path(name: str) -> str:
    from ffe.decide.plugins import looks_like_path

    if looks_like_path(name):
        raise ValueError(
            f"{name!r} looks like a file; a request names a strategy, never a file: use one of "
            f"{', '.join(_strategy_names())} (the server's operator offers strategies from "
            "files by listing them in the strategies.files setting)"
        )
    return name


# Named in the spec as enums; the routes refuse other names with a 422 that lists these.
StrategyName = Annotated[
    str,
    Field(min_length=1, max_length=64, json_schema_extra=_strategy_enum),
    AfterValidator(_not_a_path),
]
Metric = Annotated[
    str, Field(min_length=1, max_length=32, json_schema_extra={"enum": _metric_names()})
]
