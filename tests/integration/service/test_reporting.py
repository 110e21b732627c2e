"""An agent's reports, as the API's supervisor and ``ffe agent run`` both send them: every
decision from the run's first bar, every fill, equity at most five times a second, its state
on start; the metrics; the agent's other watchers still told."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from tests.support.agents import Recorder, replay_agent, sqlite_journal

from ffe.obs.metrics import Metrics
from ffe.service.reporting import AgentReporter
from ffe.store.database import Database
from ffe.store.models import Decision, Fill


@pytest.fixture
async def db(tmp_path):
    async with sqlite_journal(tmp_path) as database:
        yield database


def _agent(db: Database, tmp_path: Any, strategy: str = "sma_cross") -> Any:
    return replay_agent(db, tmp_path, strategy, start="2017-01-01")


async def _count(db: Database, model: Any) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_reporter_when_agent_runs_then_every_decision_and_fill_and_its_state(db, tmp_path):
    agent = _agent(db, tmp_path)
    bars: list[int] = []
    agent.watch(on_bar=lambda report: bars.append(report.bar))  # another watcher: still told
    published, metrics = Recorder(), Metrics()
    reporter = AgentReporter(published, metrics, equity_interval_s=3600.0)
    reporter.attach(agent)

    report = await agent.run()
    await reporter.settle()

    decisions, fills = published.of("decision"), published.of("fill")
    assert len(decisions) == await _count(db, Decision) > 20  # none missed, the first neither
    assert set(decisions[0]) == {
        "account", "time", "bar", "symbol", "target", "action", "confidence", "rationale",
    }  # fmt: skip
    assert len(fills) == await _count(db, Fill) > 5
    assert {"kind", "text", "symbol", "quantity", "price", "account"} <= set(fills[0])
    assert fills[0]["price"] > 0
    equity = published.of("equity")
    assert len(equity) == 1  # once an hour at most here
    assert set(equity[0]) == {"account", "time", "bar", "equity", "cash"}
    assert published.of("agent")[0]["running"] is True  # on start, from the journal
    assert bars == list(range(report.bars))
    counted = sum(
        metrics.registry.get_sample_value("ffe_decisions_total", {"symbol": "SP500", "action": a})
        or 0.0
        for a in ("buy", "sell", "flat", "hold")
    )
    assert counted == len(decisions)
    value = metrics.registry.get_sample_value("ffe_portfolio_value", {"account": "paper"})
    assert value == equity[0]["equity"]


async def test_reporter_when_the_strategy_decides_on_the_first_bar_then_that_decision_too(
    db, tmp_path
):
    agent = _agent(db, tmp_path, "buy_and_hold")
    published = Recorder()
    reporter = AgentReporter(published, Metrics())
    reporter.attach(agent)

    await agent.run()
    await reporter.settle()

    assert [d["bar"] for d in published.of("decision")][:1] == [0]
    assert len(published.of("decision")) == await _count(db, Decision)


async def test_reporter_drawdown_when_run_then_the_journals_and_a_seeded_worse_one_kept(
    db, tmp_path
):
    from ffe.service.runs import journal_drawdown

    agent = _agent(db, tmp_path)
    reporter = AgentReporter(Recorder(), Metrics())
    reporter.attach(agent)

    await agent.run()
    await reporter.settle()
    peak, worst = await journal_drawdown(db, agent.core.journal.run_id)
    tracked = (reporter.peak, reporter.max_drawdown)
    reporter.seed(peak=1.0, worst=-0.99)

    assert tracked[0] == pytest.approx(peak, rel=1e-12)
    assert tracked[1] == pytest.approx(worst, rel=1e-9)
    assert worst < 0
    assert (reporter.peak, reporter.max_drawdown) == (tracked[0], -0.99)
