"""One symbol's analysis, as the dashboard shows it: the latest forecast with its prediction
bands, a few indicators and the decision the ``ensemble`` strategy would make now.

The decision comes from the live decision step (``EnsembleDecider``), not a copy of it: the
decider is run over the last ``feedback`` bars, so its Hedge weights learn from outcomes
known by the last bar, then every model is refitted on the window ending at the last bar
and the decider decides there. The forecast bands are the same weighted mixture of the
models' forecasts, at every step instead of only the last.

Nothing after the last bar of the MarketData given is read: analysing ``market.select(0, t)``
gives what the analysis would have shown at bar ``t - 1``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from ffe.decide.ensemble import EnsembleDecider, EnsembleStrategy
from ffe.decide.indicators import rsi, sma, trailing_return
from ffe.decide.policy import DecisionPolicy
from ffe.domain.errors import DataError, StrategyError
from ffe.domain.market import FloatArray, MarketData, TimeArray, utc_datetime
from ffe.domain.orders import Decision
from ffe.domain.timeframe import Timeframe
from ffe.forecast.base import LEVELS, Forecast, ForecastError, Series
from ffe.forecast.ensemble import combine
from ffe.forecast.models import make_forecaster

log = logging.getLogger(__name__)

DEFAULT_MODELS: tuple[str, ...] = ("naive", "drift", "auto_ets", "garch")
"""The cheap models: fitting all four on 500 daily bars takes about a tenth of a second."""

DEFAULT_FEEDBACK = 126
"""Bars replayed before the last one so the Hedge weights have outcomes to learn from: half a
year of daily bars, 25 outcomes at the strategy's pace of a decision every 5 bars."""


def analyse(
    market: MarketData,
    symbol: str,
    *,
    horizon: int = 5,
    models: Sequence[str] = DEFAULT_MODELS,
    window: int = 500,
    policy: DecisionPolicy | None = None,
    feedback: int = DEFAULT_FEEDBACK,
) -> dict[str, Any]:
    """The forecast, bands, indicators and decision for ``symbol`` at the last bar of
    ``market``, as a JSON-ready dict (floats finite or None, times ISO-8601 UTC).

    ``models`` are fitted on the last ``window`` bars and forecast ``horizon`` bars ahead;
    ``feedback`` bars before the last are replayed to learn their weights (0: equal weights,
    fewer when the history is short). A model that fails is left out and its message listed
    under ``errors``. Raises DataError when the symbol, its bars or its last close cannot be
    analysed, and StrategyError for bad parameters or when no model can forecast.
    """
    if feedback < 0:
        raise StrategyError(f"analysis: feedback must be at least 0 bars, got {feedback}")
    if not models or len(set(models)) != len(models):
        raise StrategyError(f"analysis: name each model once, got {list(models)}")
    prices, times = _usable_prices(market, symbol)
    strategy = EnsembleStrategy(
        models=",".join(models),
        window=window,
        horizon=horizon,
        workers=1,
        **asdict(policy or DecisionPolicy()),
    )
    decider = EnsembleDecider(strategy)
    _check_history(decider, symbol, len(prices), market)
    series = Series(symbol, np.log(prices), times)
    failed = _replay(decider, series, feedback)
    errors = [_fit_error(name, strategy, series) for name in failed]
    forecasts = _forecast_all(decider, series, horizon, set(failed), errors)
    decision = decider.decide(series)
    if decision is None:
        raise StrategyError(f"{symbol}: no model could forecast")
    return {
        "symbol": symbol,
        "as_of": market.time_of(market.n_bars - 1).isoformat(),
        "price": _number(prices[-1]),
        "timeframe": str(market.timeframe),
        "forecast": _forecast_part(float(prices[-1]), times, market.timeframe, forecasts, decision),
        "indicators": _indicators(prices, times, market.timeframe),
        "decision": {
            "action": decision.details["action"],
            "target": _number(decision.target),
            "confidence": _number(decision.confidence),
            "rationale": decision.rationale,
        },
        "errors": errors,
    }


# -- inputs ------------------------------------------------------------------------------------


def _usable_prices(market: MarketData, symbol: str) -> tuple[FloatArray, TimeArray]:
    """The symbol's closes, carried forward over bars it missed, since the last bar without
    a positive price (history before a broken bar is not used), and their times."""
    if symbol not in market.symbols:
        raise DataError(
            f"symbol {symbol!r} is not in this market data (it has {', '.join(market.symbols)}):"
            " load its bars or analyse one of those"
        )
    if market.n_bars == 0:
        raise DataError(f"{symbol}: the market data has no bars: load its history first")
    column = market.index_of(symbol)
    last = float(market.close[-1, column])
    if not (math.isfinite(last) and last > 0):
        when = market.time_of(market.n_bars - 1).isoformat()
        raise DataError(
            f"{symbol}: the last close, at {when}, is {last}, not a positive price: "
            "fix that bar or analyse up to the bar before it"
        )
    mark = market.mark[:, column]
    broken = np.flatnonzero(~(np.isfinite(mark) & (mark > 0)))
    first = int(broken[-1]) + 1 if broken.size else 0
    return mark[first:], market.times[first:]


def _check_history(decider: EnsembleDecider, symbol: str, bars: int, market: MarketData) -> None:
    needed = max(model.min_history() for model in decider.models)
    if bars >= needed:
        return
    short = [model.name for model in decider.models if model.min_history() > bars]
    wants = ", ".join(f"{model.name} {model.min_history()}" for model in decider.models)
    when = market.time_of(market.n_bars - 1).isoformat()
    raise DataError(
        f"{symbol}: {bars} usable bars up to {when}, but the models need at least {needed} "
        f"({wants}): load more history or leave out {', '.join(short)}"
    )


# -- the decider -------------------------------------------------------------------------------


def _replay(decider: EnsembleDecider, series: Series, feedback: int) -> list[str]:
    """Step ``decider`` through about ``feedback`` bars before the last one as the agent
    would (refit every ``refit_every`` bars, forecast at every bar, decide every ``every``,
    both counted back from the last bar), then refit it there; the names of the models whose
    last fit failed."""
    every, refit_every = decider.strategy.every, decider.strategy.refit_every
    last = len(series) - 1
    needed = max(model.min_history() for model in decider.models)
    blocks = min(math.ceil(feedback / refit_every), (last + 1 - needed) // refit_every)
    for bar in range(last - blocks * refit_every, last):
        seen = series.upto(bar + 1)
        if (last - bar) % refit_every == 0:
            decider.refit(seen)
        if (last - bar) % every != 0:
            decider.observe(seen)  # the weights learn from every bar's outcome
        else:
            decider.decide(seen)
    return decider.refit(series)


def _fit_error(name: str, strategy: EnsembleStrategy, series: Series) -> str:
    """Why model ``name`` cannot be fitted on ``series`` (the decider keeps only its name)."""
    model = make_forecaster(name, strategy.window, strategy.horizon)
    try:
        model.fit(series)
    except ForecastError as exc:
        return str(exc)
    return f"{name}: fit failed"


def _forecast_all(
    decider: EnsembleDecider, series: Series, horizon: int, failed: set[str], errors: list[str]
) -> dict[str, Forecast]:
    """Each fitted model's forecast from the last bar; failures go to ``errors``."""
    forecasts: dict[str, Forecast] = {}
    for model in decider.models:
        if model.name in failed:
            continue
        try:
            forecasts[model.name] = model.forecast(series, horizon)
        except ForecastError as exc:
            errors.append(str(exc))
    if not forecasts:
        raise StrategyError(f"{series.symbol}: no model could forecast: {'; '.join(errors)}")
    return forecasts


# -- the answer --------------------------------------------------------------------------------


def _forecast_part(
    close: float,
    times: TimeArray,
    timeframe: Timeframe,
    forecasts: dict[str, Forecast],
    decision: Decision,
) -> dict[str, Any]:
    """The models that voted, with their weights and ``horizon``-bar mean log returns, and
    the mixture's path of price levels: its median and the bands at ``LEVELS``."""
    weights = dict(decision.votes)
    names = [name for name in forecasts if name in weights]
    means = np.array([forecasts[name].mean for name in names])
    sds = np.array([forecasts[name].sd for name in names])
    mix_mean, mix_sd = combine(
        means[:, None, :], sds[:, None, :], np.array([[weights[name] for name in names]])
    )
    band = Forecast.normal(mix_mean[0], mix_sd[0])
    future = _future_times(times, timeframe, decision.horizon)
    path = []
    for k in range(decision.horizon):
        row: dict[str, Any] = {
            "step": k + 1,
            "time": future[k],
            "mean": _number(close * math.exp(band.mean[k])),
        }
        for i, level in enumerate(LEVELS):
            row[f"lower{level}"] = _number(close * math.exp(band.lower[i][k]))
            row[f"upper{level}"] = _number(close * math.exp(band.upper[i][k]))
        path.append(row)
    voted = [
        {"name": name, "weight": _number(weights[name]), "mean": _number(means[n, -1])}
        for n, name in enumerate(names)
    ]
    return {"horizon": decision.horizon, "models": voted, "path": path}


def _future_times(times: TimeArray, timeframe: Timeframe, steps: int) -> list[str]:
    """ISO-8601 UTC times of the ``steps`` bars after the last of ``times``: business days
    for daily bars when the history has no weekend bars (equities), else plain steps of the
    timeframe. Holidays are not known, so they are not skipped."""
    last = np.datetime64(times[-1], "ns")
    ahead = np.arange(1, steps + 1)
    if timeframe.unit == "d" and not _has_weekend_bars(times):
        day = last.astype("datetime64[D]")
        days = np.busday_offset(day, ahead * timeframe.count, roll="forward")
        future = days.astype("datetime64[ns]") + (last - day.astype("datetime64[ns]"))
    else:
        future = last + ahead * np.timedelta64(timeframe.seconds, "s")
    return [utc_datetime(int(value)).isoformat() for value in future.astype(np.int64)]


def _has_weekend_bars(times: TimeArray) -> bool:
    return not bool(np.is_busday(times.astype("datetime64[D]")).all())


def _indicators(prices: FloatArray, times: TimeArray, timeframe: Timeframe) -> dict[str, Any]:
    """SMA 20 and 50, RSI 14, annualised 20-bar volatility of log returns and the 20-bar
    simple return at the last bar; None where the history is too short."""
    returns = np.diff(np.log(prices[-21:]))
    vol = float(np.std(returns, ddof=1)) if len(returns) == 20 else math.nan
    return {
        "sma20": _number(sma(prices, 20)[-1]),
        "sma50": _number(sma(prices, 50)[-1]),
        "rsi14": _number(rsi(prices, 14)[-1]),
        "vol20": _number(vol * math.sqrt(_bars_per_year(timeframe, _has_weekend_bars(times)))),
        "ret20": _number(trailing_return(prices, 20)[-1]),
    }


def _bars_per_year(timeframe: Timeframe, weekends: bool) -> float:
    """Trading days a year (365 with weekend bars, as crypto has; else 252) times bars a
    day; intraday bars are counted around the clock."""
    if timeframe.unit == "w":
        return 52.0 / timeframe.count
    days = 365.0 if weekends else 252.0
    return days * 86_400 / timeframe.seconds


def _number(value: float | np.floating[Any]) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    number = float(value)
    return number if math.isfinite(number) else None
