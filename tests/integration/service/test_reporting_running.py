"""``ffe_agent_running`` as a real agent's reporter exports it: 1 while the agent runs, 0 once
it ended on purpose (the replay finished, a stop command, the owner's stop or cancellation)
or while it is paused; a failure leaves it at 1, so the heartbeat alert still pages."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.support.agents import Recorder, replay_agent, sqlite_journal

from ffe.agent import persist
from ffe.agent.control import AgentService
from ffe.agent.reports import BarReport
from ffe.obs.metrics import Metrics
from ffe.service.reporting import AgentReporter


@pytest.fixture
async def db(tmp_path):
    async with sqlite_journal(tmp_path) as database:
        yield database


def _running(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("ffe_agent_running", {"account": "paper"})


def _reported(db: Any, tmp_path: Any, **config: Any) -> tuple[Any, Metrics, list[float | None]]:
    """A replay agent watched by a reporter, and the gauge as seen after each of its bars."""
    agent = replay_agent(db, tmp_path, start="2017-01-01", command_poll_s=0.02, **config)
    metrics = Metrics()
    AgentReporter(Recorder(), metrics, equity_interval_s=0.0).attach(agent)
    seen: list[float | None] = []
    agent.watch(on_bar=lambda _: seen.append(_running(metrics)))
    return agent, metrics, seen


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_agent_running_when_replay_runs_to_its_end_then_1_each_bar_and_0_after(db, tmp_path):
    agent, metrics, seen = _reported(db, tmp_path)
    assert _running(metrics) is None  # not before it starts

    report = await agent.run()

    assert report.status == "finished"
    assert len(seen) > 100
    assert set(seen) == {1.0}
    assert _running(metrics) == 0
    assert (await persist.get_state(db, "paper")).status == "stopped"


async def test_agent_running_when_stop_command_then_0_and_paused_0_resumed_1(db, tmp_path):
    agent, metrics, _ = _reported(db, tmp_path, speed=400)
    service = AgentService(db)
    task = asyncio.create_task(agent.run())
    await _until(lambda: agent.core is not None and agent.core.last_bar > 10)
    running = _running(metrics)

    await service.command("paper", "pause")
    await _until(lambda: agent.paused)
    paused = _running(metrics)
    await service.command("paper", "resume")
    await _until(lambda: not agent.paused)
    resumed = _running(metrics)
    beat = metrics.registry.get_sample_value(
        "ffe_agent_heartbeat_timestamp_seconds", {"account": "paper"}
    )
    await service.command("paper", "stop")
    report = await task

    assert (running, paused, resumed) == (1, 0, 1)
    assert beat is not None  # resuming is a beat: the alert does not wait for the next bar
    assert report.status == "interrupted"
    assert _running(metrics) == 0


async def test_agent_running_when_emergency_stopped_then_still_1_it_steps_and_beats(db, tmp_path):
    agent, metrics, seen = _reported(db, tmp_path, speed=400)
    task = asyncio.create_task(agent.run())
    await _until(lambda: agent.core is not None and agent.core.last_bar > 10)

    await AgentService(db).command("paper", "emergency_stop")
    await _until(lambda: agent.emergency is not None)
    halted_at = len(seen)
    await _until(lambda: len(seen) > halted_at + 5)
    agent.request_stop()  # the owner's stop (the API's, a signal to `ffe agent run`)
    await task

    assert set(seen[halted_at:]) == {1.0}
    assert _running(metrics) == 0


async def test_agent_running_when_agent_fails_then_stays_1_so_its_heartbeat_pages(db, tmp_path):
    agent, metrics, _ = _reported(db, tmp_path)

    def fail(report: BarReport) -> None:
        if report.bar > 20:
            raise RuntimeError("the strategy broke")

    agent.watch(on_bar=fail)
    with pytest.raises(RuntimeError, match="the strategy broke"):
        await agent.run()

    assert _running(metrics) == 1
    # The journal says so too, for the API's tail of an agent in another process: the lease
    # is given up, the state left "running" (read as stopped: nobody holds the lease).
    state = await persist.get_state(db, "paper")
    assert (state.owner, state.status) == (None, "running")
    assert (await AgentService(db).status("paper"))[0].status == "stopped"


async def test_agent_running_when_its_owner_cancels_it_then_0(db, tmp_path):
    agent, metrics, _ = _reported(db, tmp_path, speed=400)
    task = asyncio.create_task(agent.run())
    await _until(lambda: agent.core is not None and agent.core.last_bar > 10)
    running = _running(metrics)

    task.cancel()  # the API's supervisor does this to an agent that does not stop in time
    await asyncio.gather(task, return_exceptions=True)

    assert running == 1
    assert _running(metrics) == 0
