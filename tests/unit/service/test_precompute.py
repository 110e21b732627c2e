"""The pre-compute process's parts: the readiness check on the age of the last stored
analysis, and a stop that lets the analysis in progress finish, or abandons it past the grace."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from ffe.kv import MemoryCache
from ffe.obs.health import ProbeError
from ffe.service import precompute
from ffe.service.analysis import AnalysisStore, Failure, Precompute
from ffe.service.precompute import freshness_probe


def _schedule(symbols: list[str], analyse: Any = None) -> Precompute:
    store = AnalysisStore(MemoryCache(), ttl_s=900)
    return Precompute(symbols, 300, store, analyse or (lambda s: {"symbol": s}))


async def test_freshness_when_no_symbols_then_ok_saying_so() -> None:
    assert "precompute.symbols is empty" in await freshness_probe(_schedule([]), 10)()


async def test_freshness_when_first_round_within_max_age_then_ok() -> None:
    detail = await freshness_probe(_schedule(["SP500"]), 60)()

    assert "no analysis stored yet" in detail


async def test_freshness_when_nothing_stored_for_longer_than_max_age_then_fails() -> None:
    schedule = _schedule(["SP500", "NOPE"])
    schedule.started_at -= 120
    schedule.failures["NOPE"] = Failure(ValueError("no bars"), 0.0)  # type: ignore[arg-type]

    with pytest.raises(ProbeError, match=r"longer than the cache keeps one \(60s\); failing: NOPE"):
        await freshness_probe(schedule, 60)()


async def test_freshness_when_stored_lately_then_ok_with_age() -> None:
    schedule = _schedule(["SP500"])
    await schedule.refresh("SP500")

    assert "last analysis stored 0s ago" in await freshness_probe(schedule, 60)()


@pytest.fixture(autouse=True)
def _no_heap_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ffe.service.heap.settle", lambda: None)


async def test_run_until_when_stopped_mid_analysis_past_grace_then_abandoned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release, started = threading.Event(), threading.Event()

    def stuck(symbol: str) -> dict[str, Any]:
        started.set()
        release.wait(10)
        return {"symbol": symbol}

    schedule = _schedule(["SP500"], stuck)
    monkeypatch.setattr(precompute, "STOP_GRACE_S", 0.2)
    stop = asyncio.Event()
    running = asyncio.create_task(precompute._run_until(schedule, stop))
    await asyncio.to_thread(started.wait, 10)

    stop.set()
    try:
        await asyncio.wait_for(running, 5)  # the analysis still runs on its thread
    finally:
        release.set()

    assert await schedule.store.result("SP500") is None  # abandoned: nothing stored
    assert schedule.last_success is None


async def test_refresh_when_the_cache_refuses_the_value_then_a_failure_not_a_dead_schedule() -> (
    None
):
    class Refusing(MemoryCache):
        async def set(self, key: str, value: bytes, ttl_s: float) -> None:
            raise ValueError("Out of range float values are not JSON compliant")

    schedule = Precompute(
        ["SP500", "NASDAQ"], 300, AnalysisStore(Refusing(), ttl_s=900), lambda s: {"x": 1}
    )

    failure = await schedule.refresh("SP500")

    assert failure is not None
    assert "could not be stored" in str(failure.error)
    assert "SP500" in schedule.failures
    assert await schedule.refresh("NASDAQ") is not None  # the schedule goes on
