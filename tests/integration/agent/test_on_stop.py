"""What a ``stop`` command does to an agent: with ``on_stop`` "exit" (the default, a person at a
terminal) its run ends; with "wait" (a supervised agent) it stays up trading nothing until
``resume``, and one that starts on an account stopped on purpose waits too. A stop by a signal
(the orchestrator's SIGTERM) is no deliberate stop: the next agent trades."""

from __future__ import annotations

import asyncio

import pytest
from tests.support.agents import replay_agent, sqlite_journal

from ffe.agent import persist
from ffe.agent.control import AgentService


@pytest.fixture
async def db(tmp_path):
    async with sqlite_journal(tmp_path) as database:
        yield database


def _agent(db, tmp_path, *, on_stop="exit", speed=400):
    agent = replay_agent(db, tmp_path, start="2014-01-01", speed=speed, command_poll_s=0.02)
    agent.on_stop = on_stop
    return agent


async def _until(predicate, timeout=10.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def _stopped_by(db):
    return persist.stopped_on_purpose(await persist.get_state(db, "paper"))


async def test_stop_when_on_stop_exit_by_default_then_run_ends_and_stop_recorded(db, tmp_path):
    agent = _agent(db, tmp_path)
    task = asyncio.create_task(agent.run())
    await _until(lambda: agent.core is not None and agent.core.last_bar > 20)

    await AgentService(db).command("paper", "stop", actor="alice")
    report = await asyncio.wait_for(task, 10)

    assert agent.on_stop == "exit"
    assert report.status == "interrupted"
    assert await _stopped_by(db) == "alice"


async def test_stop_when_on_stop_wait_then_up_trading_nothing_until_resume(db, tmp_path):
    agent = _agent(db, tmp_path, on_stop="wait")
    service = AgentService(db)
    task = asyncio.create_task(agent.run())
    await _until(lambda: agent.core is not None and agent.core.last_bar > 20)

    await service.command("paper", "stop", actor="alice")
    await _until(lambda: agent.stopped_by is not None)
    held = agent.core.last_bar
    await asyncio.sleep(0.3)
    status = (await service.status("paper"))[0]
    still, alive, marked = agent.core.last_bar, not task.done(), await _stopped_by(db)
    await service.command("paper", "reset", actor="admin")  # a reset is no resume
    await asyncio.sleep(0.2)
    after_reset = agent.core.last_bar, await _stopped_by(db)
    await service.command("paper", "resume")
    await _until(lambda: agent.core.last_bar > still + 10)
    resumed_mark = await _stopped_by(db)
    agent.request_stop()  # a signal: no deliberate stop
    report = await asyncio.wait_for(task, 10)

    assert alive
    assert still <= held + 1
    assert (status.status, status.running) == ("stopped", True)  # it holds the account
    assert marked == "alice"
    assert after_reset == (still, "alice")
    assert resumed_mark is None
    assert report.status == "interrupted"
    assert await _stopped_by(db) is None


async def test_start_when_account_stopped_on_purpose_and_on_stop_wait_then_waits_for_resume(
    db, tmp_path
):
    first = _agent(db, tmp_path, on_stop="exit")
    task = asyncio.create_task(first.run())
    await _until(lambda: first.core is not None and first.core.last_bar > 20)
    await AgentService(db).command("paper", "stop", actor="alice")
    stopped = await asyncio.wait_for(task, 10)

    second = _agent(db, tmp_path, on_stop="wait")
    task = asyncio.create_task(second.run())
    await _until(lambda: second.stopped_by is not None)
    await asyncio.sleep(0.3)
    waited = second.core is None and not task.done()
    await AgentService(db).command("paper", "resume")
    await _until(lambda: second.core is not None and second.core.last_bar > stopped.bars + 30)
    second.request_stop()
    report = await asyncio.wait_for(task, 10)

    assert waited
    assert report.resumed
    assert report.run_id == stopped.run_id
    assert report.first_bar > 20


async def test_start_when_last_agent_ended_by_a_signal_and_on_stop_wait_then_trades(db, tmp_path):
    first = _agent(db, tmp_path, on_stop="wait")
    task = asyncio.create_task(first.run())
    await _until(lambda: first.core is not None and first.core.last_bar > 20)
    first.request_stop()  # SIGTERM: the orchestrator replacing it, not an operator's stop
    await asyncio.wait_for(task, 10)

    second = _agent(db, tmp_path, on_stop="wait")
    task = asyncio.create_task(second.run())
    await _until(lambda: second.core is not None and second.core.last_bar > 40)
    second.request_stop()
    await asyncio.wait_for(task, 10)

    assert second.stopped_by is None


async def test_stopped_agent_when_journal_fails_while_it_waits_then_stays_stopped_on_purpose(
    db, tmp_path, monkeypatch
):
    """A failure is no start: the supervisor's next agent must find the account stopped."""
    from ffe.domain.errors import StoreError

    agent = _agent(db, tmp_path, on_stop="wait")
    task = asyncio.create_task(agent.run())
    await _until(lambda: agent.core is not None and agent.core.last_bar > 20)
    await AgentService(db).command("paper", "stop", actor="alice")
    await _until(lambda: agent.stopped_by is not None)

    async def broken(*_args, **_kwargs):
        raise StoreError("the journal went away")

    monkeypatch.setattr(persist, "take_commands", broken)
    with pytest.raises(StoreError):
        await asyncio.wait_for(task, 10)

    assert await _stopped_by(db) == "alice"
