"""The trading metrics an agent's reporter feeds, checked against what the agent journaled:
fills by side, closed trades by result, realised P&L, drawdown, each order's time from its
decision, the risk engine's halts (in force bar by bar), the ensemble's forecast times and
weights, and decision outcomes by stated confidence."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select
from tests.support.agents import Recorder, replay_agent, sqlite_journal

from ffe.agent.reports import BarReport
from ffe.agent.runner import paper_agent
from ffe.agent.step import AgentConfig
from ffe.decide.strategy import make_strategy
from ffe.obs.metrics import CONFIDENCE_BINS, Metrics
from ffe.risk.engine import MaxGrossLeverage, MaxPositionPct, RiskEngine
from ffe.risk.rules import MaxDailyLoss
from ffe.service.reporting import AgentReporter
from ffe.store.database import Database
from ffe.store.models import Decision, DecisionOutcome, Fill, Order, TradeRow

# A small, quick ensemble: two cheap models on 60 bars, a decision every 5 bars.
ENSEMBLE = {"models": "naive,drift", "window": 60, "refit_every": 21, "horizon": 5, "every": 5}


@pytest.fixture
async def db(tmp_path):
    async with sqlite_journal(tmp_path) as database:
        yield database


async def _rows(db: Database, model: Any) -> list[Any]:
    async with db.session() as session:
        return list((await session.scalars(select(model))).all())


def _value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def _run(agent: Any, metrics: Metrics) -> AgentReporter:
    reporter = AgentReporter(Recorder(), metrics, equity_interval_s=0.0)  # every bar's gauges
    reporter.attach(agent)
    await agent.run()
    await reporter.settle()
    return reporter


async def test_reporter_when_agent_trades_then_fills_trades_pnl_and_drawdown_as_journaled(
    db, tmp_path
):
    agent, metrics = replay_agent(db, tmp_path, start="2017-01-01"), Metrics()
    last: list[BarReport] = []
    agent.watch(on_bar=last.append)

    reporter = await _run(agent, metrics)

    fills = await _rows(db, Fill)
    sides = Counter("buy" if fill.quantity > 0 else "sell" for fill in fills)
    assert sides["buy"] > 2
    assert sides["sell"] > 2
    for side in ("buy", "sell"):
        assert _value(metrics, "ffe_fills_total", symbol="SP500", side=side) == sides[side]
    trades = await _rows(db, TradeRow)
    results = Counter("win" if trade.pnl > 0 else "loss" for trade in trades)
    assert results["win"] > 0
    assert results["loss"] > 0
    for result in ("win", "loss"):
        counted = _value(metrics, "ffe_trades_closed_total", account="paper", result=result)
        assert counted == results[result]
    realized = _value(metrics, "ffe_realized_pnl", account="paper")
    assert realized == pytest.approx(sum(trade.pnl for trade in trades), abs=1e-6)
    assert realized != 0
    equity = last[-1].equity
    drawdown = _value(metrics, "ffe_drawdown_ratio", account="paper")
    assert drawdown == pytest.approx(1 - equity / reporter.peak, rel=1e-12)
    assert 0 < drawdown < 1  # sma_cross ends 2018 below its peak
    for reason in ("daily_loss", "drawdown"):  # no limits set: never halted
        assert _value(metrics, "ffe_risk_halted", account="paper", reason=reason) == 0


async def test_reporter_when_agent_sends_orders_then_one_decision_to_order_time_each(db, tmp_path):
    agent, metrics = replay_agent(db, tmp_path, start="2017-01-01"), Metrics()

    await _run(agent, metrics)

    orders = await _rows(db, Order)
    assert len(orders) > 2
    assert _value(metrics, "ffe_decision_to_order_seconds_count") == len(orders)
    total = _value(metrics, "ffe_decision_to_order_seconds_sum")
    assert total is not None
    assert total > 0


Halts = list[tuple[bool, bool, float | None, float | None]]


def _watch_halts(agent: Any, metrics: Metrics) -> Halts:
    """Each bar's halts as the agent reported them, and the gauges once the reporter (which
    watches first) has seen that bar."""
    seen: Halts = []

    def on_bar(report: BarReport) -> None:
        daily = _value(metrics, "ffe_risk_halted", account="paper", reason="daily_loss")
        drawdown = _value(metrics, "ffe_risk_halted", account="paper", reason="drawdown")
        seen.append((report.daily_loss_halted, report.drawdown_halted, daily, drawdown))

    agent.watch(on_bar=on_bar)
    return seen


async def test_reporter_when_drawdown_limit_reached_then_risk_halted_drawdown_1_from_that_bar(
    db, tmp_path
):
    risk = RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=0.03)
    agent, metrics = replay_agent(db, tmp_path, start="2017-01-01", risk=risk), Metrics()
    reporter = AgentReporter(Recorder(), metrics, equity_interval_s=0.0)
    reporter.attach(agent)
    seen = _watch_halts(agent, metrics)

    await agent.run()
    await reporter.settle()

    halted_at = agent.core.halted_at
    assert halted_at is not None
    assert 0 < halted_at < len(seen) - 1
    assert all(drawdown == 0 for _, _, _, drawdown in seen[:halted_at])
    assert all(drawdown == 1 for _, _, _, drawdown in seen[halted_at:])
    assert all(daily == 0 for _, _, daily, _ in seen)


async def test_reporter_when_daily_loss_switch_trips_then_risk_halted_daily_loss_1_that_day(
    db, make_market
):
    # Hourly bars over three days: flat, a crash on the second day, a recovery on the third.
    closes = [100.0] * 24 + [100.0 - 1.5 * k for k in range(1, 25)] + [70.0 + k for k in range(24)]
    daily = make_market(closes)
    market = type(daily)(
        daily.symbols,
        daily.times[0] + (daily.times - daily.times[0]) // 24,
        daily.open,
        daily.high,
        daily.low,
        daily.close,
        daily.volume,
    )
    risk = RiskEngine([MaxDailyLoss(0.05), MaxPositionPct(1.0), MaxGrossLeverage(1.0)])
    strategy = make_strategy("buy_and_hold", {})
    agent = paper_agent(db, market, strategy, {}, AgentConfig(), risk)
    metrics = Metrics()
    reporter = AgentReporter(Recorder(), metrics, equity_interval_s=0.0)
    reporter.attach(agent)
    seen = _watch_halts(agent, metrics)

    await agent.run()
    await reporter.settle()

    halted = [bar for bar, (tripped, *_) in enumerate(seen) if tripped]
    assert halted  # from a bar of the crash's day to that day's end
    assert halted[0] > 24
    assert halted[-1] == 47
    assert [daily for _, _, daily, _ in seen] == [float(bar in halted) for bar in range(72)]
    assert {drawdown for *_, drawdown in seen} == {0.0}


async def test_reporter_when_ensemble_decides_then_forecast_times_weights_and_outcomes(
    db, tmp_path
):
    agent = replay_agent(db, tmp_path, "ensemble", start="2017-01-01", params=ENSEMBLE)
    metrics = Metrics()
    votes: list[tuple[tuple[str, float], ...]] = []
    agent.watch(on_decisions=lambda made: votes.extend(d.votes for d in made.decisions))

    await _run(agent, metrics)

    decisions = await _rows(db, Decision)
    assert len(decisions) > 20
    # Each model forecasts once a bar from the first window's end (the weights learn from
    # every bar): every 5th of those bars is a decision, the first included.
    for model in ("naive", "drift"):
        count = _value(metrics, "ffe_forecast_duration_seconds_count", model=model)
        assert count is not None
        assert math.ceil(count / ENSEMBLE["every"]) == len(decisions)
        seconds = _value(metrics, "ffe_forecast_duration_seconds_sum", model=model)
        assert seconds is not None
        assert 0 < seconds < 10
    latest = dict(votes[-1])
    weights = {m: _value(metrics, "ffe_ensemble_weight", symbol="SP500", model=m) for m in latest}
    assert weights == pytest.approx(latest, rel=1e-12)
    assert sum(weights.values()) == pytest.approx(1.0)
    assert len({round(w, 6) for w in weights.values()}) == 2  # learned, not equal weights
    confidence = {row.id: row.confidence for row in decisions}
    judged = Counter(
        (_bin(confidence[row.decision_id]), "hit" if row.hit else "miss")
        for row in await _rows(db, DecisionOutcome)
    )
    assert sum(judged.values()) > 10
    assert len(judged) > 2  # several bins, both outcomes
    counted = {
        (b, result): _value(
            metrics, "ffe_decision_outcomes_total", confidence_bin=b, outcome=result
        )
        for b in CONFIDENCE_BINS
        for result in ("hit", "miss")
    }
    assert {k: v for k, v in counted.items() if v} == dict(judged)


def _bin(confidence: float) -> str:
    return CONFIDENCE_BINS[min(math.floor(confidence * 10), 9)]
