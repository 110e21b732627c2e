"""BarPace: plain lines at each tenth of a replay and at least every ``every_s`` seconds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ffe.cli.pace import BarPace

START = datetime(2020, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Bar:
    bar: int
    time: datetime


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _pace(plain: bool = True) -> tuple[BarPace, list[str], Clock]:
    said: list[str] = []
    clock = Clock()
    return BarPace(said.append, plain=plain, every_s=10.0, clock=clock), said, clock


def test_bar_pace_when_replay_then_a_line_at_each_tenth_with_the_speed():
    pace, said, clock = _pace()
    pace.start(100)

    for index in range(100):
        pace.bar(Bar(index, START + timedelta(days=index)))
        clock.now += 0.01

    assert said[0] == "agent: started, 100 bars to replay"
    assert said[1] == "agent: bar 10 of 100 (2020-01-10), 111 bars/s"
    assert [line.split(" of ")[0] for line in said[1:]] == [
        f"agent: bar {n}" for n in range(10, 101, 10)
    ]
    assert pace.speed() == "stepped 100 bars in 1.0 s (100 bars/s)"


def test_bar_pace_when_live_then_a_line_every_10_seconds_only():
    pace, said, clock = _pace()
    pace.start(None)

    for index in range(30):
        clock.now += 1.0
        pace.bar(Bar(index, START))

    assert said[0] == "agent: started"
    assert said[1:] == [f"agent: bar {n} (2020-01-01), 1 bars/s" for n in (10, 20, 30)]


def test_bar_pace_when_a_terminal_then_silent_but_still_counting():
    pace, said, _ = _pace(plain=False)
    pace.start(5)
    assert pace.stopped() == "before its first bar"

    pace.bar(Bar(3, START))

    assert said == []
    assert pace.stepped == 1
    assert pace.stopped() == "after bar 4 of 5 (2020-01-01)"
