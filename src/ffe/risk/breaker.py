"""A circuit breaker: stop calling a failing service for a while, then probe it once.

Closed, calls pass. ``failure_threshold`` failures within ``window_s`` seconds open it: calls
are refused for ``cooldown_s`` seconds. Then it is half-open: one probe call passes; its
success closes the breaker, its failure opens it again for another cooldown.

The breaker only counts: the caller asks ``allow()`` (or ``check()``) before a call and
reports the outcome with ``record_success()`` or ``record_failure()``. Failures count while
they are inside the window, whatever succeeded between them. It guards any synchronous call
(an LLM server, a broker) and is safe to share between threads.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from ffe.domain.errors import FfeError

BreakerState = Literal["closed", "open", "half_open"]
Clock = Callable[[], float]


class CircuitOpenError(FfeError):
    """The circuit is open: the service failed repeatedly; retry after the cooldown."""

    def __init__(self, name: str, retry_in_s: float) -> None:
        self.name = name
        self.retry_in_s = retry_in_s
        super().__init__(
            f"{name}: circuit open after repeated failures; next attempt in {retry_in_s:.0f}s"
        )


class CircuitBreaker:
    """Counts failures of one service and refuses calls while it is open."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        window_s: float = 60.0,
        cooldown_s: float = 30.0,
        clock: Clock = time.monotonic,
        name: str = "service",
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold}")
        if window_s <= 0 or cooldown_s < 0:
            raise ValueError("window_s must be positive and cooldown_s not negative")
        self.name = name
        self._threshold = failure_threshold
        self._window_s = window_s
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: deque[float] = deque()
        self._opened_at: float | None = None
        self._probe_started_at: float | None = None

    @property
    def state(self) -> BreakerState:
        """``closed``, ``open``, or ``half_open`` once the cooldown has passed."""
        with self._lock:
            return self._state(self._clock())

    def _state(self, now: float) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if now - self._opened_at < self._cooldown_s:
            return "open"
        return "half_open"

    def allow(self) -> bool:
        """Whether a call may go ahead now. Half-open, only one probe at a time passes."""
        with self._lock:
            now = self._clock()
            state = self._state(now)
            if state == "closed":
                return True
            if state == "open":
                return False
            # A probe whose outcome was never reported must not block the breaker forever.
            started = self._probe_started_at
            if started is not None and now - started < self._cooldown_s:
                return False
            self._probe_started_at = now
            return True

    def check(self) -> None:
        """Like ``allow()``, but raise CircuitOpenError when the call may not go ahead."""
        if not self.allow():
            raise CircuitOpenError(self.name, self.retry_in())

    def retry_in(self) -> float:
        """Seconds until the next probe may pass (0 when calls may go ahead)."""
        with self._lock:
            now = self._clock()
            if self._opened_at is None:
                return 0.0
            started = self._probe_started_at
            start = self._opened_at if started is None else started
            return max(0.0, start + self._cooldown_s - now)

    def record_success(self) -> None:
        """The call succeeded: a half-open breaker closes and forgets past failures."""
        with self._lock:
            if self._opened_at is not None:
                self._close()

    def record_failure(self) -> None:
        """The call failed: a half-open breaker reopens; a closed one opens at the threshold."""
        with self._lock:
            now = self._clock()
            state = self._state(now)
            if state == "half_open":
                self._open(now)
                return
            if state == "open":
                return  # a call that started before the breaker opened
            self._failures.append(now)
            while self._failures and now - self._failures[0] > self._window_s:
                self._failures.popleft()
            if len(self._failures) >= self._threshold:
                self._open(now)

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._probe_started_at = None
        self._failures.clear()

    def _close(self) -> None:
        self._opened_at = None
        self._probe_started_at = None
        self._failures.clear()
