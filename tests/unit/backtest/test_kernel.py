"""The batch kernel gives every point exactly the engine's run: the same filled orders, closed
trades, equity and stats (==, not approximately), over many markets, costs, fill modes and lot
sizes; and a point the kernel does not model (a risk limit that bites, a drawdown halt, a
strategy that cannot be built) goes to the engine."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ffe.backtest.engine import BacktestConfig, run_backtest
from ffe.backtest.kernel import BatchKernel, BatchRun, _Book, batchable
from ffe.backtest.result import BacktestResult
from ffe.backtest.sweep import combinations, run_sweep
from ffe.compute import LocalExecutor
from ffe.data import SyntheticMarket
from ffe.decide import make_strategy
from ffe.domain.market import MarketData
from ffe.domain.orders import OrderStatus
from ffe.execution import FillModel
from ffe.risk import (
    EmergencyHalt,
    MaxDailyLoss,
    MaxDrawdownHalt,
    MaxGrossLeverage,
    MaxPositionPct,
    MinConfidence,
    RiskCheck,
    RiskEngine,
)

FULL = RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=None)


def _engine(
    market: MarketData, params: dict[str, Any], config: BacktestConfig, risk: RiskEngine
) -> BacktestResult:
    return run_backtest(market, make_strategy("sma_cross", params), config, risk)


def _assert_same_run(run: BatchRun | None, single: BacktestResult) -> None:
    assert run is not None
    filled = [
        (o.bar, o.symbol, o.quantity, o.fill_price, o.commission)
        for o in single.orders
        if o.status is OrderStatus.FILLED
    ]
    assert run.fills == filled
    assert run.trades == single.ledger.trades
    assert np.array_equal(run.equity, single.equity)
    assert run.stats == single.stats or run.stats.as_dict() == single.stats.as_dict()  # NaN


def _with_gaps(market: MarketData, bars: list[int]) -> MarketData:
    """``market`` with no bar at ``bars`` (NaN prices): orders there are skipped or rejected."""
    prices = {name: getattr(market, name).copy() for name in ("open", "high", "low", "close")}
    for array in prices.values():
        array[bars] = np.nan
    return MarketData(
        market.symbols, market.times, volume=market.volume, timeframe=market.timeframe, **prices
    )


costs = st.builds(
    FillModel,
    at=st.sampled_from(["next_open", "close"]),
    commission=st.sampled_from([0.0, 0.001, 0.002, 0.01]),
    fixed_commission=st.sampled_from([0.0, 1.0]),
    slippage_bps=st.sampled_from([0.0, 5.0]),
)
configs = st.builds(
    BacktestConfig,
    cash=st.sampled_from([1_000.0, 10_000.0, 123_456.78]),
    fill=costs,
    lot_size=st.sampled_from([1.0, 0.1, 0.01, 5.0]),
)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 50),
    bars=st.integers(30, 400),
    fast=st.integers(1, 15),
    extra=st.integers(1, 40),
    config=configs,
)
def test_kernel_when_any_costs_fills_and_lots_then_same_run_as_engine(
    seed: int, bars: int, fast: int, extra: int, config: BacktestConfig
) -> None:
    market = SyntheticMarket(1, bars, seed=seed).to_market()
    params = {"fast": fast, "slow": fast + extra}

    run = BatchKernel(market, "sma_cross", config, FULL).run(params)

    single = _engine(market, params, config, FULL)
    if run is None:  # e.g. two instructions in a row the same way (a tie): a second lot
        row = run_sweep(market, "sma_cross", [params], config, FULL, jobs=1)[0]
        assert row.stats == single.stats.as_dict()
    else:
        _assert_same_run(run, single)


@pytest.mark.parametrize("at", ["next_open", "close"])
def test_kernel_when_wide_grid_on_one_market_then_every_point_same_as_engine(at: str) -> None:
    market = SyntheticMarket(1, 1500, seed=11).to_market()
    config = BacktestConfig(cash=10_000, fill=FillModel(at=at, commission=0.002))  # type: ignore[arg-type]
    kernel = BatchKernel(market, "sma_cross", config, FULL)  # one kernel: shared indicators
    grid = [p for p in combinations({"fast": range(2, 40, 3), "slow": range(5, 120, 7)})]

    for params in grid:
        if params["fast"] < params["slow"]:
            _assert_same_run(kernel.run(params), _engine(market, params, config, FULL))


def test_kernel_when_bars_missing_then_skipped_and_rejected_orders_as_engine() -> None:
    market = _with_gaps(SyntheticMarket(1, 400, seed=5).to_market(), [60, 61, 150, 151, 152, 300])
    # Whole units: a repeated instruction then holds its lot (a fractional one would top it
    # up, which the kernel hands to the engine).
    config = BacktestConfig(fill=FillModel(commission=0.001), lot_size=1.0)

    for params in ({"fast": 2, "slow": 5}, {"fast": 3, "slow": 9}, {"fast": 5, "slow": 20}):
        run = BatchKernel(market, "sma_cross", config, FULL).run(params)
        _assert_same_run(run, _engine(market, params, config, FULL))


def test_kernel_when_risk_rules_that_need_the_agent_then_same_run_as_engine() -> None:
    market = SyntheticMarket(1, 500, seed=2).to_market()
    checks: list[RiskCheck] = [EmergencyHalt(), MaxDailyLoss(0.02), MinConfidence(0.9)]
    risk = RiskEngine([*checks, *FULL.checks], max_drawdown=0.99)
    config = BacktestConfig(fill=FillModel(commission=0.002))
    params = {"fast": 4, "slow": 12}

    run = BatchKernel(market, "sma_cross", config, risk).run(params)

    _assert_same_run(run, _engine(market, params, config, risk))


@pytest.mark.parametrize(
    "risk",
    [
        RiskEngine.from_limits(max_position_pct=0.5, max_gross_leverage=1.0, max_drawdown=None),
        RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=0.8, max_drawdown=None),
        RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=0.05),
    ],
    ids=["position_limit", "leverage_limit", "drawdown_halt"],
)
def test_kernel_when_a_risk_limit_bites_then_point_falls_back_to_engine(risk: RiskEngine) -> None:
    market = SyntheticMarket(1, 400, seed=8).to_market()
    config = BacktestConfig(fill=FillModel(commission=0.002))
    params = {"fast": 3, "slow": 10}
    single = _engine(market, params, config, risk)
    assert single.denials or single.halted_at is not None  # the limit does bite

    run = BatchKernel(market, "sma_cross", config, risk).run(params)
    rows = run_sweep(market, "sma_cross", [params], config, risk, jobs=1)

    assert run is None
    assert rows[0].stats == single.stats.as_dict()


def test_kernel_when_strategy_cannot_be_built_then_point_falls_back_with_its_error() -> None:
    market = SyntheticMarket(1, 200, seed=1).to_market()
    config = BacktestConfig()

    run = BatchKernel(market, "sma_cross", config, FULL).run({"fast": 20, "slow": 10})
    rows = run_sweep(market, "sma_cross", [{"fast": 20, "slow": 10}], config, FULL, jobs=1)

    assert run is None
    assert rows[0].error is not None
    assert "fast < slow" in rows[0].error


def test_book_when_fill_adds_a_second_lot_or_closes_part_of_one_then_refused() -> None:
    book = _Book(10_000.0, [100.0] * 10)
    assert book.book(0, 1, 10.0, 100.0, 1.0)  # opens a lot

    assert not book.book(1, 2, 5.0, 100.0, 0.5)  # would open a second lot
    assert not book.book(1, 2, -4.0, 100.0, 0.4)  # would close part of the lot
    assert book.book(1, 2, -30.0, 100.0, 3.0)  # closes it and opens the other way
    assert book.held == -20.0
    assert len(book.trades) == 1


def test_batchable_when_sweep_outside_the_kernel_then_false() -> None:
    one = SyntheticMarket(1, 100, seed=1).to_market()
    two = SyntheticMarket(2, 100, seed=1).to_market()
    unknown_check = RiskEngine([_AllowAll()])

    assert batchable(one, "sma_cross", BacktestConfig(), FULL)
    assert not batchable(two, "sma_cross", BacktestConfig(), FULL)
    assert not batchable(one, "sma_cross", BacktestConfig(mode="stream"), FULL)
    assert not batchable(one, "momentum", BacktestConfig(), FULL)
    assert not batchable(one, "sma_cross", BacktestConfig(), unknown_check)


class _AllowAll:
    """A check the kernel knows nothing of: it must leave such sweeps to the engine."""

    name = "allow_all"

    def check(self, intent: object, account: object) -> None:
        return None


@pytest.mark.parametrize("jobs", [1, 2])
def test_run_sweep_when_batch_then_rows_equal_the_engines(jobs: int) -> None:
    market = SyntheticMarket(1, 600, seed=4).to_market()
    config = BacktestConfig(fill=FillModel(commission=0.002))
    grid = combinations({"fast": [2, 5, 9, 30], "slow": [5, 20, 31, 60]})  # some fast >= slow

    batched = run_sweep(market, "sma_cross", grid, config, FULL, jobs=jobs)
    single = run_sweep(market, "sma_cross", grid, config, FULL, jobs=1, batch=False)

    assert [row.flat() for row in batched] == [row.flat() for row in single]
    assert sum(row.error is not None for row in batched) == 4


class _RecordingExecutor:
    """Runs in process like a one-worker LocalExecutor, but says it has two workers (so the
    sweep cuts tasks for a pool) and records the size of every task of every map."""

    def __init__(self) -> None:
        self._inner = LocalExecutor(1)
        self.maps: list[list[int]] = []

    @property
    def workers(self) -> int:
        return 2

    def map(self, fn: Any, items: Any, shared: Any, **options: Any) -> Any:
        todo = list(items)
        self.maps.append([len(task) for task in todo])
        return self._inner.map(fn, todo, shared, **options)

    def open(self, fn: Any, shared: Any) -> Any:
        return self._inner.open(fn, shared)


def test_run_sweep_when_kernel_leaves_points_then_engine_runs_them_in_small_tasks() -> None:
    market = SyntheticMarket(1, 300, seed=6).to_market()
    config = BacktestConfig(fill=FillModel(commission=0.002))
    half = RiskEngine.from_limits(max_position_pct=0.5, max_gross_leverage=1.0, max_drawdown=None)
    grid = combinations({"fast": [2, 3, 4, 5, 6], "slow": [10, 20, 30, 40]})  # 20 points
    executor = _RecordingExecutor()

    rows = run_sweep(market, "sma_cross", grid, config, half, executor=executor)
    alone = run_sweep(market, "sma_cross", grid, config, half, jobs=1, batch=False)

    assert executor.maps == [[20], [7, 7, 6]]  # one kernel task, then the engine's
    assert [row.flat() for row in rows] == [row.flat() for row in alone]


def test_kernel_when_equity_comes_near_the_drawdown_limit_then_engine_runs_it() -> None:
    market = SyntheticMarket(1, 400, seed=9).to_market()
    config = BacktestConfig(fill=FillModel(commission=0.002))
    params = {"fast": 4, "slow": 15}
    deepest = -_engine(market, params, config, FULL).stats.max_drawdown
    near, clear = (
        RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=limit)
        for limit in (deepest + 1e-7, deepest + 0.01)
    )

    near_run = BatchKernel(market, "sma_cross", config, near).run(params)
    clear_run = BatchKernel(market, "sma_cross", config, clear).run(params)
    rows = run_sweep(market, "sma_cross", [params], config, near, jobs=1)

    assert near_run is None  # too close to tell the engine's halt from the path's rounding
    assert rows[0].stats == _engine(market, params, config, near).stats.as_dict()
    _assert_same_run(clear_run, _engine(market, params, config, clear))


def test_run_sweep_when_drawdown_halt_is_a_check_of_its_own_then_rows_equal_the_engines() -> None:
    # A MaxDrawdownHalt among the checks but no max_drawdown: the engine denies new risk
    # once equity is that far below the starting cash, and the kernel, which judges a halt
    # on risk.max_drawdown alone, must leave the sweep to the engine.
    market = SyntheticMarket(1, 800, seed=4).to_market()
    checks: list[RiskCheck] = [MaxPositionPct(1.0), MaxGrossLeverage(1.0), MaxDrawdownHalt(0.02)]
    halting = RiskEngine(checks)
    grid = combinations({"fast": [2, 5, 8, 11], "slow": [14, 22, 30, 38]})

    batched = run_sweep(market, "sma_cross", grid, BacktestConfig(), halting, jobs=1)
    single = run_sweep(market, "sma_cross", grid, BacktestConfig(), halting, jobs=1, batch=False)

    assert [row.flat() for row in batched] == [row.flat() for row in single]
