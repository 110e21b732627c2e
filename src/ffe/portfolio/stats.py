"""Performance statistics of one backtest or agent run.

Definitions, with ``r`` the per-bar simple returns of equity (``e[t] / e[t-1] - 1``) and
``ppy`` the number of bars in a year (see ``periods_per_year``):

- ``total_return``: ``final / initial - 1``, a fraction.
- ``cagr``: ``(final / initial) ** (1 / years) - 1``, with ``years`` the calendar duration from
  the first to the last bar in days divided by 365.25.
- ``annual_volatility``: ``std(r, ddof=1) * sqrt(ppy)``.
- ``sharpe``: ``mean(r) / std(r, ddof=1) * sqrt(ppy)``, with a risk-free rate of zero.
- ``sortino``: ``mean(r) / sqrt(mean(min(r, 0) ** 2)) * sqrt(ppy)``.
- ``max_drawdown``: the lowest ``e / running_peak(e) - 1``, a fraction ``<= 0``.
- ``max_drawdown_duration``: the longest time from a peak until equity is back at that peak,
  or until the last bar if it never is (an ongoing drawdown counts).
- ``calmar``: ``cagr / |max_drawdown|``.
- ``win_rate``: the fraction of trades with a positive P&L (net of commission).
- ``profit_factor``: gross profit over gross loss; ``inf`` with profits and no losing trade.
- ``expectancy``: the mean trade P&L, in account currency.
- ``avg_trade_return``, ``best_trade``, ``worst_trade``: of ``Trade.return_pct``.
- ``exposure``: the fraction of bars with any position.
- ``buy_and_hold_return``: last over first finite benchmark close, minus one.

A value that is undefined for the data (no trades, zero volatility, a single bar) is
``math.nan``; nothing here raises for such data. ``compute_stats`` runs inside every backtest,
so it is pure numpy with no per-bar Python loop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ffe.domain.market import utc_datetime
from ffe.domain.timeframe import Timeframe

FloatArray = npt.NDArray[np.float64]
JsonValue = float | int | str | None

_DAY_SECONDS = 86_400
_WEEK_SECONDS = 7 * _DAY_SECONDS
_DAY_NS = _DAY_SECONDS * 1_000_000_000
_DAYS_PER_YEAR = 365.25
_MAX_EXPONENT = 700.0  # math.exp overflows a float just above 709
_TRADE_FIELDS = tuple(attrgetter(name) for name in ("pnl", "entry_price", "exit_price", "quantity"))


class TradeRecord(Protocol):
    """What the statistics read of a closed trade: ``ffe.domain.Trade`` or a ledger record."""

    @property
    def entry_price(self) -> float: ...
    @property
    def exit_price(self) -> float: ...
    @property
    def quantity(self) -> float: ...
    @property
    def pnl(self) -> float: ...


def periods_per_year(times: npt.NDArray[np.datetime64], timeframe: Timeframe) -> float:
    """Bars in a year for annualising: 252 or 365 trading days, times bars per day observed.

    Data with any Saturday or Sunday bar trades every day (crypto): 365 days, else 252.
    Intraday bars count the median number of bars per UTC calendar day in ``times``.
    """
    seconds = timeframe.seconds
    if seconds >= _WEEK_SECONDS:
        return 52.0 * _WEEK_SECONDS / seconds
    nanoseconds = np.asarray(times, dtype="datetime64[ns]").view(np.int64)
    # 1970-01-01 was a Thursday, so Saturday and Sunday are the last two days of each week
    # counted from three days before it; one remainder instead of a cast to days and two.
    weekday_ns = (nanoseconds + 3 * _DAY_NS) % (7 * _DAY_NS)
    trading_days = 365.0 if bool(np.any(weekday_ns >= 5 * _DAY_NS)) else 252.0
    if seconds >= _DAY_SECONDS or len(nanoseconds) == 0:
        return trading_days * _DAY_SECONDS / seconds
    _, bars_per_day = np.unique(nanoseconds // _DAY_NS, return_counts=True)
    return trading_days * float(np.median(bars_per_day))


@dataclass(frozen=True, slots=True)
class Stats:
    """Summary statistics of one run; see the module docstring for the definitions."""

    start: datetime
    end: datetime
    duration: timedelta
    initial_equity: float
    final_equity: float
    peak_equity: float
    total_return: float
    cagr: float
    annual_volatility: float
    sharpe: float
    sortino: float
    calmar: float
    max_drawdown: float
    max_drawdown_duration: timedelta
    win_rate: float
    profit_factor: float
    expectancy: float
    avg_trade_return: float
    exposure: float
    n_trades: int
    best_trade: float
    worst_trade: float
    buy_and_hold_return: float
    commissions: float

    def as_dict(self) -> dict[str, JsonValue]:
        """JSON-safe primitives: ISO times, durations in days, nan as None, inf as "inf"."""
        return {field.name: _json_value(getattr(self, field.name)) for field in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, JsonValue]) -> Stats:
        """The inverse of ``as_dict`` (for stats read back from the journal)."""
        values: dict[str, Any] = {}
        for field in fields(cls):
            value = data.get(field.name)
            if field.name in ("start", "end"):
                values[field.name] = datetime.fromisoformat(str(value))
            elif field.name in ("duration", "max_drawdown_duration"):
                values[field.name] = timedelta(days=_float_of(value or 0.0))
            elif field.name == "n_trades":
                values[field.name] = int(_float_of(value or 0))
            else:
                values[field.name] = _float_of(value)
        return cls(**values)


def _float_of(value: JsonValue) -> float:
    if value is None:
        return math.nan
    return float(value)  # numbers, and "inf" / "-inf" as strings


def _json_value(value: object) -> JsonValue:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds() / _DAY_SECONDS
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    return str(value)


def compute_stats(
    *,
    times: npt.NDArray[np.datetime64],
    equity: FloatArray,
    trades: Sequence[TradeRecord],
    exposure: npt.NDArray[np.bool_] | FloatArray,
    benchmark: FloatArray | None,
    periods_per_year: float,
    commissions: float = 0.0,
) -> Stats:
    """Statistics of an equity curve (one value per bar at ``times``) and its closed trades."""
    equity = np.asarray(equity, dtype=np.float64)
    _check_inputs(times, equity, exposure, benchmark, periods_per_year)
    nanoseconds = np.asarray(times, dtype="datetime64[ns]").view(np.int64)
    start, end = utc_datetime(nanoseconds.item(0)), utc_datetime(nanoseconds.item(-1))
    initial, final = float(equity[0]), float(equity[-1])
    cagr = _cagr(initial, final, end - start)
    max_drawdown, max_drawdown_duration = _drawdown_extremes(nanoseconds, equity)
    volatility, sharpe, sortino = _return_ratios(equity, periods_per_year)
    win_rate, profit_factor, expectancy, avg_return, best, worst = _trade_stats(trades)
    return Stats(
        start=start,
        end=end,
        duration=end - start,
        initial_equity=initial,
        final_equity=final,
        peak_equity=float(equity.max()),
        total_return=_ratio(final, initial) - 1.0,
        cagr=cagr,
        annual_volatility=volatility,
        sharpe=sharpe,
        sortino=sortino,
        calmar=_ratio(cagr, -max_drawdown),
        max_drawdown=max_drawdown,
        max_drawdown_duration=max_drawdown_duration,
        win_rate=win_rate,
        profit_factor=profit_factor,
        expectancy=expectancy,
        avg_trade_return=avg_return,
        exposure=int(np.count_nonzero(np.greater(exposure, 0))) / len(equity),
        n_trades=len(trades),
        best_trade=best,
        worst_trade=worst,
        buy_and_hold_return=_buy_and_hold(benchmark),
        commissions=float(commissions),
    )


def drawdown_series(equity: FloatArray) -> FloatArray:
    """Per bar, the fraction by which equity is below its running peak (``<= 0``)."""
    equity = np.asarray(equity, dtype=np.float64)
    return _drawdown(equity, np.maximum.accumulate(equity))


def _drawdown(equity: FloatArray, peak: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        drawdown = equity / peak - 1.0
    # A zero peak (an account that starts empty) has no drawdown to speak of.
    drawdown[peak == 0.0] = 0.0
    return np.minimum(drawdown, 0.0, out=drawdown)


def _check_inputs(
    times: npt.NDArray[np.datetime64],
    equity: FloatArray,
    exposure: npt.NDArray[np.bool_] | FloatArray,
    benchmark: FloatArray | None,
    ppy: float,
) -> None:
    # Mismatched arrays are a bug in the caller, not an undefined statistic.
    n = len(equity)
    if n == 0:
        raise ValueError("compute_stats needs at least one bar of equity")
    for name, array in (("times", times), ("exposure", exposure), ("benchmark", benchmark)):
        if array is not None and len(array) != n:
            raise ValueError(f"{name} has {len(array)} values, equity has {n}")
    if not ppy > 0:
        raise ValueError(f"periods_per_year must be positive, got {ppy}")


def _ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, nan where that is undefined (zero or nan denominator)."""
    if denominator == 0.0 or math.isnan(denominator) or math.isnan(numerator):
        return math.nan
    return numerator / denominator


def _cagr(initial: float, final: float, duration: timedelta) -> float:
    years = duration.total_seconds() / (_DAY_SECONDS * _DAYS_PER_YEAR)
    if years <= 0.0 or not initial > 0.0 or not final >= 0.0:
        return math.nan
    if final == 0.0:
        return -1.0
    exponent = math.log(final / initial) / years
    # Huge gains over a few days overflow a float: report them as infinite, not an error.
    return math.expm1(exponent) if exponent < _MAX_EXPONENT else math.inf


def _return_ratios(equity: FloatArray, ppy: float) -> tuple[float, float, float]:
    """Annual volatility, Sharpe and Sortino of the per-bar simple returns."""
    n = len(equity) - 1
    if n < 2:
        return math.nan, math.nan, math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = equity[1:] / equity[:-1] - 1.0
    # Sums and a dot product instead of np.mean / np.std: same result, a third of the time.
    mean = float(returns.sum()) / n
    deviations = returns - mean
    std = math.sqrt(float(deviations @ deviations) / (n - 1))
    downside = np.minimum(returns, 0.0)
    downside_deviation = math.sqrt(float(downside @ downside) / n)
    root_ppy = math.sqrt(ppy)
    return (
        std * root_ppy,
        _ratio(mean, std) * root_ppy,
        _ratio(mean, downside_deviation) * root_ppy,
    )


def _drawdown_extremes(
    nanoseconds: npt.NDArray[np.int64], equity: FloatArray
) -> tuple[float, timedelta]:
    """Deepest drawdown, and the longest time from a peak to its recovery (or to the end)."""
    peak = np.maximum.accumulate(equity)
    underwater = equity < peak
    if not underwater.any():
        return 0.0, timedelta(0)
    if peak[0] > 0.0:  # then no peak is zero, and the deepest drawdown is at the lowest ratio
        depth = float((equity / peak).min()) - 1.0
    else:
        depth = float(_drawdown(equity, peak).min())
    # The first bar is never underwater, so the flips alternate: into a spell, out of it.
    flips = np.flatnonzero(underwater[1:] != underwater[:-1]) + 1
    if underwater[-1]:
        flips = np.append(flips, len(equity) - 1)  # an ongoing spell ends at the last bar
    first_under, recovered = flips[0::2], flips[1::2]
    # A spell lasts from the peak (the bar before it) to the bar that recovers.
    longest = int((nanoseconds[recovered] - nanoseconds[first_under - 1]).max())
    return depth, timedelta(microseconds=longest // 1000)


def _trade_stats(
    trades: Sequence[TradeRecord],
) -> tuple[float, float, float, float, float, float]:
    """Win rate, profit factor, expectancy, mean, best and worst trade return."""
    n = len(trades)
    if n == 0:
        return (math.nan,) * 6
    pnl, entry, exit_, quantity = (
        np.fromiter(map(get, trades), np.float64, n) for get in _TRADE_FIELDS
    )
    # Trade.return_pct, vectorised: one array pass instead of a property call per trade.
    returns = np.where(quantity > 0, 1.0, -1.0) * (exit_ / entry - 1.0)
    wins = pnl > 0
    gross_profit = float(pnl[wins].sum())
    gross_loss = -float(pnl[pnl < 0].sum())
    if gross_loss > 0:
        profit_factor = gross_profit / gross_loss
    else:
        profit_factor = math.inf if gross_profit > 0 else math.nan
    return (
        int(np.count_nonzero(wins)) / n,
        profit_factor,
        float(pnl.sum()) / n,
        float(returns.sum()) / n,
        float(returns.max()),
        float(returns.min()),
    )


def _buy_and_hold(benchmark: FloatArray | None) -> float:
    if benchmark is None:
        return math.nan
    prices = np.asarray(benchmark, dtype=np.float64)
    valid = np.flatnonzero(np.isfinite(prices))
    if len(valid) == 0:
        return math.nan
    return _ratio(float(prices[valid[-1]]), float(prices[valid[0]])) - 1.0
