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
