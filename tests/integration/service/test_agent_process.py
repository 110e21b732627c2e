"""An agent in a process of its own: ready only while it holds its account's lease; a probe
port already taken stops it before it trades, saying what to change."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from ffe import bootstrap
from ffe.config import Settings
from ffe.domain.errors import ConfigError
from ffe.service.agent_process import agent_checks, run_agent


async def _agent(settings: Settings) -> Any:
    return await bootstrap.agent(
        settings, "sma_cross", {"fast": 5, "slow": 10}, ["SP500"], start="2018-01-01"
    )


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


async def test_run_agent_when_its_probe_port_is_taken_then_config_error_and_nothing_traded(
    tmp_path,
):
    settings = Settings(data={"dir": tmp_path})  # type: ignore[arg-type]
    agent = await _agent(settings)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="pick another --health-port"):
            await run_agent(settings, agent, health_port=port)

    assert agent.core is None  # it never started its run
