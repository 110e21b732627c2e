"""Rolling-origin forecasts: every model forecasts from every origin, seeing only the bars up
to it.

At origin ``t`` (a bar index) a model is given ``values[: t + 1]``. It is refitted on the
``window`` bars ending at ``t`` every ``refit_every`` origins and otherwise applies its fitted
parameters to the newest bars. What it forecast for ``t + 1 .. t + horizon`` is compared
with what happened later, by the evaluation and by the ensemble's feedback, never by the
model itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ffe.compute import Executor, LocalExecutor, in_order
from ffe.domain.errors import ConfigError
from ffe.forecast.base import LEVELS, ForecastError, Series
from ffe.forecast.models import make_forecaster

log = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]
Progress = Callable[[int], None]
"""Called with the number of (model, origin) forecasts just finished."""


@dataclass(frozen=True, slots=True)
class RollingSpec:
    """Where forecasts start and how models are refitted."""

    horizon: int = 5
    window: int = 500
    refit_every: int = 21
    start: int | None = None  # first origin; default: the window's end

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ConfigError(f"horizon must be at least 1, got {self.horizon}")
        if self.window < 30:
            raise ConfigError(f"window must be at least 30 bars, got {self.window}")
        if self.refit_every < 1:
            raise ConfigError(f"refit_every must be at least 1, got {self.refit_every}")

    def origins(self, n_bars: int) -> IntArray:
        """Bar indices of the origins for a series of ``n_bars`` bars."""
        first = self.window - 1 if self.start is None else max(self.start, self.window - 1)
        return np.arange(first, n_bars, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Panel:
    """Forecasts of several models over the same origins.

    ``mean`` and ``sd`` have shape (models, origins, horizon); ``lower``/``upper`` have shape
    (models, levels, origins, horizon). A model that failed at an origin has NaN there.
    ``actual`` (origins, horizon) is the realized cumulative log return, NaN past the data.
    """

    symbol: str
    models: tuple[str, ...]
    origins: IntArray
    times: npt.NDArray[np.datetime64]
    mean: npt.NDArray[np.float64]
    sd: npt.NDArray[np.float64]
    lower: npt.NDArray[np.float64]
    upper: npt.NDArray[np.float64]
    actual: npt.NDArray[np.float64]

    @property
    def horizon(self) -> int:
        return int(self.mean.shape[2])

    def index(self, model: str) -> int:
        return self.models.index(model)

    def with_model(
        self,
        name: str,
        mean: npt.NDArray[np.float64],
        sd: npt.NDArray[np.float64],
        lower: npt.NDArray[np.float64],
        upper: npt.NDArray[np.float64],
    ) -> Panel:
        """This panel with one more model: ``mean``/``sd`` (origins, horizon), ``lower``/
        ``upper`` (levels, origins, horizon), NaN where it did not forecast."""
        return Panel(
            symbol=self.symbol,
            models=(*self.models, name),
            origins=self.origins,
            times=self.times,
            mean=np.concatenate([self.mean, mean[None]]),
            sd=np.concatenate([self.sd, sd[None]]),
            lower=np.concatenate([self.lower, lower[None]]),
            upper=np.concatenate([self.upper, upper[None]]),
            actual=self.actual,
        )


def realized(
    values: npt.NDArray[np.float64], origins: IntArray, horizon: int
) -> npt.NDArray[np.float64]:
    """Cumulative log return from each origin over 1..horizon bars (NaN past the end)."""
    out = np.full((len(origins), horizon), np.nan)
    for step in range(1, horizon + 1):
        ahead = origins + step
        inside = ahead < len(values)
        out[inside, step - 1] = values[ahead[inside]] - values[origins[inside]]
    return out


_BLOCKS_PER_TASK = 8  # refit blocks per unit of work: progress steps and load balance

Block = tuple[npt.NDArray[np.float64], ...]  # one model's (mean, sd, lower, upper) at some origins


def _block(shared: tuple[Series, RollingSpec], task: tuple[str, int, int]) -> Block:
    # The series goes to each worker once, with the spec; a task names the model and origins.
    series, spec = shared
    name, lo, hi = task
    return model_forecasts(name, series, spec, lo, hi)


def model_forecasts(
    name: str, series: Series, spec: RollingSpec, first: int = 0, stop: int | None = None
) -> tuple[npt.NDArray[np.float64], ...]:
    """One model's (mean, sd, lower, upper) at origins ``first:stop`` of ``spec``.

    ``first`` must start a refit block (a multiple of ``refit_every``): a model is fitted there
    and at every block after it, so any split into blocks gives the same numbers as one run.
    """
    origins = spec.origins(len(series))[first:stop]
    n, h, k = len(origins), spec.horizon, len(LEVELS)
    mean, sd = np.full((n, h), np.nan), np.full((n, h), np.nan)
    lower, upper = np.full((k, n, h), np.nan), np.full((k, n, h), np.nan)
    model = make_forecaster(name, window=spec.window, max_horizon=spec.horizon)
    fitted, failures = False, 0
    for i, origin in enumerate(origins.tolist()):
        seen = series.upto(origin + 1)
        if (first + i) % spec.refit_every == 0 or not fitted:
            try:
                model.fit(seen)
                fitted = True
            except ForecastError as exc:
                fitted, failures = False, failures + 1
                log.debug("%s: %s", name, exc)
        if fitted:
            try:
                forecast = model.forecast(seen, h)
            except ForecastError as exc:
                failures += 1
                log.debug("%s: %s", name, exc)
            else:
                mean[i], sd[i] = forecast.mean, forecast.sd
                lower[:, i], upper[:, i] = forecast.lower, forecast.upper
    if failures:
        log.info("%s: %d of %d origins without a forecast", name, failures, n)
    return mean, sd, lower, upper


def rolling_forecasts(
    series: Series,
    models: Sequence[str],
    spec: RollingSpec,
    workers: int | None = 1,
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> Panel:
    """Every model's forecast at every origin, spread over ``executor`` (else a local pool of
    ``workers`` processes; None: one per core) in blocks of refits, which gives the same
    numbers as one process."""
    origins = spec.origins(len(series))
    n = len(origins)
    if n == 0:
        raise ConfigError(
            f"{series.symbol}: {len(series)} bars are not enough for a {spec.window}-bar window"
        )
    step = spec.refit_every * _BLOCKS_PER_TASK
    tasks = [(name, lo, min(lo + step, n)) for name in models for lo in range(0, n, step)]
    pool = executor or LocalExecutor(workers)

    def done(index: int, block: Block) -> None:
        if progress is not None:
            progress(tasks[index][2] - tasks[index][1])

    blocks = in_order(pool.map(_block, tasks, (series, spec), progress=done), len(tasks))
    parts = {(name, lo): block for (name, lo, _), block in zip(tasks, blocks, strict=True)}

    def joined(name: str, which: int, axis: int) -> npt.NDArray[np.float64]:
        return np.concatenate([parts[name, lo][which] for lo in range(0, n, step)], axis=axis)

    return Panel(
        symbol=series.symbol,
        models=tuple(models),
        origins=origins,
        times=series.times[origins],
        mean=np.stack([joined(name, 0, 0) for name in models]),
        sd=np.stack([joined(name, 1, 0) for name in models]),
        lower=np.stack([joined(name, 2, 1) for name in models]),
        upper=np.stack([joined(name, 3, 1) for name in models]),
        actual=realized(series.values, origins, spec.horizon),
    )
