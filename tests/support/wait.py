"""Waiting in tests for something that happens in the background (an agent's bar, a job)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = 60.0, every: float = 0.1) -> T:
    """``check()``'s first truthy answer, asked every ``every`` seconds; ``AssertionError``
    (naming what was awaited) when none comes within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() >= deadline:
            name = getattr(check, "__name__", repr(check))
            raise AssertionError(f"timed out after {timeout:g} s waiting for {name}")
        time.sleep(every)
