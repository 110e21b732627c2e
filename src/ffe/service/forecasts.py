"""The forecast benchmark as a use case: every model walked forward from rolling origins and
scored against the random walk.

``ffe forecast bench`` and the worker's forecast_bench jobs call ``bench``; each parses its
input into a ``BenchRequest`` and presents the ``BenchResult``. Synchronous, and it may start a
process pool: call it from a command, a job's process or a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ffe.service.markets import MarketSpec, load_bars
from ffe.service.progress import ReportProgress

if TYPE_CHECKING:
    from ffe.bootstrap import Components
    from ffe.forecast.ensemble import HedgeConfig
    from ffe.forecast.evaluate import BenchResult


@dataclass(frozen=True, slots=True)
class BenchRequest:
    """Forecast ``symbol``'s log closes with ``models`` (comma-separated; None or empty: all;
    the random walk is always added), refit every ``refit_every`` bars on the last ``window``,
    scored at each of ``horizons``; the blocks spread over ``workers`` processes (None or 0: as
    many as allowed). ``hedge`` tunes the ensemble (None: its defaults)."""

    symbol: str = "SP500"
    horizons: tuple[int, ...] = (1, 5)
    models: str | None = None
    window: int = 500
    refit_every: int = 21
    start: str | None = None
    end: str | None = None
    hedge: HedgeConfig | None = None
    workers: int | None = None


def bench(
    components: Components, request: BenchRequest, progress: ReportProgress | None = None
) -> BenchResult:
    """Run the benchmark ``request`` describes. An unknown model is refused before any bar
    loads; ``progress`` counts forecasts (origins times models)."""
    import numpy as np

    from ffe.domain.errors import ConfigError
    from ffe.forecast.base import Series
    from ffe.forecast.evaluate import evaluate
    from ffe.forecast.models import BASELINE, parse_models
    from ffe.forecast.rolling import RollingSpec, rolling_forecasts

    names = parse_models(request.models)
    if BASELINE not in names:
        names = (BASELINE, *names)
    if not request.horizons:
        raise ConfigError("no horizon to score: give at least one, e.g. 1")
    spec = RollingSpec(
        horizon=max(request.horizons), window=request.window, refit_every=request.refit_every
    )
    market = load_bars(components, MarketSpec((request.symbol,), request.start, request.end))
    series = Series(request.symbol, np.log(market.mark[:, 0]), market.times)
    total, done = len(spec.origins(len(series))) * len(names), [0]
    report = progress or _silent

    def advance(forecasts: int) -> None:
        done[0] += forecasts
        report(done[0], total)

    report(0, total)
    executor = components.executor(request.workers)
    panel = rolling_forecasts(series, names, spec, progress=advance, executor=executor)
    horizons = sorted(set(request.horizons))
    return evaluate(
        panel, series.values, horizons, request.window, request.refit_every, request.hedge
    )


def _silent(done: int, total: int) -> None:
    """Progress nobody asked for."""
