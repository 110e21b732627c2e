"""Control: the one facade the CLI and the API use to steer agents (a running agent carries
out what it is told in ``Agent.control``, ``ffe.agent.lifecycle``).

Commands travel through the database (``agent_commands``), so an agent in another process, or
on another machine sharing the journal, obeys them within ``command_poll_s``. Approvals are
decided in the database too and picked up by the agent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select

from ffe.agent import persist
from ffe.agent.persist import NoAgentRunningError
from ffe.domain.errors import FfeError, NotFoundError
from ffe.store.database import Database
from ffe.store.models import AGENT_COMMANDS, AgentState, Approval, Run
from ffe.store.repositories import unit_of_work
from ffe.store.types import utc_now

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """An account's agent as it is now: ``running`` only while a live agent holds an
    unexpired lease, and ``status`` then as it reports; otherwise halted or stopped."""

    account: str
    status: str
    running: bool
    run_id: str | None
    owner: str | None
    lease_expires_at: datetime | None
    halted_reason: str | None
    last_bar_time: datetime | None
    checkpoint: persist.Checkpoint | None

    @classmethod
    def of(cls, state: AgentState, now: datetime) -> AgentStatus:
        running = persist.lease_live(state, now)
        status = state.status
        if not running:  # a killed agent leaves "running" behind; a halt outlives its agent
            status = "halted" if status == "halted" else "stopped"
        return cls(
            state.account,
            status,
            running,
            state.run_id,
            state.owner if running else None,
            state.lease_expires_at if running else None,
            state.halted_reason if status == "halted" else None,
            state.last_bar_time,
            persist.Checkpoint.of(state.checkpoint),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "status": self.status,
            "running": self.running,
            "run_id": self.run_id,
            "owner": self.owner,
            "lease_expires_at": _iso(self.lease_expires_at),
            "halted_reason": self.halted_reason,
            "last_bar_time": _iso(self.last_bar_time),
            "bar": None if self.checkpoint is None else self.checkpoint.bar,
            # The run's decisions its LLM voter failed to vote on so far (0 without a voter).
            "llm_failures": None if self.checkpoint is None else self.checkpoint.llm_failures,
        }


@dataclass(frozen=True, slots=True)
class CommandSent:
    """What became of a command: queued for the running agent, or applied to the account's
    stored state at once because no agent runs (``queued`` False); ``message`` says which."""

    command_id: int
    queued: bool
    message: str


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class AgentService:
    """Start is ``Agent.run``; everything else an operator does to agents goes through here."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def status(self, account: str | None = None) -> list[AgentStatus]:
        """Each account's agent; one stopped because its replay reached the end of the data
        reads "finished" (its run's status), not "stopped"."""
        states = await persist.list_states(self.db)
        now = utc_now()
        found = [AgentStatus.of(s, now) for s in states if account is None or s.account == account]
        ended = await self._finished({s.run_id for s in found if s.status == "stopped"})
        return [replace(s, status="finished") if s.run_id in ended else s for s in found]

    async def _finished(self, run_ids: set[str | None]) -> set[str]:
        """Those of ``run_ids`` whose run finished (the data ended)."""
        wanted = [run_id for run_id in run_ids if run_id is not None]
        if not wanted:
            return set()
        query = select(Run.id).where(Run.id.in_(wanted), Run.status == "finished")
        async with self.db.session() as session:
            return set((await session.scalars(query)).all())

    async def command(self, account: str, command: str, actor: str = "cli") -> CommandSent:
        """Send ``command`` (pause, resume, stop, emergency_stop, reset) to the account's
        running agent; with none running, apply a halt or reset to the stored state at once,
        and refuse the others with NoAgentRunningError."""
        if command == "close":  # it needs a symbol: close_position
            raise FfeError("close names a position: use close_position (or the API's close)")
        if command not in AGENT_COMMANDS:
            raise FfeError(f"unknown command {command!r}: use one of {', '.join(AGENT_COMMANDS)}")
        state = await persist.get_state(self.db, account)
        if state is None:
            raise NotFoundError(f"no agent has run on account {account!r} (see `ffe agent status`)")
        sent = None
        if not persist.lease_live(state):
            sent = await self._when_idle(account, command, actor, state)
        if sent is None:  # an agent runs (or took the account just now): it carries it out
            command_id = await persist.queue_command(self.db, account, command, actor)
            what = command.replace("_", " ")
            sent = CommandSent(command_id, True, f"{what} sent to the agent on {account}")
        async with unit_of_work(self.db) as uow:
            details = {"command_id": sent.command_id, "queued": sent.queued}
            await uow.audit.record(actor, f"agent.{command}", account, details)
        return sent

    async def _when_idle(
        self, account: str, command: str, actor: str, state: AgentState
    ) -> CommandSent | None:
        change = state_change(command, actor)
        if change is None:
            raise NoAgentRunningError(
                f"no agent is running on account {account!r}: nothing to "
                f"{command.replace('_', ' ')} (start one with `ffe agent run`)"
            )
        was_halted = state.status == "halted"
        command_id = await persist.apply_if_idle(self.db, account, command, actor, change)
        if command_id is None:
            return None
        if command == "emergency_stop":
            message = (
                f"no agent is running on {account}: the account is halted now; the next "
                "agent on it cancels open orders, closes its positions and trades nothing "
                "until `ffe agent reset`"
            )
        elif was_halted:
            message = f"no agent is running on {account}: the account is no longer halted"
        else:
            message = f"no agent is running on {account} and the account was not halted"
        return CommandSent(command_id, False, message)

    async def close_position(
        self, account: str, symbol: str, quantity: float | None, actor: str = "cli"
    ) -> int:
        """Ask the account's running agent to close its position in ``symbol`` (``quantity``:
        the one the person confirmed, checked by the agent); the command's id, for
        ``close_outcome``. The order goes through the agent's risk engine and approval policy;
        NoAgentRunningError when no agent runs to carry it out."""
        state = await persist.get_state(self.db, account)
        if state is None:
            raise NotFoundError(f"no agent has run on account {account!r} (see `ffe agent status`)")
        if not persist.lease_live(state):
            raise NoAgentRunningError(
                f"no agent is running on account {account!r}: positions are closed by the "
                "agent that holds them (start it, or use emergency-stop to close everything)"
            )
        payload = {"symbol": symbol, "quantity": quantity}
        command_id = await persist.queue_command(self.db, account, "close", actor, payload)
        async with unit_of_work(self.db) as uow:
            details = {"command_id": command_id, **payload}
            await uow.audit.record(actor, "position.close", f"{account}/{symbol}", details)
        return command_id

    async def close_outcome(self, command_id: int, wait_s: float) -> dict[str, Any] | None:
        """What the agent did with close command ``command_id`` (``ffe.agent.closing``'s
        outcome; ``refused`` when it was dropped unhandled), waiting up to ``wait_s``; None
        when it has not answered by then."""
        deadline = time.monotonic() + wait_s
        while True:
            row = await persist.get_command(self.db, command_id)
            if row is None:
                raise NotFoundError(f"no command {command_id}")
            outcome = (row.payload or {}).get("outcome")
            if outcome is not None:
                return dict(outcome)
            if row.handled_at is not None and row.result not in (None, "taken"):
                symbol = (row.payload or {}).get("symbol")
                return {"status": "refused", "detail": row.result, "symbol": symbol}
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.1)

    async def approvals(self, account: str | None = None) -> list[Approval]:
        return await persist.pending_approvals(self.db, account)

    async def approve(self, approval_id: int, actor: str = "cli") -> Approval:
        """Approve a pending order; ApprovalClosedError when no agent trades its run."""
        return await self._decide(approval_id, "approved", actor)

    async def reject(self, approval_id: int, actor: str = "cli") -> Approval:
        return await self._decide(approval_id, "rejected", actor)

    async def _decide(self, approval_id: int, status: str, actor: str) -> Approval:
        approval = await persist.decide_approval(
            self.db, approval_id, status, actor, live_run_only=status == "approved"
        )
        async with unit_of_work(self.db) as uow:
            await uow.audit.record(
                actor,
                f"approval.{status}",
                str(approval_id),
                {"client_order_id": approval.client_order_id},
            )
        return approval


def state_change(command: str, actor: str) -> persist.StateChange | None:
    """How ``command`` from ``actor`` changes the account's stored state when no agent is
    there to carry it out; None for the commands that only steer a running agent.

    Halt and reset are the account's state, so with no agent running they are applied to it
    (at once, or by the next agent when they were sent to one that ended before it took them);
    pause, resume and stop steer a running agent, so with none they are refused or dropped."""
    if command == "emergency_stop":
        return _halted(actor)
    if command == "reset":
        return _lifted
    return None


def _halted(actor: str) -> Callable[[AgentState], dict[str, Any]]:
    return lambda state: {"status": "halted", "halted_reason": f"emergency stop by {actor}"}


def _lifted(state: AgentState) -> dict[str, Any]:
    """The account no longer halted: its state, and the halts its run's checkpoint carries
    (an emergency stop in the risk state, a drawdown halt), as a running agent's reset does."""
    checkpoint = persist.Checkpoint.of(state.checkpoint)
    lifted = None if checkpoint is None else checkpoint.lifted().as_dict()
    # A deliberate stop is no halt: a reset leaves it in force (see persist.STOPPED_BY).
    kept = state.halted_reason if persist.stopped_on_purpose(state) else None
    return {"status": "stopped", "halted_reason": kept, "checkpoint": lifted}
