"""The analysis use case on an in-process cache, with a fake analysis: the schedule stores
results and failures, and the reader answers from them, computing only where it runs the
schedule itself (``ffe run``)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from ffe.domain.errors import DataError, FfeError, NotFoundError
from ffe.kv import MemoryCache
from ffe.obs.metrics import Metrics
from ffe.service.analysis import AnalysisReader, AnalysisStore, Pending, Precompute

BARS = {"SP500", "NASDAQ", "EMPTY"}


class FakeAnalysis:
    """Analyses in no time; ``EMPTY`` has too few bars, ``BOOM`` blows up, and while
    ``hold`` is clear an analysis waits for it (on its worker thread)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.hold = threading.Event()
        self.hold.set()
        self.started = threading.Event()

    def __call__(self, symbol: str) -> dict[str, Any]:
        self.calls.append(symbol)
        self.started.set()
        assert self.hold.wait(10), "the test never released the analysis"
        if symbol == "EMPTY":
            raise DataError("EMPTY has 3 bars: an analysis needs at least 60")
        if symbol == "BOOM":
            raise ZeroDivisionError("float division by zero")
        return {"symbol": symbol, "price": 100.0, "call": len(self.calls)}


def _wired(
    symbols: list[str], *, here: bool, metrics: Metrics | None = None
) -> tuple[AnalysisReader, Precompute, FakeAnalysis]:
    analyse = FakeAnalysis()
    store = AnalysisStore(MemoryCache(), ttl_s=900)
    schedule = Precompute(symbols, 300, store, analyse, metrics)
    reader = AnalysisReader(store, symbols, BARS.__contains__, schedule if here else None)
    return reader, schedule, analyse


async def test_refresh_when_analysis_succeeds_then_reader_answers_it() -> None:
    reader, schedule, _ = _wired(["SP500"], here=False)

    assert await schedule.refresh("SP500") is None

    assert await reader.get("SP500") == {"symbol": "SP500", "price": 100.0, "call": 1}
    assert schedule.last_success is not None


async def test_get_when_failure_cached_then_raised_as_its_kind_until_a_success() -> None:
    reader, schedule, _ = _wired(["EMPTY"], here=False)
    await schedule.refresh("EMPTY")

    with pytest.raises(DataError, match="at least 60"):
        await reader.get("EMPTY")

    schedule.analyse = lambda symbol: {"symbol": symbol}
    await schedule.refresh("EMPTY")
    assert await reader.get("EMPTY") == {"symbol": "EMPTY"}
    assert await schedule.store.failure("EMPTY") is None


async def test_run_once_when_one_symbol_blows_up_then_the_others_still_refresh() -> None:
    reader, schedule, analyse = _wired(["BOOM", "SP500"], here=False)

    failed = await schedule.run_once()

    assert list(failed) == ["BOOM"]
    assert "ZeroDivisionError: float division by zero" in str(failed["BOOM"].error)
    assert analyse.calls == ["BOOM", "SP500"]
    assert (await reader.get("SP500"))["symbol"] == "SP500"
    with pytest.raises(FfeError, match="analysis of BOOM failed"):
        await reader.get("BOOM")


async def test_get_when_elsewhere_and_configured_symbol_not_cached_then_pending() -> None:
    reader, _, analyse = _wired(["SP500"], here=False)

    found = await reader.get("SP500")

    assert isinstance(found, Pending)
    assert found.retry_after_s == 5
    assert "`ffe precompute`" in found.detail
    assert analyse.calls == []  # nothing computed by the API


async def test_get_when_elsewhere_and_symbol_not_configured_then_404_names_setting() -> None:
    reader, _, analyse = _wired(["SP500"], here=False)

    with pytest.raises(NotFoundError, match=r"add NASDAQ to precompute\.symbols"):
        await reader.get("NASDAQ")

    assert analyse.calls == []


@pytest.mark.parametrize("here", [False, True])
async def test_get_when_symbol_has_no_bars_then_404_and_nothing_started(here: bool) -> None:
    reader, schedule, analyse = _wired(["SP500"], here=here)

    with pytest.raises(NotFoundError, match="no bars for symbol 'MADEUP'"):
        await reader.get("MADEUP")

    assert not schedule.refreshing("MADEUP")
    assert analyse.calls == []
    assert schedule.failures == {}


async def test_get_when_here_and_not_cached_then_pending_and_computed_once() -> None:
    reader, schedule, analyse = _wired([], here=True)
    analyse.hold.clear()

    first = await reader.get("NASDAQ")
    second = await reader.get("NASDAQ")  # while the first analysis runs
    analyse.hold.set()
    failure = await schedule.refresh_soon("NASDAQ")

    assert isinstance(first, Pending)
    assert first.retry_after_s == 2
    assert isinstance(second, Pending)
    assert failure is None
    assert analyse.calls == ["NASDAQ"]
    assert (await reader.get("NASDAQ"))["symbol"] == "NASDAQ"


async def test_get_when_here_and_analysis_failed_then_raised_until_retry_is_due() -> None:
    reader, schedule, analyse = _wired([], here=True)
    await schedule.refresh("EMPTY")

    with pytest.raises(DataError):
        await reader.get("EMPTY")
    assert analyse.calls == ["EMPTY"]  # not retried within RETRY_FAILED_S

    old = schedule.failures["EMPTY"]
    schedule.failures["EMPTY"] = type(old)(old.error, old.failed_at - 61)
    await schedule.store.cache.delete("analysis-failed:EMPTY")
    assert isinstance(await reader.get("EMPTY"), Pending)
    await schedule.refresh_soon("EMPTY")
    assert analyse.calls == ["EMPTY", "EMPTY"]


async def test_get_when_here_and_cache_lost_then_this_process_answers_its_own() -> None:
    reader, schedule, _ = _wired(["SP500"], here=True)
    await schedule.refresh("SP500")

    await schedule.store.cache.delete("analysis:SP500")  # a Redis outage reads as a miss

    assert (await reader.get("SP500"))["symbol"] == "SP500"


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts heap settles instead of freezing the test process's heap."""
    calls: list[int] = []
    monkeypatch.setattr("ffe.service.heap.settle", lambda: calls.append(1))
    return calls


async def test_run_when_stop_set_during_an_analysis_then_it_finishes_stored_and_run_ends(
    settled: list[int],
) -> None:
    reader, schedule, analyse = _wired(["SP500", "NASDAQ"], here=False)
    analyse.hold.clear()
    stop = asyncio.Event()
    running = asyncio.create_task(schedule.run(stop))
    await asyncio.to_thread(analyse.started.wait, 10)

    stop.set()
    analyse.hold.set()
    await asyncio.wait_for(running, 10)

    assert analyse.calls == ["SP500"]  # NASDAQ was not started after the stop
    assert (await reader.get("SP500"))["symbol"] == "SP500"


async def test_run_when_waiting_for_next_round_then_stop_ends_it_at_once(
    settled: list[int],
) -> None:
    _, schedule, analyse = _wired(["SP500"], here=False)
    stop = asyncio.Event()
    running = asyncio.create_task(schedule.run(stop))
    async with asyncio.timeout(10):
        while not settled:  # the first round is over: the heap is settled once
            await asyncio.sleep(0.01)

    stop.set()
    await asyncio.wait_for(running, 2)  # the interval is 300 s

    assert analyse.calls == ["SP500"]
    assert settled == [1]


async def test_refresh_when_metrics_then_counted_by_symbol_and_result() -> None:
    metrics = Metrics()
    _, schedule, _ = _wired(["SP500", "EMPTY"], here=False, metrics=metrics)

    await schedule.run_once()

    sample = metrics.registry.get_sample_value
    assert sample("ffe_analysis_refreshes_total", {"symbol": "SP500", "result": "ok"}) == 1
    assert sample("ffe_analysis_refreshes_total", {"symbol": "EMPTY", "result": "failed"}) == 1
    assert sample("ffe_analysis_duration_seconds_count") == 2
    last = sample("ffe_analysis_last_success_timestamp_seconds", {"symbol": "SP500"})
    assert last == pytest.approx(schedule.last_success)
    assert sample("ffe_analysis_last_success_timestamp_seconds", {"symbol": "EMPTY"}) is None
