"""The approval policy: which orders wait for a person, and the queue they wait in.

``auto`` sends every order the risk engine approves. ``manual`` queues every one. In
``on_new_asset`` an order waits only when the account has never held the symbol. A queued
order expires unanswered after ``ttl``; when it is approved, the risk engine looks at it again
before it is sent, since the account may have changed while it waited.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from ffe.agent.clock import utcnow
from ffe.agent.journal import AgentJournal, PendingDecision
from ffe.domain.orders import OrderIntent
from ffe.portfolio.ledger import Ledger

log = logging.getLogger(__name__)


class DeskStep(Protocol):
    """What the desk reads of the agent's step (``StepCore``), named here so the desk does
    not import the step that holds it."""

    @property
    def ledger(self) -> Ledger: ...
    @property
    def index(self) -> dict[str, int]: ...
    @property
    def journal(self) -> AgentJournal: ...
    def on_event(self, kind: str, text: str, data: dict[str, Any], /) -> None: ...


@dataclass(slots=True)
class Waiting:
    intent: OrderIntent
    decision: PendingDecision | None


class ApprovalDesk:
    def __init__(self, mode: str, ttl: timedelta, account: str) -> None:
        self.mode = mode
        self.ttl = ttl
        self.account = account
        self.traded: set[str] = set()
        self.waiting: dict[str, Waiting] = {}  # by client order id
        self.queued_since_flush = 0

    async def needs_approval(self, intent: OrderIntent, core: DeskStep) -> bool:
        if self.mode == "auto":
            return False
        if self.mode == "manual":
            return True
        held = core.ledger.held.get(core.index[intent.symbol], 0.0) != 0.0
        return not (held or intent.symbol in self.traded)

    def queue(self, intent: OrderIntent, decision: PendingDecision | None, core: DeskStep) -> None:
        now = utcnow()
        row: dict[str, Any] = {
            "account": self.account,
            "client_order_id": intent.client_id,
            "time": intent.time,
            "symbol": intent.symbol,
            "quantity": intent.quantity,
            "reference_price": intent.reference_price,
            "rationale": None if decision is None else decision.row.get("rationale"),
            "status": "pending",
            "created_at": now,
            "expires_at": now + self.ttl,
        }
        core.journal.approval(decision, row)
        self.waiting[intent.client_id] = Waiting(intent, decision)
        self.queued_since_flush += 1
        log.info("order %s waits for approval until %s", intent.client_id, row["expires_at"])
        core.on_event(
            "approval_waiting",
            f"{intent.symbol} {intent.quantity:+g} @ {intent.reference_price:.6g} waits for "
            f"approval: `ffe agent approvals --account {self.account}`",
            {"client_id": intent.client_id},
        )
