"""The live clock on a fake venue in fake time: it waits for each bar to close by the venue's
clock, in slices that let commands through, trades only bars that arrive fresh, backs off
through outages and reports them, fills the gap as history, says when data is stale, ends at
``end``, resumes from a run's origin, and waits out a closed market without calling it stale."""

from __future__ import annotations

import asyncio
import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ffe.agent.feedclock import FeedClock, FeedClockOptions
from ffe.data.calendars import ExchangeSessions
from ffe.data.feed import FeedUnavailableError, LiveFeed
from ffe.domain.errors import ConfigError
from ffe.domain.timeframe import Timeframe

T0 = pd.Timestamp("2024-03-04 12:00:00", tz="UTC").timestamp()  # a Monday
SECOND = Timeframe.parse("1s")


class FakeTime:
    """The machine's clock (Unix seconds) and a sleep that moves it: by what was asked, or
    while before ``jump_until``, by up to ``jump`` (a long wait needs no thousands of
    slices in a test)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.sleeps: list[float] = []
        self.jump = 0.0
        self.jump_until = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        ahead = min(self.jump, self.jump_until - self.now)
        self.now += max(seconds, ahead)


class FakeVenue:
    """A venue whose bars of ``seconds`` are a known function of their number, whose clock is
    ``skew`` ahead of the machine's, down (FeedUnavailableError) between ``outage`` times, and
    which makes bars only where ``made`` says (always by default)."""

    name = "fake:venue"

    def __init__(self, time: FakeTime, seconds: int = 1, skew: float = 0.0) -> None:
        self.time, self.seconds, self.skew = time, seconds, skew
        self.outage: tuple[float, float] | None = None
        self.made = lambda start: True
        self.fetches: list[pd.Timestamp | None] = []
        self.closed = False

    def _check(self) -> None:
        if self.outage is not None and self.outage[0] <= self.time.now < self.outage[1]:
            raise FeedUnavailableError("fake venue down")

    async def venue_time(self) -> pd.Timestamp:
        self._check()
        return pd.Timestamp(self.time.now + self.skew, unit="s", tz="UTC")

    async def fetch(
        self, symbol: str, timeframe: Timeframe, since: Any = None, limit: Any = None
    ) -> pd.DataFrame:
        self._check()
        self.fetches.append(since)
        now = self.time.now + self.skew
        step = self.seconds
        first = int(since.timestamp()) if since is not None else int(T0) - 10_000 * step
        first += -first % step
        starts = [t for t in range(first, int(now) - step + 1, step) if self.made(t)]
        starts = starts[: limit or 1000]
        index = pd.DatetimeIndex(pd.to_datetime(starts, unit="s", utc=True), name="time")
        close = np.array([price(t) for t in starts], dtype=float)
        frame = {"open": close, "high": close + 1, "low": close - 1, "close": close}
        return pd.DataFrame({**frame, "volume": np.ones(len(starts))}, index=index)

    async def close(self) -> None:
        self.closed = True


def price(start: int) -> float:
    return 100.0 + math.sin(start / 7.0) * 5


def _clock(
    venue: LiveFeed, time: FakeTime, calendar: Any = None, **options: Any
) -> tuple[FeedClock, list[tuple[str, dict[str, Any]]]]:
    events: list[tuple[str, dict[str, Any]]] = []

    async def record(kind: str, text: str, data: dict[str, Any]) -> None:
        events.append((kind, data))

    settings = {"warmup": 5, "page": 4, **options}
    clock = FeedClock(
        venue,
        ["BTC/USDT"],
        Timeframe(venue.seconds, "s") if hasattr(venue, "seconds") else SECOND,
        FeedClockOptions(**settings),
        calendar,
        now=time,
        sleep=time.sleep,
    )
    clock.on_event = record
    return clock, events


async def _run(clock: FeedClock, bars: int, start: int = 0) -> list[tuple[int, bool, float]]:
    """Tick ``bars`` times: each bar, whether it is traded, and its price."""
    seen = []
    async for market, bar in clock.ticks(start):
        seen.append((bar, clock.tradable(bar), float(market.close[bar, 0])))
        if len(seen) == bars:
            break
    return seen


def _time_of(clock: FeedClock, bar: int) -> float:
    return clock.market.time_of(bar).timestamp()


async def test_ticks_when_bars_close_then_warmup_is_history_and_each_new_bar_traded_once():
    time = FakeTime(T0 + 0.6)
    venue = FakeVenue(time, skew=3.0)  # the venue's clock is 3 s ahead: it is the one obeyed
    clock, events = _clock(venue, time)

    market = await clock.prepare(None)
    seen = await _run(clock, 9)

    assert market is not None
    assert market.n_bars == 6  # the bars that closed in the last warmup + 1 intervals
    assert [bar for bar, _, _ in seen] == list(range(9))
    assert [traded for _, traded, _ in seen] == [False] * 6 + [True] * 3
    for bar, _, close in seen:
        assert close == price(int(_time_of(clock, bar)))
    venue_now = time.now + 3.0
    newest_close = _time_of(clock, 8) + 1
    assert 0 <= venue_now - newest_close < 0.5  # ticked just after it closed, by the venue
    assert max(time.sleeps) <= 0.25
    assert events == []  # nothing went wrong: nothing to report


async def test_wait_when_idle_asks_to_end_then_ticks_end_within_a_slice():
    time = FakeTime(T0 + 0.3)
    venue = FakeVenue(time, seconds=60)
    clock, _ = _clock(venue, time)
    await clock.prepare(None)
    asked = []

    async def idle() -> bool:
        asked.append(time.now)
        return len(asked) >= 4  # a stop arrives during the wait for the next minute bar

    clock.idle = idle
    seen = await _run(clock, 100)

    assert [traded for _, traded, _ in seen] == [False] * 6
    assert len(asked) == 4
    assert all(b - a <= 0.25 + 1e-9 for a, b in itertools.pairwise(asked))
    assert time.now - T0 < 2  # not a minute: it ended at once


async def test_outage_then_backoff_doubles_to_its_cap_then_gap_filled_as_history():
    time = FakeTime(T0 + 0.3)
    venue = FakeVenue(time)
    clock, events = _clock(venue, time, backoff_s=0.5, backoff_max_s=2.0, stale_bars=2.0)
    await clock.prepare(None)
    await _run(clock, 7)  # the warm-up and one live bar
    venue.outage = (time.now, time.now + 9.0)
    down_at = time.now

    seen = await _run(clock, 12, start=7)

    kinds = [kind for kind, _ in events]
    assert kinds[:2] == ["feed_down", "stale"]
    assert kinds[2:] == ["feed_up", "gap_filled", "fresh"]
    gap = events[3][1]
    traded = [bar for bar, ok, _ in seen if ok]
    history = [bar for bar, ok, _ in seen if not ok]
    assert gap["bars"] == len(history) >= 8  # the bars that closed while it was down
    assert history == list(range(7, 7 + len(history)))
    assert traded
    assert traded[0] == history[-1] + 1  # trading again from the next fresh bar
    assert events[2][1]["down_s"] >= 0
    waits = [s for s in time.sleeps if s > 0.25]
    assert waits == []  # every wait in slices, backoff included
    assert time.now - down_at < 9.0 + 2.0 + 1.5  # back within one capped backoff of the end
    assert clock.feed_down_since is None


async def test_backoff_when_outage_lasts_then_tries_double_up_to_the_cap():
    time = FakeTime(T0 + 0.3)
    venue = FakeVenue(time)
    clock, _ = _clock(venue, time, backoff_s=0.5, backoff_max_s=2.0)
    await clock.prepare(None)
    await _run(clock, 6)
    tries: list[float] = []
    real_fetch = venue.venue_time

    async def counted() -> pd.Timestamp:
        tries.append(time.now)
        return await real_fetch()

    venue.venue_time = counted  # type: ignore[method-assign]
    venue.outage = (time.now, time.now + 12.0)

    await _run(clock, 1, start=6)

    gaps = np.diff([t for t in tries if t < venue.outage[1]])
    assert gaps[0] == pytest.approx(0.5, abs=0.3)
    assert gaps[1] == pytest.approx(1.0, abs=0.3)
    assert max(gaps) == pytest.approx(2.0, abs=0.3)


async def test_no_new_bar_when_venue_lags_then_stale_once_then_fresh():
    time = FakeTime(T0 + 0.3)
    venue = FakeVenue(time)
    clock, events = _clock(venue, time, stale_bars=2.0)
    await clock.prepare(None)
    await _run(clock, 6)
    published = venue.made
    cut = time.now + 1
    venue.made = lambda start: start < cut or time.now > cut + 6  # nothing new for 6 s

    seen = await _run(clock, 12, start=6)

    kinds = [kind for kind, _ in events]
    assert kinds == ["stale", "gap_filled", "fresh"]
    assert events[0][1]["behind_s"] > 2.0
    assert clock.stale is False
    history = [bar for bar, traded, _ in seen if not traded]
    assert len(history) == events[1][1]["bars"] == history[-1] - history[0] + 1
    assert all(traded for bar, traded, _ in seen if bar > history[-1])
    venue.made = published


async def test_end_when_reached_then_ticks_stop_and_finished():
    time = FakeTime(T0 + 0.3)
    venue = FakeVenue(time)
    end = pd.Timestamp(T0 + 3, unit="s", tz="UTC")
    clock, _ = _clock(venue, time, end=end)
    await clock.prepare(None)

    seen = await _run(clock, 100)

    assert clock.finished is True
    assert _time_of(clock, seen[-1][0]) == T0 + 3
    assert time.now - T0 < 6


async def test_prepare_when_origin_given_then_every_bar_since_is_history():
    time = FakeTime(T0 + 100.4)
    venue = FakeVenue(time)
    clock, events = _clock(venue, time)
    origin = pd.Timestamp(T0 + 10, unit="s", tz="UTC").to_pydatetime()

    market = await clock.prepare(origin)
    await clock.report_catch_up(40)

    assert market is not None
    assert market.n_bars == 90  # bars 10..99 s, in pages of 4
    assert _time_of(clock, 0) == T0 + 10
    assert clock.history_through == 89
    assert events == [
        ("caught_up", {"bars": 50, "from": events[0][1]["from"], "to": events[0][1]["to"]})
    ]
    assert events[0][1]["from"] == pd.Timestamp(T0 + 50, unit="s", tz="UTC").isoformat()


async def test_prepare_when_feed_down_then_retries_until_it_answers():
    time = FakeTime(T0 + 0.3)
    venue = FakeVenue(time)
    venue.outage = (0.0, T0 + 5)
    clock, events = _clock(venue, time, backoff_s=0.5, backoff_max_s=1.0)

    market = await clock.prepare(None)

    assert market is not None
    assert market.n_bars == 6
    assert [kind for kind, _ in events] == ["feed_down", "feed_up"]


async def test_market_closed_then_waits_for_the_next_session_without_calling_it_stale():
    friday_close = pd.Timestamp("2024-03-08 21:00", tz="UTC").timestamp()  # 16:00 New York
    time = FakeTime(friday_close - 90.5)
    venue = FakeVenue(time, seconds=60)
    calendar = ExchangeSessions("XNYS")
    venue.made = lambda start: (
        calendar.next_bar(pd.Timestamp(start, unit="s", tz="UTC"), 60)
        == pd.Timestamp(start, unit="s", tz="UTC")
    )
    clock, events = _clock(venue, time, calendar)
    await clock.prepare(None)
    friday = await _run(clock, 7)  # the warm-up, then 20:58 and 20:59, Friday's last
    monday_open = pd.Timestamp("2024-03-11 13:30", tz="UTC")  # 9:30 New York (EDT)
    time.jump, time.jump_until = 3600.0, monday_open.timestamp() + 60

    monday = await _run(clock, 1, start=7)

    assert [traded for _, traded, _ in friday] == [False] * 5 + [True] * 2
    assert clock.market.time_of(6) == pd.Timestamp("2024-03-08 20:59", tz="UTC")
    assert clock.market.time_of(7) == monday_open
    assert monday[0][1] is True  # the first bar of the week is traded: no gap, no staleness
    assert [kind for kind, _ in events] == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"slice_s": 2.0}, "slice_s"),
        ({"warmup": 0}, "warmup"),
        ({"backoff_s": 5.0, "backoff_max_s": 1.0}, "backoff"),
        (
            {
                "start": pd.Timestamp("2024-02-01", tz="UTC"),
                "end": pd.Timestamp("2024-01-01", tz="UTC"),
            },
            "before --start",
        ),
    ],
)
def test_options_when_out_of_range_then_config_error_says_which(options, message):
    with pytest.raises(ConfigError, match=message):
        FeedClockOptions(**options)


async def test_close_then_feed_closed():
    time = FakeTime()
    venue = FakeVenue(time)
    clock, _ = _clock(venue, time)

    await clock.close()

    assert venue.closed is True


async def test_request_when_venue_hangs_then_a_stop_still_ends_the_ticks_within_a_slice():
    time = FakeTime(T0 + 0.3)
    venue = FakeVenue(time)
    clock, _ = _clock(venue, time, slice_s=0.05)
    await clock.prepare(None)
    await _run(clock, 6)
    hung = asyncio.Event()

    async def hangs(*args: Any, **kwargs: Any) -> pd.DataFrame:
        hung.set()
        await asyncio.sleep(3600)
        raise AssertionError("never answers")

    venue.fetch = hangs  # type: ignore[method-assign]

    async def idle() -> bool:
        return hung.is_set()  # a stop arrives while the request hangs

    clock.idle = idle
    started = asyncio.get_running_loop().time()
    seen = await _run(clock, 1, start=6)

    assert seen == []
    assert asyncio.get_running_loop().time() - started < 1.0
