"""Clocks: the replay clock walks stored bars (paced when asked), the polling clock ticks once
for every new bar a data source returns and keeps bar positions valid as its market grows."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from ffe.agent import clock as clock_module
from ffe.agent.clock import PollingClock, ReplayClock
from ffe.domain.errors import ConfigError, DataError
from ffe.domain.market import MarketData


class FakeTime:
    """Stands in for the clock module's ``time``: ``monotonic`` only moves when slept."""

    def __init__(self) -> None:
        self.now = 5_000.0

    def monotonic(self) -> float:
        return self.now


class FakeSleep:
    """Records every requested sleep; advances a FakeTime by it when given one."""

    def __init__(self, time: FakeTime | None = None) -> None:
        self.requests: list[float] = []
        self._time = time

    async def __call__(self, seconds: float) -> None:
        self.requests.append(seconds)
        if self._time is not None:
            self._time.now += seconds


class FakeSource:
    """Answers each fetch with the next item: a MarketData, or an exception to raise."""

    def __init__(self, answers: Sequence[MarketData | Exception]) -> None:
        self._answers = list(answers)
        self.fetches = 0

    async def __call__(self) -> MarketData:
        answer = self._answers[min(self.fetches, len(self._answers) - 1)]
        self.fetches += 1
        if isinstance(answer, Exception):
            raise answer
        return answer


def _all_bars(n: int = 8, symbols: tuple[str, ...] = ("A", "B")) -> MarketData:
    closes = 100.0 + np.arange(n * len(symbols), dtype=float).reshape(n, len(symbols))
    return MarketData(
        symbols,
        np.datetime64("2024-01-01", "ns") + np.arange(n) * np.timedelta64(1, "D"),
        open=closes - 0.5,
        high=closes + 1.0,
        low=closes - 1.0,
        close=closes,
        volume=np.ones_like(closes),
    )


async def _collect(
    clock: ReplayClock | PollingClock, start: int = 0
) -> list[tuple[MarketData, int]]:
    return [tick async for tick in clock.ticks(start)]


# -- replay ---------------------------------------------------------------------------------


async def test_replay_ticks_when_no_speed_then_every_bar_from_start_without_sleeping():
    market, sleep = _all_bars(6), FakeSleep()
    clock = ReplayClock(market, sleep=sleep)

    ticks = await _collect(clock, start=2)

    assert [bar for _, bar in ticks] == [2, 3, 4, 5]
    assert all(seen is market for seen, _ in ticks)
    assert sleep.requests == []
    assert clock.live is False


async def test_replay_ticks_when_start_past_end_then_no_ticks():
    assert await _collect(ReplayClock(_all_bars(3)), start=3) == []


async def test_replay_ticks_when_speed_given_then_sleeps_one_period_per_bar(monkeypatch):
    fake_time = FakeTime()
    monkeypatch.setattr(clock_module, "time", fake_time)
    market, sleep = _all_bars(8), FakeSleep(fake_time)
    clock = ReplayClock(market, speed=4.0, sleep=sleep)

    ticks = await _collect(clock)

    assert len(ticks) == 8
    assert sum(sleep.requests) == pytest.approx(8 / 4.0)
    assert sleep.requests == pytest.approx([0.25] * 8)


async def test_replay_ticks_when_steps_run_late_then_later_sleeps_make_up_for_it(monkeypatch):
    fake_time = FakeTime()
    monkeypatch.setattr(clock_module, "time", fake_time)
    sleep = FakeSleep(fake_time)
    clock = ReplayClock(_all_bars(4), speed=2.0, sleep=sleep)

    async for _, bar in clock.ticks(0):
        if bar == 0:
            fake_time.now += 0.3  # a slow step: the next wait is shorter by as much

    assert sleep.requests == pytest.approx([0.5, 0.2, 0.5, 0.5])
    assert fake_time.now - 5_000.0 == pytest.approx(4 / 2.0)


@pytest.mark.parametrize("speed", [0.0, -1.0, math.nan])
def test_replay_clock_when_speed_not_positive_then_config_error(speed):
    with pytest.raises(ConfigError, match="speed must be a positive"):
        ReplayClock(_all_bars(2), speed=speed)


# -- polling --------------------------------------------------------------------------------


async def test_polling_ticks_when_market_grows_then_each_new_bar_once_and_indices_valid():
    full = _all_bars(8)
    source = FakeSource(
        [
            full.select(0, 3),
            full.select(0, 5),
            full.select(0, 5),  # nothing new
            DataError("source down"),
            full.select(0, 8),
        ]
    )
    sleep = FakeSleep()
    clock = PollingClock(source, 60.0, sleep=sleep, max_polls=5)

    ticks = await _collect(clock)

    assert [bar for _, bar in ticks] == list(range(8))
    for market, bar in ticks:
        assert bar < market.n_bars
        assert market.times[bar] == full.times[bar]
        assert market.close[bar].tolist() == full.close[bar].tolist()
    sizes = [market.n_bars for market, _ in ticks]
    assert sizes == sorted(sizes)
    assert clock.market is not None
    assert clock.market.n_bars == 8
    assert source.fetches == 5
    assert sleep.requests == [60.0] * 5


async def test_polling_ticks_when_source_returns_latest_window_then_older_bars_kept():
    full = _all_bars(6)
    source = FakeSource([full.select(0, 3), full.select(2, 5), full.select(3, 6)])
    clock = PollingClock(source, 1.0, sleep=FakeSleep(), max_polls=3)

    ticks = await _collect(clock)

    assert [bar for _, bar in ticks] == [0, 1, 2, 3, 4, 5]
    assert clock.market is not None
    assert clock.market.times.tolist() == full.times.tolist()
    np.testing.assert_array_equal(clock.market.open, full.open)
    for market, bar in ticks:
        assert market.times[bar] == full.times[bar]


async def test_polling_ticks_when_start_given_then_older_bars_not_ticked():
    full = _all_bars(6)
    source = FakeSource([full.select(0, 4), full])
    clock = PollingClock(source, 1.0, sleep=FakeSleep(), max_polls=2)

    ticks = await _collect(clock, start=3)

    assert [bar for _, bar in ticks] == [3, 4, 5]


async def test_polling_ticks_when_first_fetch_fails_then_waits_and_goes_on():
    full = _all_bars(3)
    source = FakeSource([DataError("not yet"), full])
    sleep = FakeSleep()
    clock = PollingClock(source, 5.0, sleep=sleep, max_polls=2)

    ticks = await _collect(clock)

    assert [bar for _, bar in ticks] == [0, 1, 2]
    assert sleep.requests == [5.0, 5.0]


async def test_polling_ticks_when_first_fetch_has_no_bars_then_later_bars_still_ticked():
    full = _all_bars(3)
    source = FakeSource([full.select(0, 0), full, full.select(0, 0)])
    clock = PollingClock(source, 1.0, sleep=FakeSleep(), max_polls=3)

    ticks = await _collect(clock)

    assert [bar for _, bar in ticks] == [0, 1, 2]
    assert clock.market is not None
    assert clock.market.n_bars == 3


async def test_polling_ticks_when_symbols_change_then_data_error():
    first = _all_bars(3, ("A", "B"))
    other = _all_bars(4, ("A", "C"))
    clock = PollingClock(FakeSource([first, other]), 1.0, sleep=FakeSleep(), max_polls=2)

    with pytest.raises(DataError, match="changed symbols"):
        await _collect(clock)


async def test_polling_ticks_when_max_polls_reached_then_stops():
    source = FakeSource([_all_bars(2)])
    clock = PollingClock(source, 1.0, sleep=FakeSleep(), max_polls=3)

    ticks = await _collect(clock)

    assert [bar for _, bar in ticks] == [0, 1]
    assert source.fetches == 3
    assert clock.live is True


@pytest.mark.parametrize("interval", [0.0, -5.0, math.nan])
def test_polling_clock_when_interval_not_positive_then_config_error(interval):
    with pytest.raises(ConfigError, match="polling interval must be positive"):
        PollingClock(FakeSource([_all_bars(2)]), interval)


async def test_polling_wait_when_idle_hook_set_then_sliced_and_ends_when_it_says_so():
    full = _all_bars(3)
    sleep = FakeSleep()
    clock = PollingClock(FakeSource([full]), 2.0, sleep=sleep)
    asked = []

    async def idle() -> bool:
        asked.append(len(sleep.requests))
        return len(asked) > 5  # a stop command, during the wait for the next poll

    clock.idle = idle
    ticks = await _collect(clock)

    assert [bar for _, bar in ticks] == [0, 1, 2]
    assert sleep.requests == [0.25] * 5  # slices of the 2 s interval, then it ended
    assert clock.finished is False


async def test_polling_ticks_when_end_given_then_bars_after_it_not_ticked_and_finished():
    full = _all_bars(6)
    source = FakeSource([full.select(0, 2), full])
    end = full.time_of(3)
    now = end.timestamp() - 10  # the end is ahead when the polls begin

    def clock_now() -> float:
        return now + 5 * source.fetches  # 5 s later with every poll

    clock = PollingClock(source, 1.0, sleep=FakeSleep(), max_polls=5, end=end, now=clock_now)

    ticks = await _collect(clock)

    assert [bar for _, bar in ticks] == [0, 1, 2, 3]
    assert clock.finished is True
    assert source.fetches == 2


async def test_polling_ticks_when_end_passed_and_no_bar_after_it_then_finished_at_once():
    full = _all_bars(3)
    source = FakeSource([full])
    end = full.time_of(2)  # a Saturday, say: no later bar will come to tell the end
    clock = PollingClock(source, 1.0, sleep=FakeSleep(), max_polls=5, end=end)

    ticks = await _collect(clock)

    assert [bar for _, bar in ticks] == [0, 1, 2]
    assert clock.finished is True
    assert source.fetches == 1
