"""How far a long command got and how fast: plain lines on stderr where a progress bar shows
nothing (a log file, a pipe, CI), the speed it achieved, and, after Ctrl-C, where it stopped
and the command that resumes it."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Protocol

EVERY_S = 10.0  # at most this long between two plain lines while bars come


class SteppedBar(Protocol):
    @property
    def bar(self) -> int: ...

    @property
    def time(self) -> datetime: ...


class BarPace:
    """Counts the bars a run steps in this process. With ``plain``, says a line at each tenth
    of a known total and at least every ``every_s`` seconds while bars come."""

    def __init__(
        self,
        say: Callable[[str], None],
        *,
        plain: bool,
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._say, self._plain, self._every_s, self._clock = say, plain, every_s, clock
        self._started = self._said = clock()  # until the first bar
        self.total: int | None = None
        self.stepped = 0
        self.last: SteppedBar | None = None
        self.interrupted = False  # set by the Ctrl-C handler
        self._tenth = 0

    def start(self, total: int | None) -> None:
        """A run (or a restart of it) opened, over ``total`` bars (None: a live feed)."""
        self.total = total
        if self._plain:
            self._say(f"agent: started, {total:,} bars to replay" if total else "agent: started")

    def bar(self, stepped: SteppedBar) -> None:
        now = self._clock()
        if self.stepped == 0:  # the speed of stepping, not of opening the run
            self._started = now
        self.stepped += 1
        self.last = stepped
        if not self._plain:
            return
        tenth = (stepped.bar + 1) * 10 // self.total if self.total else 0
        if tenth > self._tenth or now - self._said >= self._every_s:
            self._tenth, self._said = tenth, now
            self._say(f"agent: {self.where()}, {self.rate():,.0f} bars/s")

    def where(self) -> str:
        """``bar 1,234 of 5,000 (2008-12-01)``: the last bar finished (``no bar yet``)."""
        if self.last is None:
            return "no bar yet"
        of = f" of {self.total:,}" if self.total else ""
        return f"bar {self.last.bar + 1:,}{of} ({self.last.time:%Y-%m-%d})"

    def stopped(self) -> str:
        """Where a run stopped: ``after bar ...``, or ``before its first bar``."""
        return "before its first bar" if self.last is None else f"after {self.where()}"

    def rate(self) -> float:
        return self.stepped / max(self._clock() - self._started, 1e-9)

    def speed(self) -> str:
        """The speed achieved: ``stepped 1,000 bars in 2.5 s (400 bars/s)``."""
        elapsed = self._clock() - self._started
        return f"stepped {self.stepped:,} bars in {elapsed:,.1f} s ({self.rate():,.0f} bars/s)"


def resume_command(drop: Iterable[str] = ()) -> str:
    """The command this process was started with, without the options in ``drop`` (such as
    ``--fresh``, which would start over instead of resuming)."""
    dropped = set(drop)
    return shlex.join(["ffe", *(arg for arg in sys.argv[1:] if arg not in dropped)])
