"""Functions for ``LocalExecutor`` tests. A spawned worker finds a function by module and name,
so they are defined here, not inside a test, and imported as the top-level module
``executorwork`` (as ``jobwork`` is, for the same reason)."""

from __future__ import annotations

import os
import time
from typing import Any

_UNPICKLED = [0]  # how many times this process received a ``Counted``


class Counted:
    """Shared data that counts, in each process, how often it arrives there."""

    def __init__(self, payload: int) -> None:
        self.payload = payload

    def __setstate__(self, state: dict[str, Any]) -> None:
        _UNPICKLED[0] += 1
        self.__dict__.update(state)


def scaled(shared: Counted, item: int) -> tuple[int, int, int]:
    """The item times the shared payload, with this process's id and receipt count."""
    time.sleep(0.01)
    return item * shared.payload, os.getpid(), _UNPICKLED[0]


def slow(shared: float, item: int) -> int:
    """The item, after ``shared`` seconds."""
    time.sleep(shared)
    return item


def pid(shared: None, item: int) -> int:
    """This process's id."""
    return os.getpid()


def nested(workers: int, item: int) -> tuple[int, list[int]]:
    """This process's id, and the process ids of a ``workers``-wide map run from here."""
    from ffe.compute import LocalExecutor, in_order

    inner = LocalExecutor(workers).map(pid, range(4), None)
    return os.getpid(), in_order(inner, 4)
