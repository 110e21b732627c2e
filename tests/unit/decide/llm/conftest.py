"""The local LLM server (``tests/support/fake_llm.py``) as a fixture, and a series to ask
about."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
from tests.support.fake_llm import (
    BEHAVIOURS,
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    FakeLlmServer,
    answer_for,
    running_llm_server,
)

from ffe.forecast.base import Series

__all__ = ["BEHAVIOURS", "COMPLETION_TOKENS", "PROMPT_TOKENS", "FakeLlmServer", "answer_for"]


@pytest.fixture
def llm_server() -> Iterator[FakeLlmServer]:
    with running_llm_server() as server:
        yield server


SeriesFactory = Callable[..., Series]


def _make_series(
    n: int = 300, *, seed: int = 0, symbol: str = "SP500", start: str = "2010-01-04"
) -> Series:
    """A daily random walk of log prices around 1000."""
    rng = np.random.default_rng(seed)
    values = np.log(1000.0) + np.cumsum(rng.normal(0.0, 0.01, n))
    times = np.datetime64(start, "ns") + np.arange(n) * np.timedelta64(1, "D")
    return Series(symbol, values, times)


@pytest.fixture
def make_series() -> SeriesFactory:
    return _make_series
