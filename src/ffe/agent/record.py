"""The agent's run as the journal records it, beside a backtest's: what it trades, opened
(or the account's unfinished run resumed), closed with the statistics a backtest of the same
bars would have, or marked failed or interrupted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ffe.agent.step import AgentConfig, StepCore
from ffe.backtest.engine import BacktestConfig
from ffe.backtest.result import BacktestResult
from ffe.decide.strategy import Strategy
from ffe.domain.market import MarketData, finite_marks
from ffe.risk.engine import RiskEngine
from ffe.runs.journal import code_version
from ffe.store.database import Database
from ffe.store.models import Run
from ffe.store.repositories import unit_of_work


@dataclass(frozen=True, slots=True)
class RunSpec:
    """What the agent trades, as recorded on its run."""

    strategy: str
    params: dict[str, Any] = field(default_factory=dict)
    kind: str = "paper"  # or "live"
    broker: str = "paper"
    fresh: bool = False  # start a new run even if the account's last one is unfinished
    source: dict[str, Any] = field(default_factory=dict)  # a file strategy's path and SHA-256


async def open_run(
    db: Database, previous: str | None, spec: RunSpec, market: MarketData, config: dict[str, Any]
) -> tuple[Run, bool]:
    """The account's ``previous`` run, resumed, when it is unfinished and trades what ``spec``
    says on ``market``'s symbols (and ``spec`` is not ``fresh``); else a new run. True when
    resumed."""
    async with unit_of_work(db) as uow:
        if previous is not None and not spec.fresh:
            run = await uow.session.get(Run, previous)
            if run is not None and _resumable(run, spec, market):
                run.status = "running"
                return run, True
        run = await uow.runs.add(
            kind=spec.kind,
            strategy=spec.strategy,
            code_version=code_version(),
            params=spec.params,
            symbols=list(market.symbols),
            timeframe=str(market.timeframe),
            config=config,
            data_fingerprint=market.fingerprint(),
        )
        return run, False


def _resumable(run: Run, spec: RunSpec, market: MarketData) -> bool:
    return (
        run.status in ("running", "interrupted")
        and run.strategy == spec.strategy
        and dict(run.params) == spec.params
        and list(run.symbols) == list(market.symbols)
        and run.kind == spec.kind
        and _file_text(run.config) == _file_text(spec.source)
    )


def _file_text(config: dict[str, Any] | None) -> str | None:
    # A strategy file whose text changed is another strategy: its run starts afresh.
    found = (config or {}).get("strategy_file") or {}
    return found.get("sha256") if isinstance(found, dict) else None


def run_config(
    config: AgentConfig, spec: RunSpec, risk: RiskEngine, *, live_clock: bool
) -> dict[str, Any]:
    """How the agent trades, as recorded on its run's row."""
    return {
        "agent": {
            "account": config.account,
            "broker": spec.broker,
            "approval": config.approval,
            "clock": "live" if live_clock else "replay",
        },
        "cash": config.cash,
        "lot_size": config.lot_size,
        "fill": {
            "at": config.fill.at,
            "commission": config.fill.commission,
            "fixed_commission": config.fill.fixed_commission,
            "slippage_bps": config.fill.slippage_bps,
        },
        "risk": {"checks": [check.name for check in risk.checks]},
        **spec.source,
    }


async def close_run(db: Database, run_id: str, status: str, stats: dict[str, Any] | None) -> None:
    """Record the run as finished (the data ended) or interrupted (stopped), with ``stats``."""
    async with unit_of_work(db) as uow:
        run = await uow.runs.get(run_id)
        if status == "finished":
            await uow.runs.finish(run, stats)
        else:
            run.status, run.stats = "interrupted", stats


async def fail_run(db: Database, run_id: str, error: str, *, resumable: bool) -> None:
    """Record the run as failed, or as interrupted when it can be resumed."""
    async with unit_of_work(db) as uow:
        run = await uow.runs.get(run_id)
        await uow.runs.fail(run, error, status="interrupted" if resumable else "failed")


def run_result(core: StepCore, config: AgentConfig, strategy: Strategy) -> BacktestResult:
    """The run so far as a backtest result (same statistics, same reports)."""
    n = core.last_bar + 1
    market = core.market  # a polling clock's market grows past the one the agent began with
    market = market.select(0, n) if n < market.n_bars else market
    positions = core.ledger.position_path(n)
    marks = finite_marks(market.mark)
    equity = core.ledger.cash_path(n) + np.einsum("tn,tn->t", positions, marks)
    backtest = BacktestConfig(
        cash=config.cash, fill=config.fill, lot_size=config.lot_size, check_lookahead=False
    )
    return BacktestResult(
        market=market,
        strategy=strategy,
        config=backtest,
        targets=np.full((n, market.n_symbols), np.nan),
        equity=equity,
        positions=positions,
        ledger=core.ledger,
        orders=[],
        denials=core.denials,
        halted_at=core.halted_at,
    )
