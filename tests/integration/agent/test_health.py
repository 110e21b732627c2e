"""The agent's health check reads the lease the agent renews in the journal, so it tells a
running agent, one stopped on purpose, one killed and one halted apart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from tests.support.agents import sqlite_journal

from ffe.agent.health import agent_probe
from ffe.agent.persist import LEASE_TTL
from ffe.obs.health import ProbeError
from ffe.store.models import AgentState

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.fixture
async def db(tmp_path):
    async with sqlite_journal(tmp_path) as database:
        yield database


async def _state(db, account="paper", **values) -> None:
    async with db.session() as session:
        session.add(AgentState(account=account, **values))
        await session.commit()


async def _probe(db, account="paper") -> str:
    return await agent_probe(db, account, now=lambda: NOW)()


async def test_agent_probe_when_no_agent_ever_ran_then_fails_naming_other_accounts(db):
    await _state(db, account="swing", status="stopped", updated_at=NOW)

    with pytest.raises(ProbeError, match=r"no agent has run on account 'paper' yet.*swing"):
        await _probe(db)


async def test_agent_probe_when_agent_runs_then_ok_with_heartbeat_age(db):
    renewed = NOW - timedelta(seconds=4)
    await _state(
        db, status="running", owner="host:1", lease_expires_at=renewed + LEASE_TTL, updated_at=NOW
    )

    detail = await _probe(db)

    assert detail.startswith("agent on paper running")
    assert detail.endswith("last heartbeat 4s ago")


async def test_agent_probe_when_agent_finished_then_ok_and_says_when_it_stopped(db):
    await _state(db, status="stopped", run_id=None, updated_at=NOW - timedelta(minutes=5))

    detail = await _probe(db)

    assert detail == "no agent running on paper; the last one (run ?) stopped 0:05:00 ago"


async def test_agent_probe_when_lease_lapsed_while_running_then_fails_as_killed(db):
    await _state(
        db,
        status="running",
        owner="host:1",
        lease_expires_at=NOW - timedelta(seconds=90),
        updated_at=NOW - timedelta(seconds=100),
    )

    with pytest.raises(ProbeError, match=r"stopped renewing its lease 100s ago.*killed"):
        await _probe(db)


async def test_agent_probe_when_halted_then_fails_with_the_reason(db):
    await _state(db, status="halted", halted_reason="max drawdown 20% hit", updated_at=NOW)

    with pytest.raises(ProbeError, match=r"halted 0s ago.*max drawdown 20% hit.*agent reset"):
        await _probe(db)
