"""The API's view of an agent of another process without Redis: what that agent journals
after the first look, published as the agent's own events; nothing of an agent of this
process; its last rows and its stopped state once it ends; the gauges either way."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.agents import Recorder

from ffe.agent import persist
from ffe.agent.journal import AgentJournal
from ffe.domain.orders import Decision
from ffe.obs.metrics import Metrics
from ffe.runs.journal import decision_row
from ffe.service.journal_tail import JournalTail
from ffe.store.repositories import unit_of_work

ELSEWHERE = "otherhost:4242:feedbeef"  # an agent on another machine: its lease is believed
DAY0 = datetime(2020, 1, 1, tzinfo=UTC)


class FakeAgent:
    """Journals bars as an agent holding ``owner``'s lease does: per bar a decision, an
    order and its fill, and an equity point; a flush writes them with the checkpoint."""

    def __init__(self, db: Any, owner: str, account: str = "paper") -> None:
        self.db, self.owner, self.account = db, owner, account
        self.bar = -1
        self.journal: AgentJournal | None = None

    async def start(self) -> str:
        await persist.acquire_lease(self.db, self.account, self.owner)
        async with unit_of_work(self.db) as uow:
            run = await uow.runs.add(kind="paper", strategy="sma_cross", code_version="test")
        await persist.set_state(self.db, self.account, run_id=run.id, status="running")
        self.journal = AgentJournal(self.db, run.id, self.account, self.owner)
        return run.id

    def time_of(self, bar: int) -> datetime:
        return DAY0 + timedelta(days=bar)

    async def step(self, bars: int, *, flush: bool = True, approval: bool = False) -> None:
        assert self.journal is not None
        for _ in range(bars):
            self.bar += 1
            at, target = self.time_of(self.bar), 1.0 if self.bar % 2 else math.nan
            pending = self.journal.decision(
                decision_row(Decision(at, "SP500", target, 0.6, f"bar {self.bar}"))
            )
            client_id = f"order-{self.bar}"
            order = {"client_order_id": client_id, "time": at, "symbol": "SP500",
                     "quantity": 1.0, "order_type": "market", "status": "filled",
                     "filled_quantity": 1.0}  # fmt: skip
            self.journal.order(pending, order)
            self.journal.fill(client_id, at, "SP500", 1.0, 100.0 + self.bar, 0.1)
            self.journal.equity(at, 10_000.0 + self.bar, 5_000.0)
            if approval:
                self.journal.approval(pending, _approval(self.account, at, f"waits-{self.bar}"))
        if flush:
            lease = datetime.now(UTC) + persist.LEASE_TTL
            await self.journal.flush({"bar": self.bar}, self.time_of(self.bar), lease)

    async def stop(self) -> None:
        await persist.release_lease(self.db, self.account, self.owner, "stopped")


def _approval(account: str, at: datetime, client_id: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"account": account, "client_order_id": client_id, "time": at, "symbol": "SP500",
            "quantity": 2.0, "reference_price": 101.5, "rationale": "why", "status": "pending",
            "created_at": now, "expires_at": now + timedelta(hours=1)}  # fmt: skip


def _tail(db: Any, publisher: Recorder | None, most: int = 100) -> tuple[JournalTail, Metrics]:
    metrics = Metrics()
    return JournalTail(db, metrics, publisher, most=most), metrics


def _gauge(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"account": "paper"})


async def test_tail_when_agent_of_another_process_then_publishes_only_what_it_journals_after_the_first_look(  # noqa: E501
    db,
):
    agent = FakeAgent(db, ELSEWHERE)
    await agent.start()
    await agent.step(5)
    published = Recorder()
    tail, metrics = _tail(db, published)

    await tail.poll()  # the first look: the agent's state, none of its history
    first = list(published.events)
    await agent.step(2)
    await agent.step(1, approval=True)
    await tail.poll()
    await tail.poll()  # nothing new: nothing again

    assert [kind for kind, _ in first] == ["agent"]
    assert first[0][1]["running"] is True
    decisions = published.of("decision")
    assert [d["rationale"] for d in decisions] == ["bar 5", "bar 6", "bar 7"]
    assert [d["bar"] for d in decisions] == [5, 6, 7]
    assert decisions[0]["time"] == agent.time_of(5).isoformat()
    assert (decisions[0]["action"], decisions[1]["action"]) == ("buy", "hold")
    assert math.isnan(decisions[1]["target"])  # a hold kept the position, as the agent says
    fills = published.of("fill")
    assert [f["client_id"] for f in fills] == ["order-5", "order-6", "order-7"]
    assert fills[0] | {"text": "SP500 +1 @ 105"} == fills[0]
    assert published.of("equity") == [
        {
            "account": "paper",
            "time": agent.time_of(7).isoformat(),
            "bar": 7,
            "equity": 10_007.0,
            "cash": 5_000.0,
        }
    ]
    assert published.of("approval") == [
        {
            "kind": "approval_waiting",
            "text": "SP500 +2 @ 101.5 waits for approval: `ffe agent approvals --account paper`",
            "client_id": "waits-7",
            "account": "paper",
        }
    ]
    kinds = [kind for kind, _ in published.events[1:]]
    assert kinds == ["decision", "fill"] * 3 + ["approval", "equity"]  # in time order
    assert _gauge(metrics, "ffe_portfolio_value") == 10_007.0
    heartbeat = _gauge(metrics, "ffe_agent_heartbeat_timestamp_seconds")
    assert heartbeat is not None
    assert abs(heartbeat - datetime.now(UTC).timestamp()) < 60


async def test_tail_when_rows_not_flushed_yet_then_waits_for_the_flush(db):
    agent = FakeAgent(db, ELSEWHERE)
    await agent.start()
    await agent.step(2)
    published = Recorder()
    tail, _ = _tail(db, published)
    await tail.poll()

    await agent.step(2, flush=False)
    await tail.poll()
    before_flush = len(published.events)
    await agent.step(1)
    await tail.poll()

    assert before_flush == 1  # the state only
    assert [d["bar"] for d in published.of("decision")] == [2, 3, 4]


async def test_tail_when_agent_of_this_process_then_publishes_nothing(db):
    agent = FakeAgent(db, persist.new_owner())  # this process: it publishes for itself
    await agent.start()
    await agent.step(2)
    published = Recorder()
    tail, metrics = _tail(db, published)

    await tail.poll()
    await agent.step(3)
    await tail.poll()
    await agent.stop()
    await tail.poll()

    assert published.events == []
    assert _gauge(metrics, "ffe_portfolio_value") is None


async def test_tail_when_the_agent_stops_then_its_last_rows_and_stopped_state_published(db):
    agent = FakeAgent(db, ELSEWHERE)
    await agent.start()
    await agent.step(2)
    published = Recorder()
    tail, _ = _tail(db, published)
    await tail.poll()

    await agent.step(2)  # its last flush, then it gives the lease up
    await agent.stop()
    await tail.poll()
    after_stop = len(published.events)
    await tail.poll()

    assert [d["bar"] for d in published.of("decision")] == [2, 3]
    states = published.of("agent")
    assert [(s["running"], s["status"]) for s in states] == [(True, "running"), (False, "stopped")]
    assert published.events[-1][0] == "agent"
    assert len(published.events) == after_stop  # no longer followed


async def test_tail_when_more_rows_than_it_publishes_then_the_newest(db):
    agent = FakeAgent(db, ELSEWHERE)
    await agent.start()
    await agent.step(1)
    published = Recorder()
    tail, _ = _tail(db, published, most=4)
    await tail.poll()

    await agent.step(10)
    await tail.poll()
    await agent.step(1)
    await tail.poll()

    assert [d["bar"] for d in published.of("decision")] == [7, 8, 9, 10, 11]
    assert [f["client_id"] for f in published.of("fill")][-1] == "order-11"
    assert [e["bar"] for e in published.of("equity")] == [10, 11]


async def test_tail_without_publisher_then_gauges_only(db):
    agent = FakeAgent(db, ELSEWHERE)
    await agent.start()
    await agent.step(2)
    tail, metrics = _tail(db, None)  # Redis carries the agent's events itself

    await tail.poll()
    first = _gauge(metrics, "ffe_portfolio_value")
    await agent.step(3)
    await tail.poll()

    assert first == 10_001.0
    assert _gauge(metrics, "ffe_portfolio_value") == 10_004.0


def _running(metrics: Metrics) -> float | None:
    return _gauge(metrics, "ffe_agent_running")


async def test_tail_when_agent_stops_on_purpose_then_running_1_paused_0_stopped_0(db):
    agent = FakeAgent(db, ELSEWHERE)
    await agent.start()
    await agent.step(2)
    tail, metrics = _tail(db, None)

    await tail.poll()
    running = _running(metrics)
    await persist.set_state(db, "paper", status="paused")
    await tail.poll()
    paused = _running(metrics)
    await persist.set_state(db, "paper", status="running")
    await tail.poll()
    resumed = _running(metrics)
    await agent.stop()  # `ffe agent stop`, or the end of its replay: the lease released
    await tail.poll()

    assert (running, paused, resumed) == (1, 0, 1)
    assert _running(metrics) == 0


async def test_tail_when_agent_stopped_but_waiting_for_resume_then_running_0(db):
    """``ffe agent run --on-stop wait`` after a stop: it holds the lease, its status stopped."""
    agent = FakeAgent(db, ELSEWHERE)
    await agent.start()
    await agent.step(2)
    tail, metrics = _tail(db, None)

    await tail.poll()
    running = _running(metrics)
    await persist.set_state(db, "paper", status="stopped", halted_reason=persist.stop_mark("x"))
    await tail.poll()
    stopped = _running(metrics)
    await persist.set_state(db, "paper", status="running", halted_reason=None)  # resumed
    await tail.poll()

    assert (running, stopped) == (1, 0)
    assert _running(metrics) == 1


async def test_tail_when_agent_killed_or_failed_then_running_stays_1(db):
    tail, metrics = _tail(db, None)
    agent = FakeAgent(db, ELSEWHERE)
    await agent.start()
    await agent.step(2)
    await tail.poll()

    # Killed: it never releases its lease, which expires.
    past = datetime.now(UTC) - timedelta(seconds=1)
    await persist.set_state(db, "paper", lease_expires_at=past)
    await tail.poll()
    killed = _running(metrics)
    # Failed: the agent gives its lease up still saying it runs (it is meant to).
    await persist.set_state(db, "paper", lease_expires_at=datetime.now(UTC) + persist.LEASE_TTL)
    await tail.poll()
    await persist.release_lease(db, "paper", ELSEWHERE, "running")
    await tail.poll()

    assert killed == 1
    assert _running(metrics) == 1


async def test_tail_when_agent_of_this_process_stops_then_running_left_to_its_reporter(db):
    agent = FakeAgent(db, persist.new_owner())
    await agent.start()
    await agent.step(2)
    tail, metrics = _tail(db, None)

    await tail.poll()
    await agent.stop()
    await tail.poll()

    assert _running(metrics) is None


async def test_tail_when_the_agents_feed_fails_and_returns_then_its_feed_events_counted_and_published(  # noqa: E501
    db,
):
    agent = FakeAgent(db, ELSEWHERE)
    await agent.start()
    await persist.record_event(db, "paper", "agent.caught_up", {"bars": 500, "text": "before"})
    published = Recorder()
    tail, metrics = _tail(db, published)
    await tail.poll()  # the first look: nothing from before it

    await persist.record_event(db, "paper", "agent.feed_down", {"error": "503", "text": "down"})
    await persist.record_event(db, "paper", "agent.reconcile", {"consistent": True})
    await tail.poll()
    up = metrics.registry.get_sample_value("ffe_agent_feed_up", {"account": "paper"})
    await persist.record_event(db, "paper", "agent.feed_up", {"down_s": 3.0, "text": "up"})
    await tail.poll()
    await tail.poll()

    events = published.of("event")
    assert [(e["event"], e["text"]) for e in events] == [("feed_down", "down"), ("feed_up", "up")]
    assert events[0] | {"kind": "feed", "account": "paper", "error": "503"} == events[0]
    assert up == 0.0
    assert metrics.registry.get_sample_value("ffe_agent_feed_up", {"account": "paper"}) == 1.0
    counted = metrics.registry.get_sample_value(
        "ffe_agent_feed_events_total", {"account": "paper", "event": "feed_down"}
    )
    assert counted == 1.0
