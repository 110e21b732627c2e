"""The supervisor of the agent in the API: a failure of the supervision itself (a rebuild or
a cleanup failing with an unforeseen error) is told in ``error`` and logged, never left as a
task exception nobody retrieves; a journal failure restarts the agent on its lease."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from tests.support.agents import Recorder

from ffe.data import DataCatalog
from ffe.domain.errors import StoreError
from ffe.obs.metrics import Metrics
from ffe.service import supervisor
from ffe.service.agents import AgentLaunch, AgentSession
from ffe.service.reporting import AgentReporter
from ffe.service.supervisor import AgentSupervisor


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
        self.spec = SimpleNamespace(params={})
        self.breaker = None

    def watch(self, **hooks: Any) -> None:
        pass

    async def run(self) -> Any:
        if self.failure is not None:
            raise self.failure
        return SimpleNamespace(run_id="0123456789", status="finished", bars=3)

    async def status(self) -> None:
        return None

    def request_stop(self) -> None:
        pass


class _FakeLauncher:
    """Opens sessions over ``agents`` in turn (an exception is raised), and says for whom."""

    def __init__(self, *agents: Any) -> None:
        self.built = iter(agents)
        self.owners: list[str | None] = []
        self.metrics = Metrics()

    async def open(self, launch: AgentLaunch, *, owner: str | None = None) -> AgentSession:
        self.owners.append(owner)
        agent = next(self.built)
        if isinstance(agent, Exception):
            raise agent
        return AgentSession(agent, AgentReporter(Recorder(), self.metrics))


def _supervisor(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *agents: Any
) -> tuple[AgentSupervisor, _FakeLauncher]:
    launcher = _FakeLauncher(*agents)
    watched = AgentSupervisor(launcher, DataCatalog(tmp_path), "paper")  # type: ignore[arg-type]
    monkeypatch.setattr(supervisor, "RESTART_BACKOFF_S", (0.01, 0.1))
    return watched, launcher


async def _ended(watched: AgentSupervisor) -> asyncio.Task[Any]:
    task = watched.task
    assert task is not None
    await asyncio.wait([task], timeout=5)
    return task


async def test_restart_when_the_rebuild_fails_unforeseen_then_error_set_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    broken = RuntimeError("the strategy's library failed to import")
    watched, _ = _supervisor(monkeypatch, tmp_path, _FakeAgent(StoreError("journal down")), broken)
    caplog.set_level(logging.ERROR, logger="ffe.service.supervisor")

    await watched.start(AgentLaunch())
    task = await _ended(watched)

    assert task.done()
    assert task.exception() is None
    assert watched.error == "RuntimeError: the strategy's library failed to import"
    assert watched.describe()["running"] is False
    assert watched.describe()["restarting"] is False
    assert any("not restarted" in r.getMessage() for r in caplog.records)


async def test_restart_when_the_journal_failed_then_rebuilt_on_the_lease_it_held(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = _FakeAgent(StoreError("journal down"))
    watched, launcher = _supervisor(monkeypatch, tmp_path, first, _FakeAgent())

    await watched.start(AgentLaunch())
    task = await _ended(watched)

    assert task.exception() is None
    assert launcher.owners == [None, first.owner]
    assert watched.restarts == 1
    assert watched.describe()["running"] is False  # the restarted agent finished


async def test_agent_when_its_journal_cannot_be_closed_then_error_set_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    stuck = _FakeDb(RuntimeError("connection pool broken"))
    watched, _ = _supervisor(monkeypatch, tmp_path, _FakeAgent(db=stuck))
    caplog.set_level(logging.ERROR, logger="ffe.service.agents")

    await watched.start(AgentLaunch())
    task = await _ended(watched)

    assert task.done()
    assert task.exception() is None
    assert watched.error == "RuntimeError: connection pool broken"
    assert any("could not close its journal" in r.getMessage() for r in caplog.records)


async def test_supervision_when_it_fails_unforeseen_then_error_set_and_not_left_unretrieved(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    watched, _ = _supervisor(monkeypatch, tmp_path, _FakeAgent())

    async def broken(session: Any) -> BaseException | None:
        raise RuntimeError("a bug in the supervisor")

    monkeypatch.setattr(watched, "_run", broken)
    caplog.set_level(logging.ERROR, logger="ffe.service.supervisor")

    await watched.start(AgentLaunch())
    task = await _ended(watched)

    assert task.exception() is None
    assert watched.error == "RuntimeError: a bug in the supervisor"
    assert any("not restarted" in r.getMessage() for r in caplog.records)


class _ReplayAgent(_FakeAgent):
    """An agent whose replay ran to the end of the data, with a backtest's statistics."""

    def __init__(self, *, live: bool = False) -> None:
        super().__init__()
        self.spec = SimpleNamespace(params={"fast": 50, "slow": 200}, strategy="sma_cross")
        self.config = SimpleNamespace(
            account="paper",
            fill=SimpleNamespace(commission=0.001, slippage_bps=2.0, fixed_commission=0.0),
        )
        self.clock = SimpleNamespace(live=live)
        self.market = SimpleNamespace(symbols=("SP500",))

    async def run(self) -> Any:
        stats = {"total_return": 0.48, "buy_and_hold_return": 1.21, "max_drawdown": -0.26}
        stats |= {"n_trades": 7, "win_rate": 2 / 7}
        return SimpleNamespace(run_id="0123456789", status="finished", bars=3, stats=stats)


async def test_replay_when_it_reached_the_end_then_finished_with_its_summary(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    watched, _ = _supervisor(monkeypatch, tmp_path, _ReplayAgent())

    await watched.start(AgentLaunch(start="2010-01-01"))
    await _ended(watched)

    described = watched.describe()
    assert described["finished"] is True
    assert described["summary"]["trades"] == 7
    assert described["summary"]["beat_benchmark"] is False
    assert "--start 2010-01-01" in described["summary"]["next_steps"][1]


async def test_live_clock_when_it_ended_then_no_summary(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    watched, _ = _supervisor(monkeypatch, tmp_path, _ReplayAgent(live=True))

    await watched.start(AgentLaunch())
    await _ended(watched)

    assert watched.describe()["finished"] is False
    assert watched.describe()["summary"] is None
    assert watched.error is None  # no summary is no failure
