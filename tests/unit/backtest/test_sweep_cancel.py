"""A sweep asked to stop runs no further point: in process, and across worker processes; on
the batch kernel, whose tasks hold many points, none is reported after the flag."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from ffe.backtest import sweep
from ffe.backtest.engine import BacktestConfig
from ffe.backtest.sweep import SweepRow, SweepStoppedError, combinations, run_sweep
from ffe.data import SyntheticMarket
from ffe.risk import RiskEngine


def _sweep(
    market: Any,
    grid: list[dict[str, Any]],
    cancel: threading.Event,
    on_done: Callable[[SweepRow], None],
    jobs: int = 1,
    batch: bool = False,
) -> list[SweepRow]:
    risk = RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=None)
    return run_sweep(
        market, "sma_cross", grid, BacktestConfig(), risk,
        jobs=jobs, on_done=on_done, cancel=cancel, batch=batch,
    )  # fmt: skip


def test_run_sweep_when_cancel_set_after_first_point_then_no_further_point_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    market = SyntheticMarket(1, 300, seed=8).to_market()
    grid = combinations({"fast": [2, 3, 4, 5, 6], "slow": [20, 30]})
    cancel = threading.Event()
    ran: list[dict[str, object]] = []
    real = sweep._run_point

    def counted(setup: Any, params: dict[str, object]) -> SweepRow:
        ran.append(params)
        return real(setup, params)

    monkeypatch.setattr(sweep, "_run_point", counted)

    with pytest.raises(SweepStoppedError, match="after 1 of 10 points"):
        _sweep(market, grid, cancel, lambda _: cancel.set(), jobs=1)

    assert ran == [grid[0]]


def test_run_sweep_when_cancel_set_during_a_kernel_task_then_no_further_row_reported() -> None:
    market = SyntheticMarket(1, 300, seed=8).to_market()
    grid = combinations({"fast": [2, 3, 4, 5, 6], "slow": [20, 30]})
    cancel = threading.Event()
    seen: list[SweepRow] = []

    def first_then_stop(row: SweepRow) -> None:
        seen.append(row)
        cancel.set()

    with pytest.raises(SweepStoppedError, match="after 1 of 10 points"):
        _sweep(market, grid, cancel, first_then_stop, jobs=1, batch=True)

    assert [row.params for row in seen] == [grid[0]]


def test_run_sweep_when_cancel_set_before_start_then_nothing_runs() -> None:
    market = SyntheticMarket(1, 300, seed=8).to_market()
    grid = combinations({"fast": [5, 10], "slow": [30]})
    cancel = threading.Event()
    cancel.set()
    seen: list[SweepRow] = []

    with pytest.raises(SweepStoppedError, match="after 0 of 2 points"):
        _sweep(market, grid, cancel, seen.append, jobs=1)

    assert seen == []


def test_run_sweep_when_cancel_set_after_last_point_then_every_row_returned() -> None:
    market = SyntheticMarket(1, 300, seed=8).to_market()
    grid = combinations({"fast": [5, 10], "slow": [30]})
    cancel = threading.Event()

    def stop_on_last(row: SweepRow) -> None:
        if row.params == grid[-1]:
            cancel.set()

    rows = _sweep(market, grid, cancel, stop_on_last, jobs=1)

    assert [row.params for row in rows] == grid


def test_run_sweep_when_cancel_set_in_worker_processes_then_rest_of_grid_dropped() -> None:
    # 2,400 points of about 10 ms each: over ten seconds on two cores if run to the end
    market = SyntheticMarket(1, 2000, seed=3).to_market()
    grid = combinations({"fast": list(range(2, 62)), "slow": list(range(62, 102))})
    cancel = threading.Event()
    seen: list[SweepRow] = []
    stopped_at = [0.0]

    def first_then_stop(row: SweepRow) -> None:
        seen.append(row)
        stopped_at[0] = time.monotonic()
        cancel.set()

    with pytest.raises(SweepStoppedError):
        _sweep(market, grid, cancel, first_then_stop, jobs=2)

    assert len(seen) == 1  # nothing reported after the flag
    assert time.monotonic() - stopped_at[0] < 6.0  # only the points the workers held ran
