"""The analysis of a symbol (forecast and bands, indicators, the decision the ensemble would
make) as a use case: computed on a schedule into the shared cache, and read from there.

``Precompute`` refreshes each configured symbol every interval; ``ffe precompute`` runs it in a
process of its own, and the API runs it too where ``precompute.in_api`` is on (``ffe run``).
``AnalysisReader`` answers the analysis endpoint from the cache. The cache is Redis when one is
configured, else the journal (``bootstrap.analysis_cache``), so every process on the machine,
or in the cluster, reads what one pre-compute wrote. A failed analysis is cached too, for its
message to reach whoever asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ffe.domain.errors import (
    ConfigError,
    DataError,
    FfeError,
    NotFoundError,
    StrategyError,
)
from ffe.kv.cache import Cache, get_json, set_json
from ffe.service import heap
from ffe.service.background import watched

if TYPE_CHECKING:
    from ffe.bootstrap import Components
    from ffe.data.catalog import DataCatalog
    from ffe.kv import KvBackends
    from ffe.obs.metrics import Metrics
    from ffe.store.database import Database

log = logging.getLogger(__name__)

RETRY_FAILED_S = 60.0  # where the API computes, a failed analysis is retried after this long
SYMBOLS_SETTING = "precompute.symbols"
_RESULT, _FAILED = "analysis:", "analysis-failed:"
# A cached failure comes back as the error it was, so the API answers the same status.
_KINDS: dict[str, type[FfeError]] = {
    "DataError": DataError,
    "NotFoundError": NotFoundError,
    "ConfigError": ConfigError,
    "StrategyError": StrategyError,
    "ForecastError": StrategyError,  # by name: importing ffe.forecast loads scipy
}


def compute(catalog: DataCatalog, symbol: str) -> dict[str, Any]:
    """Analyse ``symbol`` on its stored bars; seconds of CPU: run it on a worker thread."""
    from ffe.data import load_market
    from ffe.decide.analysis import analyse

    market = load_market(catalog, [symbol])
    started = time.perf_counter()
    result = analyse(market, symbol)
    result["computed_at"] = datetime.now(UTC).isoformat()
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


@dataclass(frozen=True, slots=True)
class Pending:
    """No analysis to answer yet: ask again in ``retry_after_s`` (the API answers 202)."""

    detail: str
    retry_after_s: int


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a symbol's analysis failed, and when (Unix time)."""

    error: FfeError
    failed_at: float


class AnalysisStore:
    """Analyses and failures of analyses in a cache, each kept for ``ttl_s`` seconds."""

    def __init__(self, cache: Cache, ttl_s: float) -> None:
        self.cache, self.ttl_s = cache, ttl_s

    async def result(self, symbol: str) -> dict[str, Any] | None:
        """The cached analysis of ``symbol``, or None."""
        found = await get_json(self.cache, _RESULT + symbol)
        return dict(found) if isinstance(found, dict) else None

    async def failure(self, symbol: str) -> Failure | None:
        """Why the last analysis of ``symbol`` failed, while no later one succeeded."""
        found = await get_json(self.cache, _FAILED + symbol)
        if not isinstance(found, dict):
            return None
        kind = _KINDS.get(str(found.get("kind")), FfeError)
        return Failure(kind(str(found.get("error"))), float(found.get("failed_at", 0.0)))

    async def put(self, symbol: str, result: dict[str, Any]) -> None:
        """Cache ``result`` and forget an earlier failure."""
        await set_json(self.cache, _RESULT + symbol, result, self.ttl_s)
        await self.cache.delete(_FAILED + symbol)

    async def put_failure(self, symbol: str, failure: Failure) -> None:
        """Cache why the analysis failed (an earlier result stays until it expires)."""
        error = failure.error
        record = {"error": str(error), "kind": type(error).__name__, "failed_at": failure.failed_at}
        await set_json(self.cache, _FAILED + symbol, record, self.ttl_s)


Analyse = Callable[[str], dict[str, Any]]
"""A symbol's analysis as a JSON-ready dict (``compute`` on a catalog); runs on a thread."""


class Precompute:
    """The schedule: every ``interval_s``, analyse each of ``symbols`` into ``store``.

    One analysis runs at a time per symbol: a refresh asked for while one runs joins it."""

    def __init__(
        self,
        symbols: list[str],
        interval_s: float,
        store: AnalysisStore,
        analyse: Analyse,
        metrics: Metrics | None = None,
    ) -> None:
        self.symbols, self.interval_s = list(symbols), interval_s
        self.store, self.analyse, self.metrics = store, analyse, metrics
        self.started_at = time.time()
        self.last_success: float | None = None  # Unix time of the newest analysis stored
        self.rounds = 0
        # This process's own last answers: what its API reads while the cache (Redis) is down.
        self.latest: dict[str, tuple[float, dict[str, Any]]] = {}
        self.failures: dict[str, Failure] = {}
        self._running: dict[str, asyncio.Task[Failure | None]] = {}

    def refreshing(self, symbol: str) -> bool:
        """Whether an analysis of ``symbol`` runs now."""
        return symbol in self._running

    def refresh_soon(self, symbol: str) -> asyncio.Task[Failure | None]:
        """The running analysis of ``symbol``, started if none runs."""
        task = self._running.get(symbol)
        if task is None:
            task = watched(asyncio.create_task(self.refresh(symbol)), f"analysis of {symbol}")
            self._running[symbol] = task
            task.add_done_callback(lambda _: self._running.pop(symbol, None))
        return task

    async def refresh(self, symbol: str) -> Failure | None:
        """Analyse ``symbol`` now and store the result, or why it failed; the failure."""
        started = time.perf_counter()
        try:
            result = await asyncio.to_thread(self.analyse, symbol)
        except FfeError as exc:
            log.warning("analysis of %s failed: %s", symbol, exc)
            failure: Failure | None = Failure(exc, time.time())
        except Exception as exc:  # a model blowing up must not stop the schedule
            log.exception("analysis of %s failed", symbol)
            message = f"analysis of {symbol} failed: {type(exc).__name__}: {exc}"
            failure = Failure(FfeError(message), time.time())
        else:
            failure = None
            self.latest[symbol] = (time.monotonic(), result)
        try:
            if failure is None:
                await self.store.put(symbol, result)
            else:
                await self.store.put_failure(symbol, failure)
        except FfeError as exc:  # the journal failed: nothing was stored
            log.error("the analysis of %s was not stored: %s", symbol, exc)
            failure = failure or Failure(exc, time.time())
        except (TypeError, ValueError) as exc:  # a value the cache cannot hold (NaN, say)
            log.exception("the analysis of %s was not stored", symbol)
            stored = FfeError(f"the analysis of {symbol} could not be stored: {exc}")
            failure = failure or Failure(stored, time.time())
        self._record(symbol, failure, time.perf_counter() - started)
        return failure

    def _record(self, symbol: str, failure: Failure | None, seconds: float) -> None:
        now = time.time()
        if failure is None:
            self.failures.pop(symbol, None)
            self.last_success = now
        else:
            self.failures[symbol] = failure
        if self.metrics is not None:
            self.metrics.record_analysis(symbol, failure is None, seconds, now)

    async def run_once(self, stop: asyncio.Event | None = None) -> dict[str, Failure]:
        """Refresh every symbol once, one after the other (until ``stop`` is set); the
        failures of this round by symbol."""
        failed = {}
        for symbol in self.symbols:
            if stop is not None and stop.is_set():
                break
            failure = await self.refresh_soon(symbol)
            if failure is not None:
                failed[symbol] = failure
        self.rounds += 1
        return failed

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Refresh every symbol every ``interval_s`` until ``stop`` is set (or cancelled).
        A refresh in progress when ``stop`` is set finishes and is stored."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            await self.run_once(stop)
            if self.rounds == 1:  # the forecasting libraries are loaded: out of the GC's way
                heap.settle()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)


class AnalysisReader:
    """The analysis endpoint's answers, from the cache.

    With ``here`` (the API runs the schedule: ``ffe run``), a symbol not in the cache is
    analysed on its first request, as the schedule would, and its failure kept for
    ``RETRY_FAILED_S``. Without it (``ffe serve`` beside ``ffe precompute``) nothing is
    computed: a configured symbol not yet cached is pending, another one is refused with
    the setting that adds it."""

    def __init__(
        self,
        store: AnalysisStore,
        symbols: list[str],
        has_bars: Callable[[str], bool],
        here: Precompute | None = None,
    ) -> None:
        self.store, self.symbols, self.here = store, list(symbols), here
        self._has_bars = has_bars

    async def get(self, symbol: str) -> dict[str, Any] | Pending:
        """The analysis of ``symbol``, or Pending; a failed analysis raises its error, and a
        symbol that cannot be analysed raises NotFoundError saying why."""
        found = await self.store.result(symbol)
        if found is not None:
            return found
        if self.here is not None:
            return await self._computed_here(self.here, symbol)
        failure = await self.store.failure(symbol)
        if failure is not None:
            raise failure.error
        if symbol in self.symbols:
            return Pending(
                f"the analysis of {symbol} is not cached yet: the pre-compute service "
                "(`ffe precompute`) fills it; ask again later, or start it if it is not running",
                5,
            )
        await self._check_bars(symbol)
        raise NotFoundError(
            f"{symbol} is not analysed here: this API only reads the analyses `ffe precompute` "
            f"caches for {SYMBOLS_SETTING}; add {symbol} to {SYMBOLS_SETTING} "
            "(FFE__PRECOMPUTE__SYMBOLS) and restart `ffe precompute`"
        )

    async def _computed_here(self, here: Precompute, symbol: str) -> dict[str, Any] | Pending:
        latest = here.latest.get(symbol)
        if latest is not None and time.monotonic() - latest[0] < self.store.ttl_s:
            return latest[1]
        if not here.refreshing(symbol):
            failure = here.failures.get(symbol) or await self.store.failure(symbol)
            if failure is not None and time.time() - failure.failed_at < RETRY_FAILED_S:
                raise failure.error  # a DataError stays one: 404 for a symbol without bars
            # Nothing is started or kept for a symbol without bars: any name can be asked for.
            await self._check_bars(symbol)
            here.refresh_soon(symbol)
        return Pending(f"the analysis of {symbol} is being computed", 2)

    async def _check_bars(self, symbol: str) -> None:
        if not await asyncio.to_thread(self._has_bars, symbol):
            raise NotFoundError(
                f"no bars for symbol {symbol!r}: GET /api/v1/market/symbols lists the "
                "stored ones; `ffe data import` adds more"
            )


def open_analysis(
    components: Components, db: Database, kv: KvBackends, metrics: Metrics | None = None
) -> tuple[AnalysisReader, Precompute]:
    """The reader the API answers with and the schedule, wired from the ``precompute``
    settings on the shared cache; the reader computes only where ``precompute.in_api`` is on
    (the caller decides whether the schedule runs)."""
    chosen = components.precompute
    catalog = components.catalog()
    observer = None if metrics is None else lambda result: metrics.cache_event("journal", result)
    cache = components.analysis_cache(db, kv, observer)
    store = AnalysisStore(cache, chosen.interval_s * 3)
    analyse = functools.partial(compute, catalog)
    schedule = Precompute(list(chosen.symbols), chosen.interval_s, store, analyse, metrics)
    here = schedule if chosen.in_api else None

    def has_bars(symbol: str) -> bool:
        return symbol in catalog.symbols()

    return AnalysisReader(store, list(chosen.symbols), has_bars, here), schedule
