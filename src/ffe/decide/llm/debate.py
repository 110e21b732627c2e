"""Bull, bear and judge: three calls instead of one, for a view argued from both sides.

The bull makes the strongest honest case for a rise, the bear for a fall, each from the same
point-in-time facts; the judge reads the facts and both arguments and gives the final view.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ffe.decide.llm.prompt import answer_format, describe_series
from ffe.decide.llm.schema import LlmView, Message
from ffe.forecast.base import Series

Ask = Callable[[Sequence[Message]], LlmView]
"""Sends messages to a model and returns its view (through the cache)."""

_ADVOCATE = (
    "You are the {side} in a debate about one asset's price over the next {horizon} bars. "
    "Make the strongest case the price history supports for the price going {direction}, "
    "but keep your numbers honest: they are scored against what happens. {answer}"
)
_JUDGE = (
    "You are the judge of a debate about one asset's price over the next {horizon} bars. "
    "You get the price history, the bull's argument and the bear's argument. Weigh both "
    "against the data, not against each other's confidence, and give your own view. {answer}"
)


@dataclass(frozen=True, slots=True)
class Debate:
    """The three views of a debate; ``judge`` is the one that counts."""

    bull: LlmView
    bear: LlmView
    judge: LlmView


def run_debate(ask: Ask, series: Series, horizon: int, *, anonymize: bool = True) -> Debate:
    """Ask the bull, then the bear, then the judge with both arguments."""
    facts = describe_series(series, horizon, anonymize=anonymize)
    bull = ask(advocate_prompt("bull", facts, horizon))
    bear = ask(advocate_prompt("bear", facts, horizon))
    return Debate(bull, bear, ask(judge_prompt(facts, horizon, bull, bear)))


def advocate_prompt(side: str, facts: str, horizon: int) -> list[Message]:
    """The messages for the ``bull`` (argues up) or the ``bear`` (argues down)."""
    if side not in ("bull", "bear"):
        raise ValueError(f"side must be bull or bear, got {side!r}")
    direction = "up" if side == "bull" else "down"
    system = _ADVOCATE.format(
        side=side, horizon=horizon, direction=direction, answer=answer_format(horizon)
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": facts}]


def judge_prompt(facts: str, horizon: int, bull: LlmView, bear: LlmView) -> list[Message]:
    """The messages for the judge: the facts and both sides' views."""
    system = _JUDGE.format(horizon=horizon, answer=answer_format(horizon))
    user = (
        f"{facts}\n\nThe bull's view:\n{bull.model_dump_json()}\n\n"
        f"The bear's view:\n{bear.model_dump_json()}"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]
