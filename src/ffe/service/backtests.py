"""Backtests as use cases: run one (walked forward if asked) and record it; sweep a parameter
grid and rank it.

``ffe backtest`` and the worker's backtest and sweep jobs call these: each parses its input
into a request, calls, and presents the outcome. The functions are synchronous and may start
a process pool, so call them from a command, a job's process or a thread, never from a
running event loop (recording runs a loop of its own).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ffe.service.markets import MarketSpec, load_bars
from ffe.service.progress import ReportProgress

if TYPE_CHECKING:
    from ffe.backtest.engine import BacktestConfig
    from ffe.backtest.objective import Direction
    from ffe.backtest.result import BacktestResult
    from ffe.backtest.sweep import SweepRow
    from ffe.backtest.walkforward import WalkForwardResult, WalkForwardSpec
    from ffe.bootstrap import Components
    from ffe.domain.contracts import BinaryContract
    from ffe.domain.errors import StoreError
    from ffe.domain.market import MarketData
    from ffe.risk.engine import RiskEngine


@dataclass(frozen=True, slots=True)
class Costs:
    """Overrides of the ``backtest`` settings for one run; None keeps the setting."""

    cash: float | None = None
    commission: float | None = None  # fraction of notional
    slippage_bps: float | None = None
    fill: str | None = None  # next_open or close


@dataclass(frozen=True, slots=True)
class BacktestRequest:
    """One backtest of ``strategy`` with ``params``; walked forward when ``walk_forward`` is
    given, its segments spread over ``workers`` processes (None or 0: as many as allowed).

    With ``record`` the run goes into the journal, under ``run_id`` when given (a job's id:
    a job redone records its run once) and with ``extra_config`` added to its config."""

    strategy: str
    params: Mapping[str, Any] = field(default_factory=dict)
    market: MarketSpec = field(default_factory=MarketSpec)
    costs: Costs = field(default_factory=Costs)
    walk_forward: WalkForwardSpec | None = None
    workers: int | None = None
    record: bool = True
    run_id: str | None = None
    extra_config: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class BacktestOutcome:
    """A backtest's result (the joined out-of-sample run when walked forward), its segments,
    and where it was recorded. A journal that cannot be written must not cost the caller the
    result, so a failed recording is handed back in ``unrecorded``, not raised."""

    result: BacktestResult
    walked: WalkForwardResult | None = None
    run_id: str | None = None  # None: not recorded
    unrecorded: StoreError | None = None


def run(
    components: Components, request: BacktestRequest, progress: ReportProgress | None = None
) -> BacktestOutcome:
    """Run ``request`` and record it. ``progress`` counts walk-forward segments, or the one
    run of a plain backtest (0 of 1 once the bars are loaded, 1 of 1 before recording)."""
    from ffe.backtest.engine import run_backtest
    from ffe.decide.strategy import make_strategy

    report = progress or _silent
    # -p workers=N is the caller's to give, but at most compute.max_workers.
    params = components.strategy_params(request.strategy, request.params)
    strategy = make_strategy(request.strategy, params)  # a bad parameter fails before bars load
    market = load_bars(components, request.market)
    contracts = _contracts(components, market.symbols)
    config = _costs(components, request.costs, whole=bool(contracts))
    risk = components.risk_engine()
    walked = None
    if request.walk_forward is None:
        report(0, 1)
        result = _settled(run_backtest(market, strategy, config, risk), contracts)
        report(1, 1)
    else:
        setup = (request.walk_forward, config, risk)
        walked = _walk_forward(components, request, params, market, setup, report)
        result = walked.backtest
    if not request.record:
        return BacktestOutcome(result, walked)
    run_id, unrecorded = _record(components, request, result, walked)
    return BacktestOutcome(result, walked, run_id, unrecorded)


def _contracts(components: Components, symbols: Sequence[str]) -> dict[str, BinaryContract]:
    """The binary contracts recorded with ``symbols``' bars (``ffe.data.kalshi``)."""
    from ffe.data.kalshi import load_contract

    contracts = {}
    for symbol in symbols:
        contract = load_contract(components.data_dir, symbol)
        if contract is not None:
            contracts[symbol] = contract
    return contracts


def _settled(result: BacktestResult, contracts: dict[str, BinaryContract]) -> BacktestResult:
    """``result`` with its positions in ``contracts`` settled at their results, when the
    run reaches their close."""
    from ffe.backtest.settlement import settle_at_expiry

    return settle_at_expiry(result, contracts)[0] if contracts else result


def _costs(components: Components, costs: Costs, *, whole: bool = False) -> BacktestConfig:
    """The ``backtest`` settings with ``costs``; whole units when ``whole`` (binary
    contracts trade only in whole contracts)."""
    from ffe.domain.defaults import lot_for

    config = components.backtest_config(
        cash=costs.cash,
        commission=costs.commission,
        slippage_bps=costs.slippage_bps,
        at=costs.fill,
    )
    lot = lot_for(config.lot_size, whole=whole)
    return config if lot == config.lot_size else replace(config, lot_size=lot)


def _walk_forward(
    components: Components,
    request: BacktestRequest,
    params: dict[str, Any],
    market: MarketData,
    setup: tuple[WalkForwardSpec, BacktestConfig, RiskEngine],
    report: ReportProgress,
) -> WalkForwardResult:
    from ffe.backtest.walkforward import run_walk_forward

    spec, config, risk = setup
    total = len(spec.windows(market.n_bars))  # too few bars fail here, before any progress
    done = [0]

    def advance() -> None:
        done[0] += 1
        report(done[0], total)

    report(0, total)
    return run_walk_forward(
        market, request.strategy, params, spec.train, spec.test, config, risk,
        progress=advance, executor=components.executor(request.workers),
    )  # fmt: skip


def walk_forward_config(walked: WalkForwardResult) -> dict[str, Any]:
    """The walk-forward part of a recorded run's config."""
    return {
        "train": walked.spec.train,
        "test": walked.spec.test,
        "segments": len(walked.segments),
        "first_test_bar": walked.segments[0].test_start_time.isoformat(),
    }


def _record(
    components: Components,
    request: BacktestRequest,
    result: BacktestResult,
    walked: WalkForwardResult | None,
) -> tuple[str | None, StoreError | None]:
    """Record ``result``: (run id, None), or (None, the StoreError saying why not)."""
    import asyncio

    from ffe.domain.errors import StoreError

    extra = dict(request.extra_config or {})
    if walked is not None:
        extra["walk_forward"] = walk_forward_config(walked)
    try:
        run_id = asyncio.run(_store(components, result, extra or None, request.run_id))
    except StoreError as exc:
        return None, StoreError(f"the run was not recorded: {exc}")
    return run_id, None


async def _store(
    components: Components,
    result: BacktestResult,
    extra_config: dict[str, Any] | None,
    run_id: str | None,
) -> str:
    """Store the run (under ``run_id`` once, when given: an earlier try may have done it)."""
    from ffe.runs.journal import record_backtest

    db = await components.open_journal()
    try:
        return await record_backtest(db, result, extra_config=extra_config, run_id=run_id)
    finally:
        await db.dispose()


@dataclass(frozen=True, slots=True)
class SweepRequest:
    """Backtest ``strategy`` at every combination of ``grid``'s values (parameter name to
    values), ranked by ``metric``, on ``workers`` processes (None or 0: as many as allowed)."""

    strategy: str
    grid: Mapping[str, Sequence[Any]]
    metric: str = "sharpe"
    market: MarketSpec = field(default_factory=MarketSpec)
    costs: Costs = field(default_factory=Costs)
    workers: int | None = None


@dataclass(frozen=True, slots=True)
class SweepOutcome:
    """Every grid point, best first by ``metric`` the way ``direction`` says; points with no
    value for it, and points that could not run, come last in the grid's order."""

    metric: str
    direction: Direction
    names: tuple[str, ...]  # the grid's parameters, in the order given
    rows: tuple[SweepRow, ...]
    # A file strategy's {"strategy_file": {path, class, sha256}}: the text every point ran.
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def ranked(self) -> tuple[SweepRow, ...]:
        """The points that ran, best first."""
        return tuple(row for row in self.rows if row.error is None)

    @property
    def failed(self) -> tuple[SweepRow, ...]:
        """The points that could not run (each with its error), in the grid's order."""
        return tuple(row for row in self.rows if row.error is not None)

    @property
    def best(self) -> SweepRow | None:
        """The best point that ran; None when none did."""
        ranked = self.ranked
        return ranked[0] if ranked else None


def sweep(
    components: Components, request: SweepRequest, progress: ReportProgress | None = None
) -> SweepOutcome:
    """Run every point of ``request``'s grid and rank them. An unrankable metric or a bad
    grid is refused before any bar loads; ``progress`` counts the points."""
    from ffe.backtest.objective import direction_of, rank_key
    from ffe.backtest.sweep import run_sweep
    from ffe.decide.plugins import recorded_by_name

    report = progress or _silent
    direction = direction_of(request.metric)
    points = _points(components, request)
    market = load_bars(components, request.market)
    config, risk = _costs(components, request.costs), components.risk_engine()
    done = [0]

    def advance(_: SweepRow) -> None:
        done[0] += 1
        report(done[0], len(points))

    report(0, len(points))
    # The LLM settings go to every point but not into its row (a grid point shows its axes).
    fixed = components.llm_params(request.strategy, request.grid)
    rows = run_sweep(
        market, request.strategy, points, config, risk,
        executor=components.executor(request.workers), on_done=advance, fixed=fixed,
    )  # fmt: skip
    ranked = sorted(rows, key=lambda row: rank_key(row.stats.get(request.metric), direction))
    source = recorded_by_name(request.strategy)  # the text read here is what every point ran
    return SweepOutcome(request.metric, direction, tuple(request.grid), tuple(ranked), source)


def _points(components: Components, request: SweepRequest) -> list[dict[str, Any]]:
    """The grid's combinations, a strategy's own pool in each at most the configured cap."""
    from ffe.backtest.sweep import combinations
    from ffe.domain.errors import ConfigError

    if not request.grid:
        raise ConfigError("the grid has no parameters: give at least one, e.g. fast=5,10")
    for name, values in request.grid.items():
        if not values:
            raise ConfigError(f"grid parameter {name!r} has no values: give at least one")
    return [
        components.strategy_params(request.strategy, point, fill=False)
        for point in combinations(request.grid)
    ]


def _silent(done: int, total: int) -> None:
    """Progress nobody asked for."""
