"""An agent on a live feed while it waits for a minute bar to close: a pause and a stop reach it
within a second, its lease is renewed (and its heartbeat told) on a beat of its own, and a
restart resumes the run from its first bar, stepping the bars since as history."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.support.agents import sqlite_journal

from ffe.agent import persist
from ffe.agent.control import AgentService
from ffe.agent.feedclock import FeedClock, FeedClockOptions
from ffe.agent.record import RunSpec
from ffe.agent.runner import Agent
from ffe.agent.step import AgentConfig
from ffe.agent.stepper import stepper_for
from ffe.data.feed import FeedUnavailableError
from ffe.decide.strategy import make_strategy
from ffe.domain.errors import DataError
from ffe.domain.timeframe import Timeframe
from ffe.execution.paper import PaperBroker
from ffe.risk.engine import RiskEngine

MINUTE = Timeframe(1, "m")


class ClockedVenue:
    """Minute bars of one symbol, in real time: a bar is there once it has closed; the last
    ``keeps_s`` seconds of them only."""

    name = "fake:minutes"

    def __init__(self, keeps_s: int = 86_400) -> None:
        self.keeps_s = keeps_s

    async def venue_time(self) -> pd.Timestamp:
        return pd.Timestamp.now(tz="UTC")

    async def fetch(
        self, symbol: str, timeframe: Timeframe, since: Any = None, limit: Any = None
    ) -> pd.DataFrame:
        now = int(time.time())
        first = int(since.timestamp()) if since is not None else now - 3600
        first = max(first, now - self.keeps_s)
        first += -first % 60
        starts = list(range(first, now - 60 + 1, 60))[: limit or 1000]
        close = 100 + np.sin(np.array(starts, dtype=float) / 600.0)
        index = pd.DatetimeIndex(pd.to_datetime(starts, unit="s", utc=True), name="time")
        columns = {"open": close, "high": close + 1, "low": close - 1, "close": close}
        return pd.DataFrame({**columns, "volume": np.ones(len(starts))}, index=index)

    async def close(self) -> None:
        return None


@pytest.fixture
async def db(tmp_path):
    async with sqlite_journal(tmp_path) as database:
        yield database


def _agent(db: Any, venue: ClockedVenue | None = None) -> Agent:
    venue = venue or ClockedVenue()
    clock = FeedClock(venue, ["BTC/USDT"], MINUTE, FeedClockOptions(warmup=30))
    strategy = make_strategy("sma_cross", {"fast": 2, "slow": 5})
    config = AgentConfig(command_poll_s=0.05, lot_size=0.001)
    risk = RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=None)
    broker = PaperBroker(clock.market, config.fill, config.cash)
    spec = RunSpec(strategy="sma_cross", params={"fast": 2, "slow": 5})
    return Agent(
        db, clock.market, strategy, stepper_for(strategy, 50), broker, risk, clock, config, spec
    )


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)


async def test_live_agent_when_waiting_for_a_bar_then_commands_within_a_second_and_lease_beats(
    db, monkeypatch
):
    monkeypatch.setattr(persist, "LEASE_TTL", timedelta(seconds=0.6))  # renewed every 0.2 s
    agent = _agent(db)
    beats: list[float] = []
    agent.on_beat = lambda: beats.append(time.monotonic())
    service = AgentService(db)
    task = asyncio.create_task(agent.run())

    async def waiting() -> bool:
        return agent.core is not None and agent.core.last_bar >= 29  # the warm-up stepped

    await _until(waiting)
    sent = time.monotonic()
    await service.command("paper", "pause")

    async def paused() -> bool:
        state = await persist.get_state(db, "paper")
        return state is not None and state.status == "paused"

    await _until(paused, 1.0)
    paused_after = time.monotonic() - sent
    await asyncio.sleep(1.0)
    sent = time.monotonic()
    await service.command("paper", "stop")
    report = await asyncio.wait_for(task, 1.0)
    stopped_after = time.monotonic() - sent

    assert paused_after < 1.0
    assert stopped_after < 1.0
    assert report.status == "interrupted"
    assert 30 <= report.bars <= 31  # the warm-up (and a bar if a minute turned meanwhile)
    assert len(beats) >= 4  # the lease renewed while the agent waited (no flush meanwhile)
    state = await persist.get_state(db, "paper")
    assert state is not None
    assert state.checkpoint["origin"] == agent.market.time_of(0).isoformat()


async def test_restart_when_run_resumed_then_bars_from_its_origin_and_the_rest_history(db):
    first = _agent(db)
    task = asyncio.create_task(first.run())

    async def warmed() -> bool:
        return first.core is not None and first.core.last_bar >= 29

    await _until(warmed)
    first.request_stop()
    await asyncio.wait_for(task, 2.0)
    origin = first.market.time_of(0)
    second = _agent(db)
    events: list[Any] = []
    second.watch(on_event=events.append)
    task = asyncio.create_task(second.run())

    async def resumed() -> bool:
        return second.core is not None and second.core.last_bar >= 29

    await _until(resumed)
    second.request_stop()
    report = await asyncio.wait_for(task, 2.0)

    assert report.resumed is True
    assert second.market.time_of(0) == origin  # bar numbers mean what they meant
    assert report.first_bar == 30
    assert all(
        event.data.get("event") != "caught_up" or event.data["bars"] <= 1 for event in events
    )


async def test_live_agent_when_emergency_stop_while_waiting_then_halted_within_a_second(db):
    agent = _agent(db)
    task = asyncio.create_task(agent.run())

    async def waiting() -> bool:
        return agent.core is not None and agent.core.last_bar >= 29

    await _until(waiting)
    sent = time.monotonic()
    await AgentService(db).command("paper", "emergency_stop", actor="alice")

    async def halted() -> bool:
        state = await persist.get_state(db, "paper")
        return state is not None and state.status == "halted"

    await _until(halted, 1.0)
    halted_after = time.monotonic() - sent
    agent.request_stop()
    await asyncio.wait_for(task, 1.0)

    assert halted_after < 1.0
    assert agent.emergency == "emergency stop by alice"


async def test_restart_when_the_venue_no_longer_has_the_runs_bars_then_refused_saying_fresh(db):
    first = _agent(db)
    task = asyncio.create_task(first.run())

    async def warmed() -> bool:
        return first.core is not None and first.core.last_bar >= 29

    await _until(warmed)
    first.request_stop()
    await asyncio.wait_for(task, 2.0)
    forgetful = _agent(db, ClockedVenue(keeps_s=600))  # ten minutes of history, not thirty

    with pytest.raises(DataError, match=r"no longer has the bars of the run.*--fresh"):
        await asyncio.wait_for(forgetful.run(), 5.0)


class DownVenue(ClockedVenue):
    """A venue that never answers."""

    async def venue_time(self) -> pd.Timestamp:
        raise FeedUnavailableError("fake venue down")


async def test_start_when_the_feed_is_down_then_it_waits_and_a_stop_ends_it_with_no_run(db):
    agent = _agent(db, DownVenue())
    events: list[Any] = []
    agent.watch(on_event=events.append)
    task = asyncio.create_task(agent.run())
    await asyncio.sleep(0.5)
    still_waiting = not task.done()

    agent.request_stop()
    report = await asyncio.wait_for(task, 1.0)

    assert still_waiting
    assert (report.run_id, report.status, report.bars) == ("", "stopped", 0)
    assert [e.data["event"] for e in events] == ["feed_down"]
    state = await persist.get_state(db, "paper")
    assert state is not None
    assert state.owner is None  # the lease was given back
