"""An agent run by ``ffe.service.agents``: in a process of its own it is ready only while it
holds its account's lease, and a probe port already taken stops it before it trades, saying
what to change; a session reports the run's drawdown from its journal."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from ffe import bootstrap
from ffe.config import Settings
from ffe.domain.errors import ConfigError
from ffe.kv.events import DiscardingPublisher
from ffe.obs.metrics import Metrics
from ffe.service.agents import AgentLaunch, AgentLauncher, agent_checks, serve_agent

LAUNCH = AgentLaunch(
    "sma_cross", ["SP500"], {"fast": 5, "slow": 10}, speed=None, start="2018-01-01"
)


async def _agent(settings: Settings) -> Any:
    return await bootstrap.agent(
        settings, "sma_cross", {"fast": 5, "slow": 10}, ["SP500"], start="2018-01-01"
    )


def _launcher(settings: Settings) -> AgentLauncher:
    return AgentLauncher(bootstrap.components(settings).agent, DiscardingPublisher(), Metrics())


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


async def test_serve_agent_when_its_probe_port_is_taken_then_config_error_and_nothing_traded(
    tmp_path,
):
    settings = Settings(data={"dir": tmp_path})  # type: ignore[arg-type]
    session = await _launcher(settings).open(LAUNCH)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="pick another --health-port"):
            await serve_agent(session, health_port=port)

    assert session.agent.run_id is None  # it never started its run


async def test_session_when_resumed_after_a_stop_then_the_runs_drawdown_carried_over(tmp_path):
    settings = Settings(data={"dir": tmp_path})  # type: ignore[arg-type]
    launcher = _launcher(settings)
    first = await launcher.open(LAUNCH)
    first.agent.watch(on_bar=lambda report: report.bar >= 150 and first.request_stop())
    stopped = await serve_agent(first)
    tracked = (first.peak, first.max_drawdown)
    again = await launcher.open(LAUNCH)
    seen: list[tuple[float, float]] = []

    async def before_first_bar(run_id: str) -> None:
        seen.append((again.peak, again.max_drawdown))

    again.agent.watch(on_open=before_first_bar)
    resumed = await serve_agent(again)

    assert (stopped.status, resumed.resumed) == ("interrupted", True)
    assert resumed.run_id == stopped.run_id
    assert tracked[1] < 0
    assert seen[0][0] == pytest.approx(tracked[0], rel=1e-12)
    assert seen[0][1] == pytest.approx(tracked[1], rel=1e-9)
