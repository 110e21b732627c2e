"""Background work that fails while the journal is down (PostgreSQL refusing connections) is
logged once, and its failure retrieved: no "Task exception was never retrieved" tracebacks."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from tests.conftest import _admin
from tests.support.wait import wait_for

from ffe.domain.errors import StoreError
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


def _refused(url: str) -> bool:
    """Whether a new connection to the journal is refused now (the outage is in place)."""

    async def attempt() -> None:
        async with Database(url) as db, db.session() as session:
            await session.execute(text("SELECT 1"))

    try:
        asyncio.run(attempt())
    except StoreError as exc:
        return "not currently accepting connections" in str(exc)
    return False


def _gate_state_reads(api, opened: threading.Event) -> None:  # type: ignore[no-untyped-def]
    """The agent's state is read (to be published after a command) only once ``opened``:
    the reads then meet the outage, however late a loaded machine puts it in place."""
    agents = api.services.agents
    status = agents.status

    async def gated(account: str | None = None):  # type: ignore[no-untyped-def]
        await asyncio.to_thread(opened.wait, 60)
        return await status(account)

    agents.status = gated


def _logged(caplog: pytest.LogCaptureFixture, start: str) -> bool:
    return any(
        r.name == "ffe.service.background" and r.getMessage().startswith(start)
        for r in list(caplog.records)
    )


def _polled_through_an_outage(api, url: str, caplog: pytest.LogCaptureFixture) -> list[int]:  # type: ignore[no-untyped-def]
    """Pause the agent, take the journal down, and poll the portfolio until its refresh
    behind the answer and the state published after the command have failed; the polls'
    statuses."""
    headers = api.headers("trader")
    outage = threading.Event()
    _gate_state_reads(api, outage)
    paused = api.client.post("/api/v1/agent/pause", json={}, headers=headers)
    assert paused.status_code == 200, paused.text

    _outage(url)
    wait_for(lambda: _refused(url), timeout=30)
    outage.set()  # the state published after the command reads the journal, and fails
    statuses: list[int] = []

    def portfolio_refresh_failed() -> bool:
        # Once its answer expires, a poll gets it and refreshes it behind, which fails.
        statuses.append(api.client.get("/api/v1/portfolio", headers=headers).status_code)
        return _logged(caplog, "refreshing portfolio:")

    wait_for(portfolio_refresh_failed, timeout=30, every=0.2)
    statuses.append(api.client.get("/api/v1/portfolio", headers=headers).status_code)
    account = api.settings.agent.account
    wait_for(lambda: _logged(caplog, f"publishing the state of agent {account}"), timeout=30)
    gc.collect()
    return statuses


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
        statuses = _polled_through_an_outage(api, url, caplog)

    never = [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert never == [], [r.getMessage() for r in never]
    assert len(statuses) >= 2
    assert set(statuses) == {200}  # the last answer, while the refresh behind it fails
    logged = [r.getMessage() for r in caplog.records if r.name == "ffe.service.background"]
    assert any(m.startswith("refreshing portfolio:") for m in logged), logged
    assert any(m.startswith(f"publishing the state of agent {account}") for m in logged), logged
    assert all("not currently accepting connections" in m for m in logged), logged
