"""The paper agent replaying history makes exactly the backtest's trades and equity."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select

from ffe.agent.runner import paper_agent
from ffe.agent.step import AgentConfig
from ffe.backtest.engine import BacktestConfig, run_backtest
from ffe.data import DataCatalog, SyntheticMarket, load_market
from ffe.decide.strategy import make_strategy
from ffe.domain import MarketData
from ffe.execution.fill_model import FillModel
from ffe.risk.engine import RiskEngine
from ffe.store import migrate
from ffe.store.database import Database
from ffe.store.models import Decision as JournalDecision
from ffe.store.models import Order
from ffe.store.repositories import unit_of_work


async def _replay(
    url: str,
    market: MarketData,
    name: str,
    params: dict,
    fill: FillModel,
    risk: RiskEngine,
    cash: float = 10_000.0,
):
    db = Database(url)
    await migrate.upgrade(db)
    strategy = make_strategy(name, params)
    agent = paper_agent(db, market, strategy, params, AgentConfig(cash=cash, fill=fill), risk)
    report = await agent.run()
    result = agent.result(agent.core)
    async with unit_of_work(db) as uow:
        stored = await uow.journal.trades(report.run_id)
        equity = await uow.journal.equity(report.run_id)
        orders = (
            await uow.session.execute(
                select(func.count()).select_from(Order).where(Order.run_id == report.run_id)
            )
        ).scalar_one()
    await db.dispose()
    return report, result, stored, equity, orders


def _backtest(market, name, params, fill, risk, cash=10_000.0):
    config = BacktestConfig(cash=cash, fill=fill)
    return run_backtest(market, make_strategy(name, params), config, risk)


def _risk(max_drawdown=None, position=1.0, leverage=1.0):
    return RiskEngine.from_limits(
        max_position_pct=position, max_gross_leverage=leverage, max_drawdown=max_drawdown
    )


async def test_replay_when_sma_cross_on_sp500_then_trades_equal_backtest(database_url, tmp_path):
    market = load_market(DataCatalog(tmp_path), ["SP500"])
    fill = FillModel(commission=0.002)
    params = {"fast": 10, "slow": 20}
    expected = _backtest(market, "sma_cross", params, fill, _risk())

    report, result, stored, equity, orders = await _replay(
        database_url, market, "sma_cross", params, fill, _risk()
    )

    assert report.status == "finished"
    assert report.bars == market.n_bars
    assert len(expected.trades) > 200
    assert result.trades == expected.trades
    assert stored == expected.trades  # what the journal holds, not only what is in memory
    np.testing.assert_array_equal(result.equity, expected.equity)
    # Marked bar by bar as the agent goes (cash carried by addition, not a cumulative sum):
    # the same to the last few bits.
    np.testing.assert_allclose([p.equity for p in equity], expected.equity, rtol=1e-12)
    assert orders == len(expected.orders)
    assert report.stats is not None
    assert report.stats["n_trades"] == expected.stats.n_trades


@pytest.mark.parametrize("fill_at", ["next_open", "close"])
async def test_replay_when_several_symbols_then_trades_equal_backtest(tmp_path, fill_at):
    market = SyntheticMarket(4, 600, seed=7).to_market()
    fill = FillModel(at=fill_at, commission=0.001, slippage_bps=2.0)
    params = {"lookback": 20, "top": 0.5, "rebalance": 5}
    risk = _risk(position=0.6, leverage=0.9)  # some orders are denied: those must match too
    expected = _backtest(market, "momentum", params, fill, risk)

    _, result, stored, _, _ = await _replay(
        f"sqlite:///{tmp_path / 'j.db'}", market, "momentum", params, fill, risk
    )

    assert len(expected.trades) > 20
    assert expected.denials
    assert result.trades == expected.trades
    assert stored == expected.trades
    assert [(bar, d.intent.symbol, d.check) for bar, d in result.denials] == [
        (bar, d.intent.symbol, d.check) for bar, d in expected.denials
    ]
    np.testing.assert_allclose(result.equity, expected.equity, rtol=1e-12)


async def test_replay_when_drawdown_halts_then_halt_and_trades_equal_backtest(tmp_path):
    market = load_market(DataCatalog(tmp_path), ["NASDAQ"])
    fill = FillModel(commission=0.002)
    params = {"fast": 5, "slow": 15}
    risk = _risk(max_drawdown=0.25)
    expected = _backtest(market, "sma_cross", params, fill, risk)

    _, result, _, _, _ = await _replay(
        f"sqlite:///{tmp_path / 'j.db'}", market, "sma_cross", params, fill, risk
    )

    assert expected.halted_at is not None
    assert result.halted_at == expected.halted_at
    assert result.trades == expected.trades
    np.testing.assert_array_equal(result.equity, expected.equity)


ENSEMBLE_BARS = 900  # the last 900 bars: 401 origins of the default 500-bar window
STOP_AT = 780  # origin 281: between refits (273, 294), after the recalibration's first fit


def _journaled(target: float) -> float:
    return 0.0 if np.isnan(target) else target  # a hold, as runs/journal.py writes it


@pytest.mark.slow
@pytest.mark.parametrize("symbol", ["SP500", "NASDAQ"])
async def test_replay_when_ensemble_at_defaults_and_restarted_then_equal_backtest(tmp_path, symbol):
    """The ensemble at its defaults (Hedge fed at every bar, decisions every 5 bars,
    recalibrated confidence, the skill gate): the agent, stopped after its confidence's first
    recalibration and resumed, makes the backtest's decisions, to the last bit, and its
    trades."""
    full = load_market(DataCatalog(tmp_path), [symbol])
    market = full.select(full.n_bars - ENSEMBLE_BARS, full.n_bars)
    fill = FillModel(commission=0.001)
    strategy = make_strategy("ensemble", {})
    batch = strategy.explain(market.history()).decisions
    expected = _backtest(market, "ensemble", {}, fill, _risk())

    db = Database(f"sqlite:///{tmp_path / 'j.db'}")
    await migrate.upgrade(db)
    config = AgentConfig(cash=10_000.0, fill=fill)
    first = paper_agent(db, market, strategy, {}, config, _risk())
    first.watch(on_bar=lambda report: report.bar >= STOP_AT and first.request_stop())
    stopped = await first.run()
    resumed = await paper_agent(
        db, market, make_strategy("ensemble", {}), {}, config, _risk()
    ).run()
    async with unit_of_work(db) as uow:
        stored = await uow.journal.trades(resumed.run_id)
        made = (
            await uow.session.execute(select(JournalDecision).order_by(JournalDecision.id))
        ).scalars()
        journaled = [(d.time, d.target, d.confidence, d.votes) for d in made]
    await db.dispose()

    assert stopped.status == "interrupted"
    assert (resumed.resumed, resumed.status) == (True, "finished")
    calibrated = [d for d in batch if d.time > market.time_of(STOP_AT)]
    assert len(batch) == 81  # origins 0, 5, ..., 400
    # recalibrated after the restart (stated only where that lowered the Brier score)
    assert any(d.details["confidence_use"]["candidate"] != d.confidence for d in calibrated)
    assert [(d.time.replace(tzinfo=None), _journaled(d.target), d.confidence) for d in batch] == [
        (t.replace(tzinfo=None), target, c) for t, target, c, _ in journaled
    ]
    assert [d.details["confidence_use"] for d in batch] == [
        votes["confidence_use"] for *_, votes in journaled
    ]
    assert expected.trades  # something traded (one trade only on NASDAQ's last 900 bars)
    assert stored == expected.trades
