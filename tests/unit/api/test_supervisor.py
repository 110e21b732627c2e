"""The supervisor of the agent in the API: a failure of the supervision itself (a rebuild or
a cleanup failing with an unforeseen error) is told in ``error`` and logged, never left as a
task exception nobody retrieves."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from ffe.api import supervisor
from ffe.api.supervisor import AgentLaunch, AgentSupervisor
from ffe.config import Settings
from ffe.domain.errors import StoreError


class _FakeDb:
    def __init__(self, failure: Exception | None = None) -> None:
        self.failure = failure

    async def dispose(self) -> None:
        if self.failure is not None:
            raise self.failure


class _FakeAgent:
    """An agent whose run ends with ``failure`` (or finishes)."""

    def __init__(self, failure: Exception | None = None, db: _FakeDb | None = None) -> None:
        self.failure, self.db = failure, db or _FakeDb()
        self.owner = "thishost:1:fake"
        self.config = SimpleNamespace(account="paper")

    async def run(self) -> Any:
        if self.failure is not None:
            raise self.failure
        return SimpleNamespace(run_id="0123456789", status="finished", bars=3)

    def request_stop(self) -> None:
        pass


def _supervisor(monkeypatch: pytest.MonkeyPatch, *agents: Any) -> AgentSupervisor:
    """A supervisor whose builds give ``agents`` in turn (an exception is raised)."""
    watched = AgentSupervisor(Settings(), kv=None, metrics=None)  # type: ignore[arg-type]
    built = iter(agents)

    async def build(launch: AgentLaunch, owner: str | None = None) -> Any:
        agent = next(built)
        if isinstance(agent, Exception):
            raise agent
        watched.agent = agent
        return agent

    async def no_state(agent: Any) -> None:
        pass

    monkeypatch.setattr(watched, "_build", build)
    monkeypatch.setattr(watched, "_emit_state", no_state)
    monkeypatch.setattr(supervisor, "RESTART_BACKOFF_S", (0.01, 0.1))
    return watched


async def _ended(watched: AgentSupervisor) -> asyncio.Task[Any]:
    task = watched.task
    assert task is not None
    await asyncio.wait([task], timeout=5)
    return task


async def test_restart_when_the_rebuild_fails_unforeseen_then_error_set_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broken = RuntimeError("the strategy's library failed to import")
    watched = _supervisor(monkeypatch, _FakeAgent(StoreError("journal down")), broken)
    caplog.set_level(logging.ERROR, logger="ffe.api.supervisor")

    await watched.start(AgentLaunch())
    task = await _ended(watched)

    assert task.done()
    assert task.exception() is None
    assert watched.error == "RuntimeError: the strategy's library failed to import"
    assert watched.describe()["running"] is False
    assert watched.describe()["restarting"] is False
    assert any("not restarted" in r.getMessage() for r in caplog.records)


async def test_agent_when_its_journal_cannot_be_closed_then_error_set_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stuck = _FakeDb(RuntimeError("connection pool broken"))
    watched = _supervisor(monkeypatch, _FakeAgent(db=stuck))
    caplog.set_level(logging.ERROR, logger="ffe.api.supervisor")

    await watched.start(AgentLaunch())
    task = await _ended(watched)

    assert task.done()
    assert task.exception() is None
    assert watched.error == "RuntimeError: connection pool broken"
    assert any("could not close its journal" in r.getMessage() for r in caplog.records)


async def test_supervision_when_it_fails_unforeseen_then_error_set_and_not_left_unretrieved(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    watched = _supervisor(monkeypatch, _FakeAgent())

    async def broken(agent: Any) -> BaseException | None:
        raise RuntimeError("a bug in the supervisor")

    monkeypatch.setattr(watched, "_run", broken)
    caplog.set_level(logging.ERROR, logger="ffe.api.supervisor")

    await watched.start(AgentLaunch())
    task = await _ended(watched)

    assert task.exception() is None
    assert watched.error == "RuntimeError: a bug in the supervisor"
    assert any("not restarted" in r.getMessage() for r in caplog.records)
