"""The agent settles a binary market at its close and journals it: on paper as the backtest
does, on Kalshi (a local fake) from the venue's result, to the cent of the venue's account."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from tests.support.agents import sqlite_journal
from tests.support.fake_kalshi import FakeKalshi, pem_of, rsa_key

from ffe.agent.clock import ReplayClock
from ffe.agent.record import RunSpec
from ffe.agent.reports import BarReport
from ffe.agent.runner import Agent, paper_agent
from ffe.agent.step import AgentConfig
from ffe.agent.stepper import stepper_for
from ffe.backtest.engine import BacktestConfig, run_backtest
from ffe.backtest.settlement import settle_at_expiry
from ffe.decide.strategies.binary_edge import BinaryEdge
from ffe.domain.contracts import BinaryContract
from ffe.domain.defaults import WHOLE_UNITS
from ffe.domain.market import MarketData
from ffe.domain.timeframe import Timeframe
from ffe.execution.fill_model import FillModel
from ffe.execution.kalshi_broker import KalshiBroker
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
    # Binary contracts trade in whole units; no costs, so the figures below are exact.
    costs = {"fill": FillModel(), "lot_size": WHOLE_UNITS}
    backtest = run_backtest(market, strategy, BacktestConfig(cash=100.0, **costs), risk)
    expected, settlements = settle_at_expiry(backtest, {SYMBOL: contract(result)})
    config = AgentConfig(cash=100.0, contracts=(contract(result),), **costs)

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


async def _run_agent(db, market, config, risk, stop_after: int | None = None):
    agent = paper_agent(db, market, BinaryEdge(probability=0.6, stake=0.5), {}, config, risk)
    if stop_after is not None:

        def stop(report) -> None:
            if report.bar >= stop_after:
                agent.request_stop()

        agent.watch(on_bar=stop)
    report = await agent.run()
    async with unit_of_work(db) as uow:
        equity = await uow.journal.equity(report.run_id)
        trades = await uow.journal.trades(report.run_id)
        orders = (await uow.session.scalars(select(Order).order_by(Order.id))).all()
    return report, equity, trades, orders


async def test_paper_agent_when_restarted_after_settlement_then_not_settled_twice(
    tmp_path: Path,
) -> None:
    # Two bars after the close: at 0.58 the strategy wants to be flat, then at 0.02 to buy
    # the settled market again; the paper broker refuses, as Kalshi would.
    prices = np.array([*PRICES, 0.58, 0.02])[:, None]
    market = MarketData(
        (SYMBOL,),
        np.datetime64("2026-11-01T00:00", "ns") + np.arange(len(prices)) * np.timedelta64(1, "h"),
        open=prices,
        high=prices,
        low=prices,
        close=prices,
        volume=np.ones_like(prices),
        timeframe=Timeframe.parse("1h"),
    )
    risk = RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=None)
    config = AgentConfig(
        cash=100.0,
        contracts=(contract("yes"),),
        command_poll_s=0.01,
        fill=FillModel(),
        lot_size=WHOLE_UNITS,
    )
    (tmp_path / "whole").mkdir()
    (tmp_path / "parts").mkdir()

    async with sqlite_journal(tmp_path / "whole") as db:
        _, whole_equity, whole_trades, _ = await _run_agent(db, market, config, risk)
    async with sqlite_journal(tmp_path / "parts") as db:
        first, _, _, _ = await _run_agent(db, market, config, risk, stop_after=len(PRICES))
        second, equity, trades, orders = await _run_agent(db, market, config, risk)

    assert first.status == "interrupted"
    assert second.resumed
    assert second.first_bar == len(PRICES) + 1  # resumed after the settlement bar
    assert [(t.exit_price, t.quantity) for t in trades] == [
        (t.exit_price, t.quantity) for t in whole_trades
    ]
    assert trades[-1].exit_price == 1.0
    assert equity[-1].equity == pytest.approx(whole_equity[-1].equity)
    assert [o.status for o in orders][-1] == "rejected"  # the buy after the close


async def test_agent_on_kalshi_when_venue_settles_then_books_its_result_and_matches_account(
    tmp_path: Path,
) -> None:
    fake = FakeKalshi({"key-1": rsa_key("account").public_key()})
    fake.markets[SYMBOL]["yes_ask"] = round(PRICES[0] * 100)
    fake.start()
    broker = KalshiBroker(
        "key-1", pem_of(rsa_key("account")), base_url=fake.url, reads_per_s=0, writes_per_s=0
    )
    market, strategy = contract_market(), BinaryEdge(probability=0.6, margin=0.05, stake=0.5)
    risk = RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=None)
    recorded = BinaryContract(SYMBOL, "KXRAIN-26DEC08", contract("yes").expiry)  # no result
    config = AgentConfig(cash=1000.0, contracts=(recorded,), fill=FillModel(), lot_size=WHOLE_UNITS)
    spec = RunSpec(strategy=strategy.name, kind="live", broker="kalshi")

    def venue_moves(report: BarReport) -> None:
        following = report.bar + 1
        if following < len(PRICES):  # the venue trades at the next bar's price
            fake.markets[SYMBOL]["yes_ask"] = round(PRICES[following] * 100)
        if report.bar == len(PRICES) - 2:  # determined before the last bar
            fake.settle(SYMBOL, "yes")

    try:
        async with sqlite_journal(tmp_path) as db:
            agent = Agent(
                db, market, strategy, stepper_for(strategy), broker, risk,
                ReplayClock(market), config, spec,
            )  # fmt: skip
            agent.watch(on_bar=venue_moves)
            await agent.run()
            async with unit_of_work(db) as uow:
                fills = (await uow.session.scalars(select(Fill).order_by(Fill.id))).all()
    finally:
        await broker.close()  # the agent closed it already; closing again is harmless
        fake.stop()

    assert agent.core is not None
    assert agent.core.ledger.held == {}
    assert (fills[-1].price, fills[-1].commission) == (1.0, 0.0)
    assert [(f.quantity > 0, f.price) for f in fills] == [
        (True, 0.30),
        (False, 0.58),
        (True, 0.50),
        (False, 1.0),
    ]  # bought, sold at the venue; bought again, closed by the settlement
    assert not any(fake.positions.values())  # Kalshi settled its side too
    assert agent.core.ledger.cash == pytest.approx(fake.balance / 100)  # to the cent
    assert not fake.errors
