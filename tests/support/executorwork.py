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


def ensemble_pool(shared: int, item: int) -> int:
    """Decisions of an ensemble asked for ``shared`` workers, here, where starting a process
    pool raises."""
    from ffe.compute import executor
    from ffe.data import SyntheticMarket
    from ffe.decide.ensemble import EnsembleStrategy

    market = SyntheticMarket(1, 260, seed=item).to_market()
    strategy = EnsembleStrategy(models="naive,drift", window=150, refit_every=20, workers=shared)
    real, executor.ProcessPoolExecutor = executor.ProcessPoolExecutor, _no_pool  # type: ignore[assignment,misc]
    try:
        return len(strategy.explain(market.history()).decisions)
    finally:
        executor.ProcessPoolExecutor = real  # type: ignore[misc]


def _no_pool(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("a process pool was started")


def nested_session_pid(shared: None, item: int) -> tuple[int, int]:
    """This process's id, and the id of the process an executor session opened here ran an
    item in (the same: a pool's worker runs nested sessions itself)."""
    from ffe.compute import LocalExecutor

    with LocalExecutor(4).open(pid, None) as session:
        inner = session.submit(item).result()
    return os.getpid(), inner


def strategy_built(shared: None, spec: str) -> tuple[str, str | None, int]:
    """The name of the strategy ``spec`` names as built here, its file's SHA-256 and this
    process's id."""
    from ffe.decide.plugins import source_of
    from ffe.decide.strategy import make_strategy

    made = make_strategy(spec, {"lookback": 3})
    source = source_of(type(made))
    return made.name, None if source is None else source.sha256, os.getpid()
