"""Point-in-time prompts: what an LLM is told about a series at its origin t.

A prompt describes only the series it is given, which ends at the origin: recent closes,
returns over several lookbacks and realized volatility, all computed from bars up to t.

With ``anonymize=True`` the model cannot recall what happened next: the symbol becomes
``ASSET``, bar times become offsets from the origin (``t-0``, ``t-5``) and prices are rebased
so the close at t is 100. Everything here is a pure function of its arguments.
"""

from __future__ import annotations

import numpy as np

from ffe.decide.llm.schema import Message
from ffe.domain.market import FloatArray, TimeArray
from ffe.forecast.base import Series

RECENT_BARS = 10
LOOKBACKS: tuple[int, ...] = (1, 5, 21, 63, 252)
VOLATILITY_WINDOWS: tuple[int, ...] = (21, 63)
ANONYMOUS = "ASSET"
_REBASED_CLOSE = 100.0

_SYSTEM = (
    "You are a careful quantitative analyst. You forecast the price of one asset over a fixed "
    "number of bars, using only the price history you are given."
)


def answer_format(horizon: int) -> str:
    """How to answer: the JSON fields and what each means for this horizon."""
    return (
        "Answer with one JSON object and nothing else, with these fields: "
        '"direction" ("up", "down" or "flat"); '
        f'"expected_return_pct" (the expected change of the price from the last close to the '
        f"close {horizon} bars later, in percent: 1.5 means +1.5%); "
        '"uncertainty_pct" (one standard deviation of that change, in percent, above 0); '
        '"confidence" (how sure you are of the direction, 0 to 1); '
        '"rationale" (your reasoning in a few sentences). '
        "Short-horizon price changes are hard to predict: when the history shows no clear edge, "
        "give an expected change near 0 and an uncertainty in line with the realized volatility."
    )


def single_prompt(series: Series, horizon: int, *, anonymize: bool = True) -> list[Message]:
    """The messages that ask one model for its view of ``series`` over ``horizon`` bars."""
    return [
        {"role": "system", "content": f"{_SYSTEM} {answer_format(horizon)}"},
        {"role": "user", "content": describe_series(series, horizon, anonymize=anonymize)},
    ]


def describe_series(series: Series, horizon: int, *, anonymize: bool = True) -> str:
    """The facts about ``series`` up to its last bar, and the question, as plain text."""
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1 bar, got {horizon}")
    mask = np.isfinite(series.values)
    logs, times = series.values[mask], series.times[mask]
    if len(logs) < 2:
        raise ValueError(f"{series.symbol}: need at least 2 prices to describe, got {len(logs)}")
    prices = np.exp(logs - logs[-1]) * _REBASED_CLOSE if anonymize else np.exp(logs)
    labels = _labels(times, anonymize)
    name = ANONYMOUS if anonymize else series.symbol
    rebased = " (prices rebased so the last close is 100)" if anonymize else ""
    sections = [
        f"Asset: {name}; bars of {_interval(times)}{rebased}.",
        f"The last bar is {labels[-1]}. Forecast the change of the close over the next "
        f"{horizon} bar{'s' if horizon > 1 else ''}.",
        _recent_closes(prices, labels),
        _trailing_returns(logs),
        _volatility(logs, horizon),
    ]
    return "\n\n".join(sections)


def _labels(times: TimeArray, anonymize: bool) -> list[str]:
    if anonymize:
        return [f"t-{len(times) - 1 - i}" for i in range(len(times))]
    intraday = bool(np.any(times.astype("datetime64[D]") != times))
    text = np.datetime_as_string(times, unit="m" if intraday else "D")
    return [str(label) for label in text]


def _interval(times: TimeArray) -> str:
    """The typical spacing of bars, e.g. ``1 day`` (weekends do not change the median)."""
    seconds = float(np.median(np.diff(times)) / np.timedelta64(1, "s"))
    for unit, size in (("week", 604_800), ("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size:
            count = round(seconds / size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} seconds"


def _recent_closes(prices: FloatArray, labels: list[str]) -> str:
    shown = range(max(0, len(prices) - RECENT_BARS), len(prices))
    lines = [f"  {labels[i]}: {_price(float(prices[i]))}" for i in shown]
    return "Recent closes, oldest first:\n" + "\n".join(lines)


def _trailing_returns(logs: FloatArray) -> str:
    lines = [
        f"  over {k} bar{'s' if k > 1 else ''}: {_pct(float(np.expm1(logs[-1] - logs[-1 - k])))}"
        for k in LOOKBACKS
        if len(logs) > k
    ]
    return "Change of the close up to the last bar:\n" + "\n".join(lines)


def _volatility(logs: FloatArray, horizon: int) -> str:
    returns = np.diff(logs)
    lines = []
    for window in VOLATILITY_WINDOWS:
        if len(returns) < window:
            continue
        per_bar = float(np.std(returns[-window:], ddof=1))
        lines.append(
            f"  last {window} bars: {per_bar * 100:.2f}% per bar, "
            f"{per_bar * np.sqrt(horizon) * 100:.2f}% over {horizon} bars"
        )
    if not lines:
        per_bar = float(np.std(returns, ddof=1)) if len(returns) > 1 else 0.0
        lines.append(f"  last {len(returns)} bars: {per_bar * 100:.2f}% per bar")
    return "Realized volatility (standard deviation of one-bar changes):\n" + "\n".join(lines)


def _price(value: float) -> str:
    return f"{value:.2f}" if value >= 1 else f"{value:.6g}"


def _pct(fraction: float) -> str:
    return f"{fraction * 100:+.2f}%"
