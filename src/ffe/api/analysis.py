"""The analysis endpoint's background work: every ``api.analysis_interval_s`` seconds, analyse
each of ``api.analysis_symbols`` (forecast, bands, indicators, the decision it would make)
and cache the result, so requests read a cached answer instead of fitting models.

A symbol nobody scheduled is analysed on its first request, in the background; until then
the endpoint answers 202 with Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ffe.config import Settings
from ffe.domain.errors import FfeError, NotFoundError
from ffe.kv import KvBackends
from ffe.kv.cache import get_json, set_json
from ffe.service import heap
from ffe.service.background import watched

log = logging.getLogger(__name__)

_PREFIX = "analysis:"
_RETRY_FAILED_S = 60.0  # a failed analysis is not retried for this long (models are slow)


def compute(settings: Settings, symbol: str) -> dict[str, Any]:
    """Analyse ``symbol`` on its stored bars (runs on a worker thread)."""
    from datetime import UTC, datetime

    from ffe import bootstrap
    from ffe.data import load_market
    from ffe.decide.analysis import analyse

    market = load_market(bootstrap.data_catalog(settings), [symbol])
    started = time.perf_counter()
    result = analyse(market, symbol)
    result["computed_at"] = datetime.now(UTC).isoformat()
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


class AnalysisService:
    """Schedules analyses and answers from the cache."""

    def __init__(self, settings: Settings, kv: KvBackends) -> None:
        self.settings, self.kv = settings, kv
        self.ttl_s = settings.api.analysis_interval_s * 3
        self._running: dict[str, asyncio.Task[None]] = {}
        self._errors: dict[str, tuple[float, FfeError]] = {}  # answered until retried
        # The last result of this process: what a request gets when the cache (Redis) is down.
        self._local: dict[str, tuple[float, dict[str, Any]]] = {}

    def start(self) -> asyncio.Task[None]:
        """Run the schedule in the background."""
        return asyncio.create_task(self._schedule(), name="ffe-analysis")

    async def _schedule(self) -> None:
        first = True
        while True:
            for symbol in self.settings.api.analysis_symbols:
                await self.refresh(symbol)
            if first:  # the forecasting libraries are loaded now: out of the collector's way
                heap.settle()
                first = False
            await asyncio.sleep(self.settings.api.analysis_interval_s)

    async def get(self, symbol: str) -> dict[str, Any] | None:
        """The cached analysis, or None while one is being computed (started if need be).
        A symbol whose analysis failed raises the failure."""
        cached = await get_json(self.kv.cache, _PREFIX + symbol)
        if cached is not None:
            return dict(cached)
        local = self._local.get(symbol)
        if local is not None and time.monotonic() - local[0] < self.ttl_s:
            return local[1]
        failed = self._errors.get(symbol)
        if failed is not None and symbol not in self._running:
            if time.monotonic() - failed[0] < _RETRY_FAILED_S:
                raise failed[1]  # a DataError stays one: 404 for an unknown symbol
            del self._errors[symbol]
        if symbol not in self._running:
            # No task, and no error kept, for a symbol without bars: any name can be asked for.
            if not await asyncio.to_thread(self._has_bars, symbol):
                raise NotFoundError(
                    f"no bars for symbol {symbol!r}: GET /api/v1/market/symbols lists the "
                    "stored ones; `ffe data import` adds more"
                )
            analysing = asyncio.create_task(self.refresh(symbol))
            self._running[symbol] = watched(analysing, f"analysis of {symbol}")
        return None

    def _has_bars(self, symbol: str) -> bool:
        from ffe import bootstrap

        return symbol in bootstrap.data_catalog(self.settings).symbols()

    async def refresh(self, symbol: str) -> None:
        """Analyse ``symbol`` now and cache the result (or remember why it failed)."""
        try:
            result = await asyncio.to_thread(compute, self.settings, symbol)
        except FfeError as exc:
            log.warning("analysis of %s failed: %s", symbol, exc)
            self._errors[symbol] = (time.monotonic(), exc)
        except Exception as exc:  # a model blowing up must not kill the scheduler
            log.exception("analysis of %s failed", symbol)
            message = f"analysis of {symbol} failed: {type(exc).__name__}: {exc}"
            self._errors[symbol] = (time.monotonic(), FfeError(message))
        else:
            self._errors.pop(symbol, None)
            self._local[symbol] = (time.monotonic(), result)
            await set_json(self.kv.cache, _PREFIX + symbol, result, self.ttl_s)
        finally:
            self._running.pop(symbol, None)
