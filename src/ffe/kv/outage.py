"""Whether Redis is down, shared by the Redis backends.

A dead Redis must cost the API little: the first failure is logged once, and until Redis
answers again only one call per ``retry_after_s`` tries it; the others take the in-process
path at once instead of each waiting for a connect timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

#: The errors that mean "Redis is not usable right now". redis-py raises its own
#: ConnectionError and TimeoutError (both RedisError); raw socket errors and asyncio
#: timeouts can escape it on some paths, so they count too.
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


class Outage:
    """The state of one Redis server as the backends see it: up, or down since a failure."""

    def __init__(
        self,
        *,
        retry_after_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._retry_after_s = retry_after_s
        self._clock = clock
        self._down = False
        self._next_try = 0.0

    @property
    def down(self) -> bool:
        """True from a failure until the next success."""
        return self._down

    @property
    def retry_after_s(self) -> float:
        """How long after a failure Redis is tried again."""
        return self._retry_after_s

    def should_try(self) -> bool:
        """Whether this call should use Redis: always while up; while down, once per pause."""
        if not self._down:
            return True
        now = self._clock()
        if now < self._next_try:
            return False
        # Only the first caller after the pause probes; the others keep the fallback.
        self._next_try = now + self._retry_after_s
        return True

    def failed(self, error: BaseException) -> None:
        """Record a failed call; the first one of an outage is logged as a warning."""
        self._next_try = self._clock() + self._retry_after_s
        if self._down:
            logger.debug("redis still unreachable: %s: %s", type(error).__name__, error)
            return
        self._down = True
        logger.warning(
            "redis unreachable (%s: %s): the cache misses, rate limits count in this process "
            "and events reach this process only, until it answers again",
            type(error).__name__,
            error,
        )

    def succeeded(self) -> None:
        """Record a successful call; ends an outage, with a log line saying so."""
        if self._down:
            self._down = False
            logger.info("redis reachable again: cache, rate limits and events shared again")
