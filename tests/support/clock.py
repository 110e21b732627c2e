"""A monotonic clock for tests: time stands still until the test moves it."""

from __future__ import annotations


class FakeClock:
    """Stands in for ``time.monotonic``: call it for the time, ``advance`` it to move on.

    It starts at 1000 s rather than 0, so code that treats 0 as "never" is not fooled.
    """

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back; got advance({seconds})")
        self.now += seconds
