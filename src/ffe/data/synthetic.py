"""Seeded synthetic markets for tests and benchmarks.

Log prices follow a random walk whose shocks have GARCH(1,1) volatility (calm and stormy
spells, as real returns have) and load on one common market factor (so symbols are
correlated). Every symbol draws its drift, volatility, market beta and GARCH parameters from
the seed. Each symbol has its own random stream, so ``SYN0003`` is the same series whether
the market has 5 symbols or 500, and a shorter market is a prefix of a longer one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
import pandas as pd

from ffe.data.source import TIME_INDEX, unknown_symbol
from ffe.data.validate import validate_bars
from ffe.domain import DataError, MarketData, Timeframe

FloatArray = npt.NDArray[np.float64]

_MARKET_VOL = 0.16  # annual volatility of the common factor
_MARKET_GARCH = (0.08, 0.90)  # its (alpha, beta)
_MIN_IDIO_VOL = 0.05  # annual floor for the part of a symbol's volatility not from the market
_GAP_SHARE = 0.3  # how much of a bar's volatility falls between one close and the next open
_N_SHOCKS = 5  # per bar and symbol: return, open gap, high wick, low wick, volume noise


@dataclass(frozen=True, slots=True)
class _Params:
    """Per-symbol parameters, each an array over symbols."""

    drift: FloatArray  # annual
    vol: FloatArray  # annual, total
    beta: FloatArray  # loading on the market factor
    alpha: FloatArray  # GARCH reaction to the last shock
    persistence: FloatArray  # GARCH weight of the last variance
    price: FloatArray  # first close
    volume: FloatArray  # typical volume per bar


class SyntheticMarket:
    """A deterministic market of ``n_symbols`` symbols (``SYN0000``, ...) and ``n_bars`` bars."""

    def __init__(
        self,
        n_symbols: int,
        n_bars: int,
        *,
        timeframe: Timeframe | str = "1d",
        seed: int = 0,
        start: str | datetime = "2010-01-04",
    ) -> None:
        if n_symbols < 1 or n_bars < 1:
            raise DataError(
                f"a synthetic market needs at least one symbol and one bar "
                f"(got {n_symbols} symbols, {n_bars} bars)"
            )
        self._n_symbols = n_symbols
        self._n_bars = n_bars
        self._timeframe = Timeframe.parse(timeframe) if isinstance(timeframe, str) else timeframe
        self._seed = seed
        self._start = start
        self._market: MarketData | None = None

    def symbols(self) -> list[str]:
        """``SYN0000`` up to ``SYN{n_symbols - 1}``."""
        return [f"SYN{i:04d}" for i in range(self._n_symbols)]

    def timeframe(self, symbol: str) -> Timeframe:
        """The market's one timeframe."""
        self._column(symbol)
        return self._timeframe

    def load(self, symbol: str) -> pd.DataFrame:
        """The bars of ``symbol`` as a validated bar frame."""
        market, column = self.to_market(), self._column(symbol)
        frame = pd.DataFrame(
            {name: getattr(market, name)[:, column] for name in _FIELDS},
            index=pd.DatetimeIndex(market.times, name=TIME_INDEX).tz_localize("UTC"),
        )
        return validate_bars(frame, source=f"synthetic {symbol}", timeframe=self._timeframe)

    def to_market(self) -> MarketData:
        """All symbols as one MarketData, generated once and then reused."""
        if self._market is None:
            times = _bar_times(self._start, self._n_bars, self._timeframe)
            bars = _simulate(self._n_symbols, self._n_bars, self._timeframe, self._seed)
            self._market = MarketData(
                tuple(self.symbols()), times, *bars, timeframe=self._timeframe
            )
        return self._market

    def _column(self, symbol: str) -> int:
        names = self.symbols()
        if symbol not in names:
            raise unknown_symbol(symbol, names)
        return names.index(symbol)


_FIELDS = ("open", "high", "low", "close", "volume")


def _simulate(
    n_symbols: int, n_bars: int, timeframe: Timeframe, seed: int
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Open, high, low, close and volume arrays of shape ``(n_bars, n_symbols)``."""
    per_year = _bars_per_year(timeframe)
    params, shocks = _draw(n_symbols, n_bars, seed)
    factor = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    market_shocks = factor.standard_normal(n_bars)
    idio_vol = np.sqrt(np.maximum(params.vol**2 - (params.beta * _MARKET_VOL) ** 2, 0.0))
    idio_vol = np.maximum(idio_vol, _MIN_IDIO_VOL)
    # Column 0 is the market factor, the rest the symbols' own shocks: one GARCH pass for all.
    variance = _garch_variance(
        np.column_stack([market_shocks, shocks[:, :, 0]]),
        target=np.concatenate([[_MARKET_VOL], idio_vol]) ** 2 / per_year,
        alpha=np.concatenate([[_MARKET_GARCH[0]], params.alpha]),
        persistence=np.concatenate([[_MARKET_GARCH[1]], params.persistence]),
    )
    market_move = np.sqrt(variance[:, :1]) * market_shocks[:, None]
    bar_vol = np.sqrt(params.beta**2 * variance[:, :1] + variance[:, 1:])
    drift = (params.drift - 0.5 * params.vol**2) / per_year
    returns = drift + params.beta * market_move + np.sqrt(variance[:, 1:]) * shocks[:, :, 0]
    return _bars(params, returns, bar_vol, shocks)


def _draw(n_symbols: int, n_bars: int, seed: int) -> tuple[_Params, FloatArray]:
    """Per-symbol parameters and ``(n_bars, n_symbols, _N_SHOCKS)`` standard normal shocks."""
    draws = np.empty((7, n_symbols))
    shocks = np.empty((n_bars, n_symbols, _N_SHOCKS))
    # One stream per symbol keeps each symbol's series independent of how many there are.
    for column in range(n_symbols):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, column)))
        draws[:, column] = rng.random(7)
        shocks[:, column, :] = rng.standard_normal((n_bars, _N_SHOCKS))
    alpha = 0.03 + 0.07 * draws[3]
    params = _Params(
        drift=-0.04 + 0.20 * draws[0],
        vol=0.15 + 0.35 * draws[1],
        beta=0.4 + 1.0 * draws[2],
        alpha=alpha,
        persistence=np.minimum(0.84 + 0.12 * draws[4], 0.985 - alpha),
        price=np.exp(np.log(10.0) + np.log(50.0) * draws[5]),
        volume=np.exp(np.log(1e5) + np.log(100.0) * draws[6]),
    )
    return params, shocks


def _garch_variance(
    shocks: FloatArray, *, target: FloatArray, alpha: FloatArray, persistence: FloatArray
) -> FloatArray:
    """Conditional variances ``h_t = w + alpha e_{t-1}^2 + persistence h_{t-1}`` per column.

    ``target`` is the long-run variance, which also starts the recursion; ``e = sqrt(h) z``.
    """
    omega = target * (1.0 - alpha - persistence)
    variance = np.empty_like(shocks)
    h = target.copy()
    last_shock_sq = target.copy()
    # The recursion runs over time; every step is vectorized over all columns.
    for t in range(shocks.shape[0]):
        h = omega + alpha * last_shock_sq + persistence * h
        variance[t] = h
        last_shock_sq = h * shocks[t] ** 2
    return variance


def _bars(
    params: _Params, returns: FloatArray, bar_vol: FloatArray, shocks: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """OHLCV from close-to-close log returns, with the opening gap taken out of each return."""
    log_close = np.log(params.price) + np.cumsum(returns, axis=0)
    previous = np.vstack([np.log(params.price)[None, :], log_close[:-1]])
    gap = _GAP_SHARE * bar_vol * shocks[:, :, 1]
    close = np.exp(log_close)
    open_ = np.exp(previous + gap)
    high = np.maximum(open_, close) * np.exp(0.5 * bar_vol * np.abs(shocks[:, :, 2]))
    low = np.minimum(open_, close) * np.exp(-0.5 * bar_vol * np.abs(shocks[:, :, 3]))
    # Busy bars trade more: volume grows with the size of the move.
    activity = 1.0 + np.abs(returns) / bar_vol
    volume = np.round(params.volume * activity * np.exp(0.3 * shocks[:, :, 4]))
    return open_, high, low, close, volume


def _bars_per_year(timeframe: Timeframe) -> float:
    if timeframe.unit == "d":
        return 252.0 / timeframe.count
    if timeframe.unit == "w":
        return 52.0 / timeframe.count
    return 365.25 * 86_400 / timeframe.seconds  # intraday bars run around the clock


def _bar_times(
    start: str | datetime, n_bars: int, timeframe: Timeframe
) -> npt.NDArray[np.datetime64]:
    """Business days for daily bars, Mondays for weekly, a regular clock for intraday."""
    first = pd.Timestamp(start)
    if first.tz is not None:
        first = first.tz_convert("UTC").tz_localize(None)
    if timeframe.unit == "d":
        times = pd.bdate_range(first, periods=n_bars, freq=f"{timeframe.count}B")
    elif timeframe.unit == "w":
        times = pd.date_range(first, periods=n_bars, freq=f"{timeframe.count}W-MON")
    else:
        times = pd.date_range(first, periods=n_bars, freq=pd.Timedelta(seconds=timeframe.seconds))
    return np.asarray(times.as_unit("ns").to_numpy())
