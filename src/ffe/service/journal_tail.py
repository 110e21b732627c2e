"""Agents of other processes (``ffe agent run``, the agent of another API worker) as an API
process learns of them from the journal they share.

Every ``poll_s`` (a second) the tail reads the accounts' states. For each account whose lease
is held by a live agent of another process it:

- sets this process's gauges: ``ffe_agent_heartbeat_timestamp_seconds`` from the agent's last
  lease renewal, ``ffe_portfolio_value`` from the equity it last journaled,
  ``ffe_agent_running`` 1 (0 while it is paused or stopped waiting for resume), and 0 once it
  released its lease stopped on purpose (a killed or failed agent leaves it at 1: its stale
  heartbeat pages);
- with a ``publisher`` (no Redis: nothing else carries that agent's events here), publishes
  what the agent journaled since the last poll as the events the agent would have sent
  itself: its decisions, fills and orders waiting for approval (the newest ``most`` of each
  per poll), its latest equity point and its state when that changes;
- counts its live feed's events (outages, stale data, gaps filled: the audit log's
  ``agent.feed_down`` and the like, written as they happen) in the feed metrics and, with a
  publisher, publishes them as the agent's ``feed`` events.

It starts from the rows journaled when it first sees the agent, never replaying a run's
history, and it never reads what an agent of this process journals (that one publishes for
itself). An agent journals every ``agent.flush_every`` bars or two seconds, so its events
arrive here up to about three seconds after it made them. Rows are read up to the agent's
checkpoint only, which it writes in the same transaction as them, so a poll never sees half
a flush.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select

from ffe.agent import persist
from ffe.agent.control import AgentStatus
from ffe.domain.orders import action_of
from ffe.kv.events import Publisher
from ffe.obs.metrics import Metrics
from ffe.runs.journal import journaled_target
from ffe.store.database import Database
from ffe.store.models import (
    AgentState,
    Approval,
    AuditEntry,
    Decision,
    EquityPoint,
    Fill,
    Order,
    Run,
)
from ffe.store.types import utc_now

log = logging.getLogger(__name__)

FEED_EVENTS = ("feed_down", "feed_up", "stale", "fresh", "gap_filled", "caught_up")
POLL_S = 1.0
MOST_PER_POLL = 100  # decisions (fills, approvals) published per account and poll: the newest


@dataclass(slots=True)
class _Followed:
    """Where the tail stands in one run of one account's agent."""

    run_id: str
    params: dict[str, Any] | None
    decision_id: int  # the newest row already seen
    fill_id: int
    approval_id: int
    equity_time: datetime | None
    shown: tuple[Any, ...] | None = None  # the state last published
    audit_id: int = 0  # the newest feed event already seen


class JournalTail:
    """Follows the agents of other processes in ``db``: gauges in ``metrics``; events through
    ``publisher`` when one is given."""

    def __init__(
        self,
        db: Database,
        metrics: Metrics,
        publisher: Publisher | None,
        *,
        poll_s: float = POLL_S,
        most: int = MOST_PER_POLL,
    ) -> None:
        self.db, self.metrics, self.publisher = db, metrics, publisher
        self.poll_s, self.most = poll_s, most
        self._followed: dict[str, _Followed] = {}

    async def run(self) -> None:
        """Poll until cancelled; a failed poll (the journal down) is logged and retried."""
        failing = False
        while True:
            try:
                await self.poll()
            except Exception as exc:
                if not failing:
                    log.warning("could not follow the agents of other processes: %s", exc)
                failing = True
            else:
                failing = False
            await asyncio.sleep(self.poll_s)

    async def poll(self) -> None:
        """Read the accounts' states and follow each agent of another process one step."""
        now = utc_now()
        for state in await persist.list_states(self.db):
            await self._follow(state, now)

    async def _follow(self, state: AgentState, now: datetime) -> None:
        account = state.account
        followed = self._followed.get(account)
        theirs = not persist.held_here(state.owner)  # also once released: its last flush
        if followed is not None and followed.run_id == state.run_id and theirs:
            await self._catch_up(account, followed, state)
        if not (theirs and persist.lease_live(state, now) and state.run_id is not None):
            if followed is not None:  # it stopped, or an agent of this process took over
                if _stopped_on_purpose(state):
                    self.metrics.set_agent_running(account, False)
                await self._tell_state(followed, state, now)
                del self._followed[account]
            return
        if followed is None or followed.run_id != state.run_id:
            followed = self._followed[account] = await self._start(state.run_id, state)
        if state.lease_expires_at is not None:
            renewed = state.lease_expires_at - persist.LEASE_TTL
            self.metrics.set_agent_heartbeat(account, renewed.timestamp())
        # Paused, or stopped on purpose and waiting for resume (``--on-stop wait``): no bars,
        # no heartbeat to expect, so not an outage.
        self.metrics.set_agent_running(account, state.status not in ("paused", "stopped"))
        await self._feed_events(account, followed)
        await self._tell_state(followed, state, now)

    async def _start(self, run_id: str, state: AgentState) -> _Followed:
        """Follow ``run_id`` from the rows journaled now on."""
        with self.db.errors("read the agent's journal"):
            async with self.db.session() as session:
                params = await session.scalar(select(Run.params).where(Run.id == run_id))
                decision = await session.scalar(
                    select(func.max(Decision.id)).where(Decision.run_id == run_id)
                )
                fill = await session.scalar(select(func.max(Fill.id)).where(Fill.run_id == run_id))
                approval = await session.scalar(
                    select(func.max(Approval.id)).where(Approval.run_id == run_id)
                )
                audit = await session.scalar(
                    select(func.max(AuditEntry.id)).where(AuditEntry.target == state.account)
                )
        followed = _Followed(run_id, params, decision or 0, fill or 0, approval or 0, None)
        followed.audit_id = audit or 0
        await self._catch_up(state.account, followed, state, publish=False)
        return followed

    async def _tell_state(self, followed: _Followed, state: AgentState, now: datetime) -> None:
        status = AgentStatus.of(state, now)
        shown = (status.status, status.running, status.run_id, status.halted_reason)
        if shown != followed.shown and self.publisher is not None:
            await self.publisher.publish("agent", status.as_dict())
        followed.shown = shown

    async def _feed_events(self, account: str, followed: _Followed) -> None:
        """The agent's feed events audited since the last look: counted, and published."""
        actions = [f"agent.{event}" for event in FEED_EVENTS]
        query = (
            select(AuditEntry)
            .where(
                AuditEntry.id > followed.audit_id,
                AuditEntry.target == account,
                AuditEntry.action.in_(actions),
            )
            .order_by(AuditEntry.id)
            .limit(self.most)
        )
        with self.db.errors("read the agent's journal"):
            async with self.db.session() as session:
                rows = (await session.scalars(query)).all()
        for row in rows:
            followed.audit_id = max(followed.audit_id, row.id)
            event = row.action.removeprefix("agent.")
            self.metrics.record_feed_event(account, event)
            if self.publisher is not None:
                details = dict(row.details or {})
                data = {**details, "kind": "feed", "event": event, "account": account}
                data.setdefault("text", event.replace("_", " "))
                await self.publisher.publish("event", data)

    # -- the rows since the last poll -----------------------------------------------------

    async def _catch_up(
        self, account: str, followed: _Followed, state: AgentState, *, publish: bool = True
    ) -> None:
        """Set the portfolio gauge from the equity journaled at the checkpoint and, with a
        publisher, publish the rows journaled up to it since the last look."""
        until = state.last_bar_time
        if until is None or (followed.equity_time is not None and until <= followed.equity_time):
            return
        bar = (state.checkpoint or {}).get("bar")
        events: list[tuple[str, dict[str, Any]]] = []
        with self.db.errors("read the agent's journal"):
            async with self.db.session() as session:
                point = await session.get(EquityPoint, (followed.run_id, until))
                if self.publisher is not None and publish:
                    events = await self._rows(session, account, followed, until, bar)
        followed.equity_time = until
        if point is None:
            return
        self.metrics.set_portfolio_value(account, point.equity)
        if self.publisher is None or not publish:
            return
        events.append(("equity", _equity(account, point, bar)))
        for kind, data in events:
            await self.publisher.publish(kind, data)

    async def _rows(
        self, session: Any, account: str, followed: _Followed, until: datetime, bar: Any
    ) -> list[tuple[str, dict[str, Any]]]:
        """The decisions, fills and approvals journaled since the last look, in time order."""
        run_id, most = followed.run_id, self.most
        decisions = (
            await session.scalars(_newer(Decision, run_id, followed.decision_id, until, most))
        ).all()
        fills = (
            await session.execute(
                _newer(
                    Fill, run_id, followed.fill_id, until, most, Order.client_order_id
                ).outerjoin(Order, Order.id == Fill.order_id)
            )
        ).all()
        approvals = (
            await session.scalars(_newer(Approval, run_id, followed.approval_id, until, most))
        ).all()
        bars = await _bars(session, run_id, decisions, until, bar)
        params = followed.params
        found = [(d.time, 0, "decision", _decision(account, d, params, bars)) for d in decisions]
        found += [(f.time, 1, "fill", _fill(account, f, client_id)) for f, client_id in fills]
        found += [(a.time, 2, "approval", _approval(account, a)) for a in approvals]
        followed.decision_id = max([followed.decision_id, *(d.id for d in decisions)])
        followed.fill_id = max([followed.fill_id, *(f.id for f, _ in fills)])
        followed.approval_id = max([followed.approval_id, *(a.id for a in approvals)])
        return [(kind, data) for _, _, kind, data in sorted(found, key=lambda e: e[:2])]


def _stopped_on_purpose(state: AgentState) -> bool:
    """Whether the account's agent released its lease ending on purpose (stopped, finished,
    or halted and then stopped). A killed agent never releases it (it expires) and a failed
    one releases it still saying ``running``; an agent of this process that took the account
    over reports for itself."""
    return state.owner is None and state.status in ("stopped", "halted")


def _newer(
    model: Any, run_id: str, after: int, until: datetime, most: int, *also: Any
) -> Select[Any]:
    """The rows of ``model`` (and the columns ``also``) that the run journaled after id
    ``after`` and by ``until``: the newest ``most`` of them, newest first."""
    return (
        select(model, *also)
        .where(model.run_id == run_id, model.id > after, model.time <= until)
        .order_by(model.id.desc())
        .limit(most)
    )


async def _bars(
    session: Any, run_id: str, decisions: Any, until: datetime, bar: Any
) -> dict[datetime, int]:
    """The bar number of each time from the oldest decision's to ``until``: the checkpoint's
    bar is ``until``'s, and each equity point before it one bar earlier (one a bar)."""
    if not decisions or not isinstance(bar, int):
        return {}
    oldest = min(d.time for d in decisions)
    times = (
        await session.scalars(
            select(EquityPoint.time)
            .where(EquityPoint.run_id == run_id)
            .where(EquityPoint.time >= oldest, EquityPoint.time <= until)
            .order_by(EquityPoint.time.desc())
            .limit(10 * MOST_PER_POLL)
        )
    ).all()
    return {time: bar - back for back, time in enumerate(times)}


def _decision(
    account: str, row: Decision, params: dict[str, Any] | None, bars: dict[datetime, int]
) -> dict[str, Any]:
    target = journaled_target(row.target, row.votes, params)
    return {
        "account": account,
        "time": row.time.isoformat(),
        "bar": bars.get(row.time),
        "symbol": row.symbol,
        "target": target,
        "action": action_of(target),
        "confidence": row.confidence,
        "rationale": row.rationale,
    }


def _fill(account: str, row: Fill, client_id: str | None) -> dict[str, Any]:
    return {
        "kind": "fill",
        "text": f"{row.symbol} {row.quantity:+g} @ {row.price:.6g}",
        "client_id": client_id,
        "symbol": row.symbol,
        "quantity": row.quantity,
        "price": row.price,
        "commission": row.commission,
        "time": row.time.isoformat(),
        "account": account,
    }


def _approval(account: str, row: Approval) -> dict[str, Any]:
    return {
        "kind": "approval_waiting",
        "text": f"{row.symbol} {row.quantity:+g} @ {row.reference_price:.6g} waits for "
        f"approval: `ffe agent approvals --account {account}`",
        "client_id": row.client_order_id,
        "account": account,
    }


def _equity(account: str, point: EquityPoint, bar: Any) -> dict[str, Any]:
    return {
        "account": account,
        "time": point.time.isoformat(),
        "bar": bar if isinstance(bar, int) else None,
        "equity": point.equity,
        "cash": point.cash,
    }
