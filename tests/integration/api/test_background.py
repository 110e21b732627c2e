"""Background work that fails while the journal is down (PostgreSQL refusing connections) is
logged once, and its failure retrieved: no "Task exception was never retrieved" tracebacks."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from tests.conftest import _admin

from ffe.store.database import Database
from ffe.store.models import AgentState

from .conftest import make_api


def _outage(database_url: str) -> None:
    """The test database refuses new connections and loses the ones it had."""
    name = database_url.rpartition("/")[2]
    _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    _admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    )


async def _migrate(url: str) -> None:
    from ffe.store import migrate

    async with Database(url) as db:
        await migrate.upgrade(db)


async def _agent_runs_elsewhere(db: Database, account: str) -> None:
    """An agent on another machine holds the account's lease, so a command is queued for it."""
    expires = datetime.now(UTC) + timedelta(minutes=5)
    async with db.session() as session:
        session.add(
            AgentState(
                account=account, status="running", owner="elsewhere:1:x", lease_expires_at=expires
            )
        )


def test_journal_down_when_portfolio_polled_and_agent_commanded_then_no_unretrieved_task(
    monkeypatch: pytest.MonkeyPatch,
    new_postgres_database: Callable[[], str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = new_postgres_database()
    asyncio.run(_migrate(url))
    caplog.set_level(logging.WARNING)
    for api in make_api(monkeypatch, FFE__DATABASE__URL=url, FFE__API__RATE_LIMIT="100000"):
        headers = api.headers("trader")
        account = api.settings.agent.account
        api.client.portal.call(_agent_runs_elsewhere, api.services.db, account)  # type: ignore[union-attr]
        assert api.client.get("/api/v1/portfolio", headers=headers).status_code == 200
        paused = api.client.post("/api/v1/agent/pause", json={}, headers=headers)
        assert paused.status_code == 200, paused.text

        _outage(url)
        time.sleep(1.2)  # the portfolio's answer expires: the next poll refreshes it behind
        statuses = [api.client.get("/api/v1/portfolio", headers=headers).status_code]
        time.sleep(2.5)  # the state published after the command reads the journal, and fails
        statuses += [api.client.get("/api/v1/portfolio", headers=headers).status_code]
        time.sleep(0.5)
        gc.collect()

    never = [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert never == [], [r.getMessage() for r in never]
    assert statuses == [200, 200]  # the last answer, while the refresh behind it fails
    logged = [r.getMessage() for r in caplog.records if r.name == "ffe.api.background"]
    assert any(m.startswith("refreshing portfolio:") for m in logged), logged
    assert any(m.startswith(f"publishing the state of agent {account}") for m in logged), logged
    assert all("not currently accepting connections" in m for m in logged), logged
