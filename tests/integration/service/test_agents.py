"""An agent run by ``ffe.service.agents``: in a process of its own it is ready only while it
holds its account's lease, a probe port already taken stops it before it trades, saying
what to change, and a journal failure under it restarts it in the process on its run once
the journal answers; a session reports the run's drawdown from its journal."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from ffe import bootstrap
from ffe.config import Settings
from ffe.domain.errors import ConfigError
from ffe.kv.events import DiscardingPublisher
from ffe.obs.metrics import Metrics
from ffe.service import supervisor as supervision
from ffe.service.agents import AgentLaunch, AgentLauncher, AgentSession, agent_checks
from ffe.service.supervisor import AgentSupervisor, serve_supervised

LAUNCH = AgentLaunch(
    "sma_cross", ["SP500"], {"fast": 5, "slow": 10}, speed=None, start="2018-01-01"
)


async def _agent(settings: Settings) -> Any:
    return await bootstrap.agent(
        settings, "sma_cross", {"fast": 5, "slow": 10}, ["SP500"], start="2018-01-01"
    )


def _launcher(settings: Settings) -> AgentLauncher:
    return AgentLauncher(bootstrap.components(settings).agent, DiscardingPublisher(), Metrics())


def _supervisor(settings: Settings, launcher: AgentLauncher | None = None) -> AgentSupervisor:
    made = launcher or _launcher(settings)
    return AgentSupervisor(made, bootstrap.components(settings).catalog(), "paper")


async def test_readiness_when_the_agent_holds_its_lease_then_ok_and_after_its_end_not(tmp_path):
    settings = Settings(data={"dir": tmp_path})  # type: ignore[arg-type]
    agent = await _agent(settings)
    checks = agent_checks(agent)
    during: list[Any] = []

    async def look(run_id: str) -> None:
        during.append(await checks.run())

    agent.watch(on_open=look)
    try:
        await agent.run()
        after = await checks.run()
    finally:
        await agent.db.dispose()

    assert during[0].ok, during[0].as_dict()
    assert not after.ok
    lease = after.as_dict()["checks"]["lease"]
    assert "does not hold the lease on account 'paper' (held by nobody)" in lease["detail"]
    assert after.as_dict()["checks"]["journal"]["ok"] is True


async def test_serve_when_its_probe_port_is_taken_then_config_error_and_nothing_traded(
    tmp_path,
):
    settings = Settings(data={"dir": tmp_path})  # type: ignore[arg-type]
    supervisor = _supervisor(settings)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="pick another --health-port"):
            await serve_supervised(supervisor, LAUNCH, health_port=port)

    assert supervisor.agent is None  # never even built


async def test_serve_when_the_journal_fails_then_restarted_in_the_process_on_its_run(
    tmp_path, monkeypatch
):
    """The journal fails under a running agent: the session ends, and the same process
    builds the agent again once the journal answers, with the lease its owner held, on the
    same run, which it finishes."""
    monkeypatch.setattr(supervision, "RESTART_BACKOFF_S", (0.2, 1.0))
    settings = Settings(data={"dir": tmp_path}, agent={"flush_every": 4})  # type: ignore[arg-type]
    supervisor = _supervisor(settings)
    sessions: list[AgentSession] = []
    failing = {"on": False}

    def attach(session: AgentSession) -> None:
        sessions.append(session)
        if len(sessions) == 1:  # the first fails at bar 100: its journal stops answering
            session.agent.watch(on_bar=lambda report: report.bar == 100 and failing.update(on=True))

    def fail(*_: Any) -> None:
        if failing["on"]:
            raise sqlite3.OperationalError("database or disk is full")

    supervisor.on_session = attach
    event.listen(Engine, "before_cursor_execute", fail)
    try:
        serving = asyncio.create_task(serve_supervised(supervisor, LAUNCH))
        async with asyncio.timeout(30):
            while not supervisor.restarting:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the outage goes on: rebuilds are tried and fail
        failing["on"] = False
        report = await asyncio.wait_for(serving, 60)
    finally:
        event.remove(Engine, "before_cursor_execute", fail)

    assert len(sessions) == 2
    assert sessions[1].agent.owner == sessions[0].agent.owner  # its lease taken back at once
    assert supervisor.restarts == 1
    assert report.resumed
    assert report.run_id == sessions[0].agent.run_id
    assert report.status == "finished"


async def test_session_when_resumed_after_a_stop_then_the_runs_drawdown_carried_over(tmp_path):
    settings = Settings(data={"dir": tmp_path})  # type: ignore[arg-type]
    launcher = _launcher(settings)
    opened: list[AgentSession] = []
    seen: list[tuple[float, float]] = []

    def stop_at_150(session: AgentSession) -> None:
        opened.append(session)
        session.agent.watch(on_bar=lambda report: report.bar >= 150 and session.request_stop())

    def look_before_first_bar(session: AgentSession) -> None:
        async def before_first_bar(run_id: str) -> None:
            seen.append((session.peak, session.max_drawdown))

        session.agent.watch(on_open=before_first_bar)

    first = _supervisor(settings, launcher)
    first.on_session = stop_at_150
    stopped = await serve_supervised(first, LAUNCH)
    tracked = (opened[0].peak, opened[0].max_drawdown)
    again = _supervisor(settings, launcher)
    again.on_session = look_before_first_bar
    resumed = await serve_supervised(again, LAUNCH)

    assert (stopped.status, resumed.resumed) == ("interrupted", True)
    assert resumed.run_id == stopped.run_id
    assert tracked[1] < 0
    assert seen[0][0] == pytest.approx(tracked[0], rel=1e-12)
    assert seen[0][1] == pytest.approx(tracked[1], rel=1e-9)
