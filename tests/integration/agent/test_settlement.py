"""A paper agent settles a binary market at its close, as the backtest does, and journals it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from tests.support.agents import sqlite_journal

from ffe.agent.runner import paper_agent
from ffe.agent.step import AgentConfig
from ffe.backtest.engine import BacktestConfig, run_backtest
from ffe.backtest.settlement import settle_at_expiry
from ffe.decide.strategies.binary_edge import BinaryEdge
from ffe.domain.contracts import BinaryContract
from ffe.domain.market import MarketData
from ffe.domain.timeframe import Timeframe
from ffe.risk.engine import RiskEngine
from ffe.store.models import Fill, Order
from ffe.store.repositories import unit_of_work

SYMBOL = "KXRAIN-26DEC08-NYC"
PRICES = [0.30, 0.34, 0.36, 0.41, 0.39, 0.47, 0.58, 0.61, 0.50, 0.45]


def contract_market() -> MarketData:
    prices = np.array(PRICES)[:, None]
    return MarketData(
        (SYMBOL,),
        np.datetime64("2026-11-01T00:00", "ns") + np.arange(len(PRICES)) * np.timedelta64(1, "h"),
        open=prices,
        high=prices,
        low=prices,
        close=prices,
        volume=np.ones_like(prices),
        timeframe=Timeframe.parse("1h"),
    )


def contract(result: str) -> BinaryContract:
    closes = datetime(2026, 11, 1, len(PRICES), tzinfo=UTC)  # the end of the last bar
    return BinaryContract(SYMBOL, "KXRAIN-26DEC08", closes, "finalized", result)


@pytest.mark.parametrize("result", ["yes", "no"])
async def test_paper_agent_when_market_settles_then_closes_at_result_like_the_backtest(
    tmp_path: Path, result: str
) -> None:
    market, strategy = contract_market(), BinaryEdge(probability=0.6, margin=0.05, stake=0.5)
    risk = RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=None)
    backtest = run_backtest(market, strategy, BacktestConfig(cash=100.0), risk)
    expected, settlements = settle_at_expiry(backtest, {SYMBOL: contract(result)})
    config = AgentConfig(cash=100.0, contracts=(contract(result),))

    async with sqlite_journal(tmp_path) as db:
        agent = paper_agent(db, market, strategy, {}, config, risk)
        report = await agent.run()
        async with unit_of_work(db) as uow:
            equity = await uow.journal.equity(report.run_id)
            trades = await uow.journal.trades(report.run_id)
            fills = (await uow.session.scalars(select(Fill).order_by(Fill.id))).all()
            pending = (
                await uow.session.scalars(select(Order).where(Order.status == "pending"))
            ).all()

    assert len(settlements) == 1
    assert agent.core is not None
    assert agent.core.ledger.held == {}
    settlement_fill = fills[-1]
    assert (settlement_fill.price, settlement_fill.commission) == (
        1.0 if result == "yes" else 0.0,
        0.0,
    )
    assert settlement_fill.quantity == -settlements[0].quantity
    assert [t.exit_price for t in trades] == [t.exit_price for t in expected.trades]
    assert equity[-1].equity == pytest.approx(expected.equity[-1])
    assert list(pending) == []
