"""Fake venues on 127.0.0.1 for the feed tests, and feed options with short waits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tests.support.fake_binance import ORIGIN_MS, FakeBinanceFeed
from tests.support.venue import VenueClock

from ffe.data.feeds import FeedOptions

HOUR_MS = 3_600_000


def options(url: str | None, **overrides: Any) -> FeedOptions:
    """Feed options for tests: short timeouts and waits, ccxt's limiter at 1 ms."""
    values: dict[str, Any] = {
        "api_url": url,
        "api_key": None,
        "timeout_s": 2.0,
        "retries": 2,
        "backoff_s": 0.01,
        "max_backoff_s": 0.05,
        "rate_limit_ms": 1,
    }
    return FeedOptions(**{**values, **overrides})


@pytest.fixture
def binance() -> Iterator[FakeBinanceFeed]:
    """Binance's market data with the clock standing 100.5 hours after 2024-01-01."""
    fake = FakeBinanceFeed(VenueClock(ORIGIN_MS + 100 * HOUR_MS + HOUR_MS // 2))
    fake.start()
    yield fake
    fake.stop()
