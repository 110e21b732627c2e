from __future__ import annotations

import pytest

from ffe.backtest.engine import BacktestConfig, run_backtest
from ffe.backtest.sweep import _tasks, combinations, parse_grid, parse_range, run_sweep
from ffe.data import SyntheticMarket
from ffe.decide import make_strategy
from ffe.domain import ConfigError
from ffe.risk import RiskEngine


def test_parse_grid_when_lists_and_ranges_then_expanded_with_stop_included() -> None:
    grid = parse_grid(["fast=5,10", "slow=20..60:20", "top=0.1..0.3:0.1"])

    assert grid == {"fast": [5, 10], "slow": [20, 40, 60], "top": [0.1, 0.2, 0.3]}
    assert len(combinations(grid)) == 18


@pytest.mark.parametrize("spec", ["fast", "fast=", "=1,2", "slow=60..20:5", "slow=1..5:0"])
def test_parse_grid_when_malformed_then_config_error(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_grid([spec])


def test_parse_range_when_range_then_bounds_and_step_else_none() -> None:
    assert parse_range("fast", "5..60") == (5.0, 60.0, None)
    assert parse_range("top", "0.1..0.5:0.1") == (0.1, 0.5, 0.1)
    assert parse_range("fast", "5,10") is None
    with pytest.raises(ConfigError, match="go up"):
        parse_range("slow", "60..20")


def test_combinations_when_grid_too_large_then_refused() -> None:
    with pytest.raises(ConfigError, match="combinations"):
        combinations({"a": list(range(1000)), "b": list(range(1000))})


@pytest.mark.parametrize("jobs", [1, 2])
def test_run_sweep_when_grid_then_each_row_matches_a_single_backtest(jobs: int) -> None:
    market = SyntheticMarket(1, 300, seed=8).to_market()
    config, risk = (
        BacktestConfig(),
        RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=None),
    )
    grid = combinations(parse_grid(["fast=5,10", "slow=10,30"]))
    seen: list[dict[str, object]] = []

    rows = run_sweep(
        market,
        "sma_cross",
        grid,
        config,
        risk,
        jobs=jobs,
        on_done=lambda row: seen.append(row.params),
    )

    assert [r.params for r in rows] == grid
    assert len(seen) == 4
    bad = rows[2]  # fast=10, slow=10
    assert bad.error is not None
    assert "fast < slow" in bad.error
    single = run_backtest(market, make_strategy("sma_cross", {"fast": 5, "slow": 30}), config, risk)
    assert rows[1].stats["sharpe"] == pytest.approx(single.stats.sharpe)
    assert rows[1].stats["n_trades"] == single.stats.n_trades


@pytest.mark.parametrize(
    ("points", "workers", "use_kernel", "sizes"),
    [
        (2009, 2, True, [2009]),  # a worker's start costs more than its half would save
        (4000, 2, True, [2000, 2000]),
        (10_000, 2, True, [3334, 3334, 3332]),  # no task above twice the least
        (10_000, 10, True, [2000] * 5),
        (20, 2, False, [7, 7, 6]),  # the engine's: a few points each, every worker busy
        (3, 2, False, [2, 1]),
        (3, 1, False, [1, 1, 1]),  # in process: a cancel stops at the next point
    ],
)
def test_tasks_when_grid_and_workers_then_points_cut_for_the_pool(
    points: int, workers: int, use_kernel: bool, sizes: list[int]
) -> None:
    numbered = [(n, {"fast": n}) for n in range(points)]

    tasks = _tasks(numbered, workers, use_kernel=use_kernel)

    assert [len(task) for task in tasks] == sizes
    assert [point for task in tasks for point in task] == numbered
