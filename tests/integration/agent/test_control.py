"""Steering a running agent: pause, resume, emergency stop, reset, stop; approvals; the lease."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from sqlalchemy import func, select
from tests.support.agents import SMA_PARAMS, replay_agent, sqlite_journal

from ffe.agent.control import AgentService
from ffe.agent.persist import LeaseHeldError
from ffe.agent.runner import paper_agent
from ffe.agent.step import AgentConfig
from ffe.data import DataCatalog, load_market
from ffe.decide.strategy import make_strategy
from ffe.risk.engine import RiskEngine
from ffe.store import migrate
from ffe.store.database import Database
from ffe.store.models import Approval, Decision, Order, Run


@pytest.fixture
async def db(tmp_path):
    async with sqlite_journal(tmp_path) as database:
        yield database


def _agent(db, tmp_path, *, start="2014-01-01", end=None, speed=None, **config):
    return replay_agent(
        db, tmp_path, start=start, end=end, speed=speed, command_poll_s=0.02, **config
    )


async def _until(predicate, timeout=10.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def _count(db, model, *where):
    async with db.session() as session:
        return (
            await session.execute(select(func.count()).select_from(model).where(*where))
        ).scalar_one()


async def test_pause_when_commanded_then_no_bars_until_resume(db, tmp_path):
    agent = _agent(db, tmp_path, speed=400)
    service = AgentService(db)
    task = asyncio.create_task(agent.run())
    await _until(lambda: agent.core is not None and agent.core.last_bar > 20)

    await service.command("paper", "pause")
    await _until(lambda: agent.paused)
    held_at = agent.core.last_bar
    await asyncio.sleep(0.3)
    paused_status = (await service.status("paper"))[0].status
    still = agent.core.last_bar
    await service.command("paper", "resume")
    await _until(lambda: agent.core.last_bar > still + 10)
    await service.command("paper", "stop")
    report = await task

    assert paused_status == "paused"
    assert still <= held_at + 1  # at most the step that was under way
    assert report.status == "interrupted"
    status = (await service.status("paper"))[0]
    assert status.owner is None
    assert status.status == "stopped"


async def test_pause_when_commanded_then_what_it_did_is_journaled_before_it_waits(db, tmp_path):
    # No journal write due for a minute: only the pause can have written the decisions.
    agent = _agent(db, tmp_path, speed=400, flush_every=100_000, flush_interval_s=60)
    service = AgentService(db)
    task = asyncio.create_task(agent.run())
    await _until(lambda: agent.core is not None and agent.core.last_bar > 20)

    await service.command("paper", "pause")
    async with asyncio.timeout(10):
        while (await service.status("paper"))[0].status != "paused":
            await asyncio.sleep(0.01)
    unwritten = agent.core.journal.pending_rows
    journaled = await _count(db, Decision, Decision.run_id == agent.core.journal.run_id)
    await service.command("paper", "stop")
    await task

    assert unwritten == 0
    assert journaled > 0


async def test_emergency_stop_when_positions_open_then_flat_and_no_new_orders_until_reset(
    db, tmp_path
):
    agent = _agent(db, tmp_path, speed=400)
    service = AgentService(db)
    task = asyncio.create_task(agent.run())
    await _until(lambda: agent.core is not None and agent.core.ledger.held)

    await service.command("paper", "emergency_stop")
    await _until(lambda: agent.emergency is not None)
    halted_bar = agent.core.last_bar
    await _until(lambda: agent.core.last_bar > halted_bar + 60)  # sma_cross would have traded
    flat = dict(agent.core.ledger.held)
    await agent.core.flush()
    run_id = agent.core.journal.run_id
    orders_while_halted = await _count(db, Order, Order.run_id == run_id)
    await asyncio.sleep(0.2)
    await agent.core.flush()
    orders_later = await _count(db, Order, Order.run_id == run_id)
    halted = (await service.status("paper"))[0]

    await service.command("paper", "reset")
    await _until(lambda: agent.emergency is None)
    report = await task  # runs to the end of the data

    assert flat == {}
    assert halted.status == "halted"
    assert "emergency stop" in halted.halted_reason
    assert orders_later == orders_while_halted
    assert report.status == "finished"
    assert await _count(db, Order, Order.run_id == run_id) > orders_later  # trading resumed


async def test_stop_when_run_again_then_resumes_the_same_run(db, tmp_path):
    first = _agent(db, tmp_path, speed=500)
    task = asyncio.create_task(first.run())
    await _until(lambda: first.core is not None and first.core.last_bar > 50)
    await AgentService(db).command("paper", "stop")
    stopped = await task

    second = await _agent(db, tmp_path).run()

    assert stopped.status == "interrupted"
    assert not stopped.resumed
    assert second.resumed
    assert second.run_id == stopped.run_id
    assert second.first_bar > 0
    assert await _count(db, Run) == 1


async def test_lease_when_account_is_traded_then_second_agent_refused(db, tmp_path):
    first = _agent(db, tmp_path, speed=300)
    task = asyncio.create_task(first.run())
    await _until(lambda: first.core is not None)

    with pytest.raises(LeaseHeldError, match="ffe agent stop --account paper"):
        await _agent(db, tmp_path).run()
    other_account = await _agent(db, tmp_path, account="other", end="2014-03-01").run()
    first.request_stop()
    await task

    assert other_account.status == "finished"


async def _approver(db, decide, stop):
    service = AgentService(db)
    seen = []
    while not stop.is_set():
        for approval in await service.approvals("paper"):
            seen.append(approval.id)
            if decide(len(seen)):
                await service.approve(approval.id, actor="tester")
            else:
                await service.reject(approval.id, actor="tester")
        await asyncio.sleep(0.02)
    return seen


async def test_manual_approval_when_some_rejected_then_only_approved_are_sent(db, tmp_path):
    agent = _agent(db, tmp_path, end="2014-06-30", approval="manual")
    stop = asyncio.Event()
    approver = asyncio.create_task(_approver(db, lambda n: n % 2 == 1, stop))

    report = await agent.run()
    stop.set()
    seen = await approver

    async with db.session() as session:
        rows = (await session.scalars(select(Approval).order_by(Approval.id))).all()
        sent = set((await session.scalars(select(Order.client_order_id))).all())
    assert len(seen) >= 3
    assert report.status == "finished"
    assert {r.status for r in rows} == {"sent", "rejected"}
    assert sent == {r.client_order_id for r in rows if r.status == "sent"}
    assert all(r.decided_by == "tester" for r in rows if r.status == "rejected")


async def test_manual_approval_when_nobody_answers_then_expired_and_nothing_sent(db, tmp_path):
    agent = _agent(db, tmp_path, end="2014-03-31", approval="manual", approval_ttl_s=0.05)

    await agent.run()

    async with db.session() as session:
        statuses = set((await session.scalars(select(Approval.status))).all())
    assert statuses == {"expired"}
    assert await _count(db, Order) == 0


async def test_on_new_asset_when_symbol_traded_before_then_later_orders_skip_approval(db, tmp_path):
    agent = _agent(db, tmp_path, end="2014-06-30", approval="on_new_asset")
    stop = asyncio.Event()
    approver = asyncio.create_task(_approver(db, lambda n: True, stop))

    await agent.run()
    stop.set()
    seen = await approver

    assert len(seen) == 1  # only the first order of SP500 waited
    assert await _count(db, Order) > 3


async def test_daily_loss_when_limit_hit_then_flattened_and_halt_notified(db, make_market):
    from ffe.risk.engine import MaxGrossLeverage, MaxPositionPct
    from ffe.risk.rules import EmergencyHalt, MaxDailyLoss

    # Hourly bars over three days; a crash on the second day, a recovery on the third.
    closes = [100.0] * 24 + [100.0 - 1.5 * k for k in range(1, 25)] + [70.0 + k for k in range(24)]
    market = make_market(closes)
    market = type(market)(
        market.symbols,
        market.times[0] + (market.times - market.times[0]) // 24,
        market.open,
        market.high,
        market.low,
        market.close,
        market.volume,
    )
    risk = RiskEngine(
        [EmergencyHalt(), MaxDailyLoss(0.05), MaxPositionPct(1.0), MaxGrossLeverage(1.0)]
    )
    events = []

    class Collect:
        def publish(self, event):
            events.append(event)

    strategy = make_strategy("buy_and_hold", {})
    agent = paper_agent(db, market, strategy, {}, AgentConfig(), risk, notify=Collect())
    await agent.run()

    halts = [e for e in events if e.kind == "risk_halt"]
    assert len(halts) == 1
    assert "daily loss" in halts[0].text
    result = agent.result(agent.core)
    day_two = slice(24, 48)
    assert (result.positions[day_two][-5:] == 0).all()  # flattened after the kill switch
    assert 24 <= halts[0].data["bar"] < 48  # tripped on the day of the crash
    assert result.positions[23, 0] > 0  # it was holding before


# -- the truth with no agent running ----------------------------------------------------------


async def _ran_and_stopped(db, tmp_path, *, past_bar=30):
    """An account whose agent traded a while and was stopped: the run id."""
    agent = _agent(db, tmp_path, speed=500)
    task = asyncio.create_task(agent.run())
    await _until(lambda: agent.core is not None and agent.core.last_bar > past_bar)
    agent.request_stop()
    return (await task).run_id


async def test_status_when_agent_killed_and_its_lease_expired_then_not_running(db):
    from datetime import timedelta

    from ffe.agent import persist

    await persist.acquire_lease(db, "paper", "otherhost:4242:killed", ttl=timedelta(seconds=-65))
    await persist.set_state(db, "paper", status="running")

    shown = (await AgentService(db).status("paper"))[0]

    assert shown.running is False
    assert shown.as_dict()["running"] is False
    assert shown.status == "stopped"
    assert shown.owner is None


@pytest.mark.parametrize("command", ["pause", "resume", "stop"])
async def test_command_when_no_agent_running_then_refused_and_nothing_queued(db, tmp_path, command):
    from ffe.agent import persist
    from ffe.agent.persist import NoAgentRunningError

    await _ran_and_stopped(db, tmp_path)

    with pytest.raises(NoAgentRunningError, match="no agent is running on account 'paper'"):
        await AgentService(db).command("paper", command)

    assert await persist.take_commands(db, "paper") == []
    assert (await AgentService(db).status("paper"))[0].status == "stopped"


async def test_emergency_stop_when_no_agent_running_then_halted_at_once_and_next_run_flat(
    db, tmp_path
):
    run_id = await _ran_and_stopped(db, tmp_path, past_bar=200)
    service = AgentService(db)
    orders_before = await _count(db, Order, Order.run_id == run_id)

    sent = await service.command("paper", "emergency_stop", actor="tester")
    halted = (await service.status("paper"))[0]
    agent = _agent(db, tmp_path)
    report = await agent.run()
    after = (await service.status("paper"))[0]

    assert sent.queued is False
    assert "halted now" in sent.message
    assert (halted.status, halted.running) == ("halted", False)
    assert halted.halted_reason == "emergency stop by tester"
    assert report.resumed
    assert report.run_id == run_id
    assert agent.core.ledger.held == {}  # what the run held was closed
    # Only the closing orders: sma_cross would have traded over the years replayed.
    assert await _count(db, Order, Order.run_id == run_id) <= orders_before + 1
    assert (after.status, after.halted_reason) == ("halted", "emergency stop by tester")


async def test_emergency_stop_when_no_agent_running_then_a_fresh_run_trades_nothing(db, tmp_path):
    await _ran_and_stopped(db, tmp_path)
    await AgentService(db).command("paper", "emergency_stop")
    market = load_market(DataCatalog(tmp_path), ["SP500"], start="2014-01-01")
    risk = RiskEngine.from_limits(max_position_pct=1.0, max_gross_leverage=1.0, max_drawdown=None)
    fresh = paper_agent(
        db,
        market,
        make_strategy("sma_cross", SMA_PARAMS),
        SMA_PARAMS,
        AgentConfig(),
        risk,
        fresh=True,
    )
    task = asyncio.create_task(fresh.run())
    await _until(lambda: fresh.core is not None and fresh.core.last_bar > 0)
    while_running = (await AgentService(db).status("paper"))[0]
    report = await task

    assert not report.resumed
    assert (while_running.status, while_running.running) == ("halted", True)
    assert await _count(db, Order, Order.run_id == report.run_id) == 0


async def test_reset_when_no_agent_running_then_halt_lifted_and_next_run_trades(db, tmp_path):
    agent = _agent(db, tmp_path, speed=400)
    service = AgentService(db)
    task = asyncio.create_task(agent.run())
    await _until(lambda: agent.core is not None and agent.core.ledger.held)
    await service.command("paper", "emergency_stop")
    await _until(lambda: agent.emergency is not None)
    agent.request_stop()
    run_id = (await task).run_id
    orders_halted = await _count(db, Order, Order.run_id == run_id)

    sent = await service.command("paper", "reset")
    lifted = (await service.status("paper"))[0]
    report = await _agent(db, tmp_path).run()

    assert sent.queued is False
    assert "no longer halted" in sent.message
    assert (lifted.status, lifted.halted_reason) == ("stopped", None)
    assert report.run_id == run_id
    assert report.status == "finished"
    assert await _count(db, Order, Order.run_id == run_id) > orders_halted  # it traded again
    assert (await service.status("paper"))[0].status == "finished"  # its replay reached the end


async def test_paused_agent_when_its_lease_period_passes_then_still_running(
    db, tmp_path, monkeypatch
):
    from datetime import timedelta

    from ffe.agent import persist

    # Renewed every second: a journal write stalled for a second or two (an fsync on a
    # loaded machine) is not a lost lease.
    ttl = timedelta(seconds=3)
    monkeypatch.setattr(persist, "LEASE_TTL", ttl)
    agent = _agent(db, tmp_path, speed=200)
    service = AgentService(db)
    task = asyncio.create_task(agent.run())
    await _until(lambda: agent.core is not None and agent.core.last_bar > 5)
    await service.command("paper", "pause")
    await _until(lambda: agent.paused)

    await asyncio.sleep(3 * ttl.total_seconds())  # three lease periods without a bar
    paused = (await service.status("paper"))[0]
    agent.request_stop()
    await task

    assert (paused.status, paused.running) == ("paused", True)


async def test_lease_when_the_journal_comes_back_then_renewed_within_the_retry_period(
    db, tmp_path, monkeypatch
):
    """A renewal that fails (the journal down) is retried every LEASE_RETRY_S, not a third of
    the lease period later: back from an outage, the agent holds its lease again at once."""
    import time
    from datetime import timedelta

    from ffe.agent import persist
    from ffe.domain.errors import StoreError

    monkeypatch.setattr(persist, "LEASE_TTL", timedelta(seconds=6))  # renewed every 2 s
    monkeypatch.setattr(persist, "LEASE_RETRY_S", 0.1)
    renew, calls, failing = persist.renew_lease, [], [True]

    async def flaky(*args, **kwargs):
        calls.append((time.monotonic(), failing[0]))
        if failing[0]:
            raise StoreError("the journal is down (test)")
        return await renew(*args, **kwargs)

    agent = _agent(db, tmp_path, speed=200)
    task = asyncio.create_task(agent.run())
    await _until(lambda: agent.core is not None and agent.core.last_bar > 5)
    await agent_service_pause(db, agent)
    monkeypatch.setattr(persist, "renew_lease", flaky)
    await _until(lambda: len(calls) >= 3)  # failing renewals, 0.1 s apart
    failing[0] = False
    back = time.monotonic()
    await _until(lambda: any(not down for _, down in calls))
    agent.request_stop()
    await task

    renewed_at = next(at for at, down in calls if not down)
    assert renewed_at - back < 1.0  # not the 2 s of a third of the lease
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(calls) if a[1]]
    assert max(gaps) < 1.0


async def agent_service_pause(db, agent):
    """Pause ``agent``: no bars, so no flushes renew the lease, only its keeper."""
    await AgentService(db).command("paper", "pause")
    await _until(lambda: agent.paused)


async def test_approve_when_the_approvals_run_no_longer_runs_then_refused(db, tmp_path):
    from ffe.agent.persist import ApprovalClosedError

    agent = _agent(db, tmp_path, end="2014-06-30", approval="manual")
    service = AgentService(db)
    task = asyncio.create_task(agent.run())
    waiting = await _until_approval(service)
    agent.request_stop()
    await task

    with pytest.raises(ApprovalClosedError, match="no agent is trading now"):
        await service.approve(waiting.id, actor="tester")

    assert [a.id for a in await service.approvals("paper")] == [waiting.id]  # still pending


async def _until_approval(service):
    async with asyncio.timeout(10):
        while not (found := await service.approvals("paper")):
            await asyncio.sleep(0.02)
    return found[0]


async def test_emergency_stop_when_queued_for_an_agent_that_died_elsewhere_then_next_agent_halted(
    db, tmp_path
):
    from datetime import timedelta

    from ffe.agent import persist
    from ffe.store.types import utc_now

    # An agent on another host holds the account, then dies: its lease looks live meanwhile.
    await persist.acquire_lease(db, "paper", "otherhost:4242:died", ttl=timedelta(minutes=5))
    await persist.set_state(db, "paper", status="running")
    sent = await AgentService(db).command("paper", "emergency_stop", actor="tester")
    await persist.set_state(db, "paper", lease_expires_at=utc_now() - timedelta(seconds=1))

    agent = _agent(db, tmp_path)
    task = asyncio.create_task(agent.run())
    await _until(lambda: agent.core is not None and agent.core.last_bar > 0)
    while_running = (await AgentService(db).status("paper"))[0]
    report = await task
    after = (await AgentService(db).status("paper"))[0]

    assert sent.queued is True
    assert (while_running.status, while_running.running) == ("halted", True)
    assert await _count(db, Order, Order.run_id == report.run_id) == 0  # sma_cross would trade
    assert (after.status, after.halted_reason) == ("halted", "emergency stop by tester")


class _BlockableAgent:
    """An agent trading in a thread and event loop of its own, as a second process would,
    whose loop can be blocked (longer than its lease) at a bar and released."""

    def __init__(self, url, tmp_path):
        import threading

        self.url, self.tmp_path = url, tmp_path
        self.blocking, self.blocked, self.release = (threading.Event() for _ in range(3))
        self.agent = None
        self.report = None
        self.thread = threading.Thread(target=asyncio.run, args=(self._trade(),), daemon=True)

    def _on_bar(self, report):
        if self.blocking.is_set() and not self.release.is_set():
            self.blocked.set()
            self.release.wait(30)

    async def _trade(self):
        database = Database(self.url)
        agent = _agent(database, self.tmp_path, speed=200)
        agent.watch(on_bar=self._on_bar)
        self.agent = agent
        try:
            self.report = await agent.run()
        except Exception:  # the lease lost under it
            pass
        finally:
            await database.dispose()

    async def block(self):
        self.blocking.set()
        await asyncio.to_thread(self.blocked.wait, 10)

    async def unblock(self):
        self.release.set()
        await asyncio.to_thread(self.thread.join, 20)


async def test_emergency_stop_when_agent_alive_but_its_lease_lapsed_then_it_stops_trading(
    tmp_path,
):
    from datetime import timedelta

    from ffe.agent import persist
    from ffe.store.types import utc_now

    url = f"sqlite:///{tmp_path / 'journal.db'}"
    db = Database(url)
    await migrate.upgrade(db)
    other = _BlockableAgent(url, tmp_path)
    other.thread.start()
    try:
        await _until(lambda: other.agent is not None and other.agent.core is not None)
        agent = other.agent
        await _until(lambda: agent.core.last_bar > 20)
        await other.block()
        await persist.set_state(db, "paper", lease_expires_at=utc_now() - timedelta(seconds=1))
        sent = await AgentService(db).command("paper", "emergency_stop", actor="tester")
        run_id = agent.core.journal.run_id
        orders_at_halt = await _count(db, Order, Order.run_id == run_id)
        await other.unblock()
        after = (await AgentService(db).status("paper"))[0]

        assert sent.queued is False
        assert not other.thread.is_alive()
        assert other.report is None or other.report.status == "interrupted"
        assert agent.core.last_bar < agent.market.n_bars - 1  # it did not trade on to the end
        assert await _count(db, Order, Order.run_id == run_id) == orders_at_halt
        assert (after.status, after.halted_reason) == ("halted", "emergency stop by tester")
    finally:
        other.release.set()
        other.thread.join(20)
        await db.dispose()
