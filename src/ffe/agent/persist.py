"""The agent's rows outside the run journal: the account's state and lease, control commands
and the approval queue. Every function is one short transaction.

The lease: one running agent per account. An agent takes the account's row when nobody holds
it, when the holder's lease has expired, or when the holder was a process on this machine that
no longer exists (a killed agent need not wait out its lease). It renews the lease with every
journal flush and gives it up when it stops.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from ffe.domain.errors import ConflictError, FfeError, NotFoundError
from ffe.risk.rules import RiskContext
from ffe.store.database import Database
from ffe.store.models import AgentCommand, AgentState, Approval
from ffe.store.types import utc_now

LEASE_TTL = timedelta(seconds=30)
# After a failed renewal (the journal down), the agent tries again this often instead of a
# third of LEASE_TTL: back from an outage, it holds its lease (and is ready) within a second.
LEASE_RETRY_S = 1.0

# How a deliberate stop (the ``stop`` command) is told apart from every other end: the account's
# status "stopped" with this in ``halted_reason`` (otherwise only a halt's reason). A stop by the
# orchestrator (SIGTERM, Ctrl-C) or the data's end leaves "stopped" with no reason; a failure
# leaves "running" (or "halted"). An agent that starts trading clears it. No new column: it is
# read only by ``stopped_on_purpose``.
STOPPED_BY = "stopped by "


def stop_mark(actor: str) -> str:
    """What ``halted_reason`` holds while an account is stopped on purpose by ``actor``."""
    return f"{STOPPED_BY}{actor}"


def stopped_on_purpose(state: AgentState | None) -> str | None:
    """Who stopped the account's agent on purpose (a ``stop`` command), when it was and no
    agent has traded it since; None otherwise (never run, ended by a signal, failed, halted)."""
    if state is None or state.status != "stopped":
        return None
    reason = state.halted_reason
    if reason is None or not reason.startswith(STOPPED_BY):
        return None
    return reason[len(STOPPED_BY) :]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a run stands, as the agent writes it with every journal flush (the account's
    ``checkpoint`` column, JSON) and reads it back to resume: the last bar it finished, the
    equity peak its drawdown is measured from, a halt, the trades journaled so far, the risk
    state (daily loss, cooldowns, emergency stop), the day the kill switch last flattened, the
    strategy's own state where it keeps one (the ensemble's learnt weights), and the decisions
    its LLM voter failed to vote on so far."""

    bar: int = -1
    peak: float | None = None  # None: the run's starting cash
    halted_at: int | None = None
    halt_reason: str | None = None
    trades: int = 0
    risk: dict[str, Any] | None = None  # RiskContext.to_dict()
    flattened_day: date | None = None
    strategy: dict[str, Any] | None = None  # the stepper's state(), when it has one
    origin: str | None = None  # a live feed's first bar (ISO): bar 0 when the run resumes
    llm_failures: int = 0  # the run's decisions its LLM voter failed to vote on, so far

    def as_dict(self) -> dict[str, Any]:
        """The JSON document stored in the journal."""
        return {
            "bar": self.bar,
            "peak": self.peak,
            "halted_at": self.halted_at,
            "halt_reason": self.halt_reason,
            "trades": self.trades,
            "risk": self.risk,
            "flattened_day": None if self.flattened_day is None else str(self.flattened_day),
            "strategy": self.strategy,
            "origin": self.origin,
            "llm_failures": self.llm_failures,
        }

    @classmethod
    def of(cls, stored: Mapping[str, Any] | None) -> Checkpoint | None:
        """The checkpoint a journal row holds (None when it holds none). Keys an older
        version did not write take their defaults."""
        if stored is None:
            return None
        day = stored.get("flattened_day")
        halted_at = stored.get("halted_at")
        peak = stored.get("peak")
        return cls(
            bar=int(stored.get("bar", -1)),
            peak=None if peak is None else float(peak),
            halted_at=None if halted_at is None else int(halted_at),
            halt_reason=stored.get("halt_reason"),
            trades=int(stored.get("trades", 0)),
            risk=dict(stored["risk"]) if stored.get("risk") else None,
            flattened_day=date.fromisoformat(day) if day else None,
            strategy=dict(stored["strategy"]) if stored.get("strategy") else None,
            origin=stored.get("origin"),
            llm_failures=int(stored.get("llm_failures", 0)),
        )

    def lifted(self) -> Checkpoint:
        """The same checkpoint without its halts: no drawdown halt, and the emergency stop
        in the risk state cleared (what a reset does)."""
        risk = self.risk
        if risk:
            context = RiskContext.from_dict(risk)
            context.reset_emergency()
            risk = context.to_dict()
        return replace(self, halted_at=None, halt_reason=None, risk=risk)


class LeaseHeldError(FfeError):
    """Another agent trades this account: stop it first, or wait for its lease to expire."""


class NoAgentRunningError(ConflictError):
    """The command needs a running agent and none holds the account: start one first."""


class ApprovalClosedError(ConflictError):
    """The approval's run is not being traded: nothing would send the order."""


def new_owner() -> str:
    """This process's lease identity: host, pid and a random token."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def held_here(owner: str | None) -> bool:
    """Whether ``owner`` (a lease holder, as ``new_owner`` names it) is this process."""
    if owner is None:
        return False
    host, _, rest = owner.partition(":")
    return host == socket.gethostname() and rest.partition(":")[0] == str(os.getpid())


def _holder_gone(owner: str | None) -> bool:
    """True when ``owner`` was a process on this host that has ended."""
    if owner is None:
        return True
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # a second agent in this process: the lease decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def lease_live(state: AgentState, now: datetime | None = None) -> bool:
    """Whether an agent holds the account now: its lease has not expired and its holder is
    not a process on this host that has ended (a killed agent never released its lease)."""
    if state.owner is None or state.lease_expires_at is None:
        return False
    if state.lease_expires_at <= (now or utc_now()):
        return False
    return not _holder_gone(state.owner)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


async def acquire_lease(
    db: Database, account: str, owner: str, ttl: timedelta = LEASE_TTL
) -> AgentState:
    """Take the account's lease or raise LeaseHeldError naming the holder."""
    now = utc_now()
    with db.errors("take the agent's lease"):
        async with db.session() as session:
            state = await session.get(AgentState, account, with_for_update=not db.is_sqlite)
            if state is None:
                state = AgentState(account=account, status="stopped", updated_at=now)
                session.add(state)
                try:
                    await session.flush()
                except IntegrityError:  # another agent created it at the same moment
                    raise LeaseHeldError(
                        f"account {account!r} is being taken by another agent"
                    ) from None
            free = state.owner is None or state.owner == owner
            expired = state.lease_expires_at is not None and state.lease_expires_at < now
            if not (free or expired or _holder_gone(state.owner)):
                raise LeaseHeldError(
                    f"account {account!r} is traded by agent {state.owner} (lease until "
                    f"{state.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC): stop it with "
                    f"`ffe agent stop --account {account}` or wait for the lease to expire"
                )
            claimed = await session.execute(
                update(AgentState)
                .where(AgentState.account == account)
                .where(or_(AgentState.owner.is_(None), AgentState.owner == state.owner))
                .values(owner=owner, lease_expires_at=now + ttl, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                raise LeaseHeldError(f"account {account!r} was just taken by another agent")
            await session.refresh(state)
            return state


async def release_lease(db: Database, account: str, owner: str, status: str) -> None:
    """Give the lease up (only if we still hold it) and record the final status."""
    with db.errors("release the agent's lease"):
        async with db.session() as session:
            await session.execute(
                update(AgentState)
                .where(and_(AgentState.account == account, AgentState.owner == owner))
                .values(owner=None, lease_expires_at=None, status=status, updated_at=utc_now())
                .execution_options(synchronize_session=False)
            )


async def renew_lease(db: Database, account: str, owner: str, ttl: timedelta = LEASE_TTL) -> bool:
    """Extend ``owner``'s lease by ``ttl`` from now; False when it no longer holds it (another
    agent took it, or a command was applied to the stored state after it lapsed)."""
    now = utc_now()
    with db.errors("renew the agent's lease"):
        async with db.session() as session:
            renewed = await session.execute(
                update(AgentState)
                .where(AgentState.account == account, AgentState.owner == owner)
                .values(lease_expires_at=now + ttl, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            return int(renewed.rowcount) == 1  # type: ignore[attr-defined]


async def set_state(db: Database, account: str, **values: Any) -> None:
    with db.errors("update the agent's state"):
        async with db.session() as session:
            await session.execute(
                update(AgentState)
                .where(AgentState.account == account)
                .values(**values, updated_at=utc_now())
                .execution_options(synchronize_session=False)
            )


async def get_state(db: Database, account: str) -> AgentState | None:
    with db.errors("read the agent's state"):
        async with db.session() as session:
            return await session.get(AgentState, account)


async def list_states(db: Database) -> Sequence[AgentState]:
    with db.errors("read the agents' states"):
        async with db.session() as session:
            return (await session.scalars(select(AgentState).order_by(AgentState.account))).all()


# -- commands -------------------------------------------------------------------------------


async def queue_command(
    db: Database, account: str, command: str, actor: str, payload: dict[str, Any] | None = None
) -> int:
    with db.errors("queue the command"):
        async with db.session() as session:
            row = AgentCommand(
                account=account, command=command, actor=actor, created_at=utc_now(), payload=payload
            )
            session.add(row)
            await session.flush()
            return row.id


async def apply_if_idle(
    db: Database,
    account: str,
    command: str,
    actor: str,
    change: Callable[[AgentState], dict[str, Any]],
) -> int | None:
    """When no agent holds the account, write ``change(state)`` to its stored state, clear
    the lapsed lease, and record ``command`` as carried out, in one transaction; the command's
    id. None, writing nothing, when an agent holds it (the command must then go to that
    agent)."""
    now = utc_now()
    with db.errors("apply the command"):
        async with db.session() as session:
            state = await session.get(AgentState, account, with_for_update=not db.is_sqlite)
            if state is None or lease_live(state, now):
                return None
            # Written only if nobody took the lease since it was read (as acquire_lease does).
            applied = await session.execute(
                update(AgentState)
                .where(AgentState.account == account)
                .where(_same_holder(state))
                # The lapsed holder, maybe alive with its loop blocked, must not renew the
                # lease and trade on past the change: it finds the lease gone and stops.
                .values(**change(state), owner=None, lease_expires_at=None, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if int(applied.rowcount) != 1:  # type: ignore[attr-defined]
                return None
            row = AgentCommand(
                account=account,
                command=command,
                actor=actor,
                created_at=now,
                handled_at=now,
                result="applied to the stored state: no agent was running",
            )
            session.add(row)
            await session.flush()
            return row.id


def _same_holder(state: AgentState) -> Any:
    if state.owner is None:
        return AgentState.owner.is_(None)
    return and_(
        AgentState.owner == state.owner, AgentState.lease_expires_at == state.lease_expires_at
    )


StateChange = Callable[[AgentState], dict[str, Any]]


async def settle_stale_commands(
    db: Database,
    account: str,
    owner: str,
    before: datetime,
    change_of: Callable[[str, str], StateChange | None],
) -> tuple[AgentState, list[AgentCommand]]:
    """Settle the commands queued before ``before`` (when ``owner`` took the lease) and never
    taken: their agent ended before it took them. One that changes the account's state
    (``change_of(command, actor)`` is not None: a halt, a reset) is applied to the stored
    state, oldest first, as it would have been with no agent running; the others are dropped
    (a ``stop`` meant for that agent must not end this run at its first bar). The account's
    state after them, and the commands settled."""
    with db.errors("settle control commands"):
        async with db.session() as session:
            state = await session.get(AgentState, account, with_for_update=not db.is_sqlite)
            if state is None or state.owner != owner:
                raise LeaseHeldError(f"account {account!r} was just taken by another agent")
            query = (
                select(AgentCommand)
                .where(AgentCommand.account == account, AgentCommand.handled_at.is_(None))
                .where(AgentCommand.created_at < before)
                .order_by(AgentCommand.id)
            )
            commands = list((await session.scalars(query)).all())
            now = utc_now()
            for command in commands:
                command.handled_at = now
                change = change_of(command.command, command.actor)
                if change is None:
                    command.result = "dropped: its agent had stopped"
                    continue
                for name, value in change(state).items():
                    setattr(state, name, value)
                state.updated_at = now
                command.result = "applied to the stored state: its agent had stopped"
            await session.flush()
            return state, commands


async def take_commands(db: Database, account: str) -> list[AgentCommand]:
    """Commands not yet handled, oldest first, stamped handled as they are taken."""
    with db.errors("read control commands"):
        async with db.session() as session:
            query = (
                select(AgentCommand)
                .where(AgentCommand.account == account, AgentCommand.handled_at.is_(None))
                .order_by(AgentCommand.id)
            )
            commands = list((await session.scalars(query)).all())
            now = utc_now()
            for command in commands:
                command.handled_at, command.result = now, "taken"
            return commands


async def finish_command(
    db: Database, command_id: int, result: str, outcome: dict[str, Any]
) -> None:
    """Record what came of a command the agent carried out (a close: the order sent, waiting
    for approval, denied or refused), for whoever sent it and waits for the answer."""
    with db.errors("record the command's outcome"):
        async with db.session() as session:
            row = await session.get(AgentCommand, command_id)
            if row is not None:
                row.result = result
                row.payload = {**(row.payload or {}), "outcome": outcome}


async def get_command(db: Database, command_id: int) -> AgentCommand | None:
    with db.errors("read the command"):
        async with db.session() as session:
            return await session.get(AgentCommand, command_id)


# -- approvals ------------------------------------------------------------------------------


async def pending_approvals(db: Database, account: str | None = None) -> list[Approval]:
    with db.errors("read approvals"):
        async with db.session() as session:
            query = select(Approval).where(Approval.status == "pending").order_by(Approval.id)
            if account is not None:
                query = query.where(Approval.account == account)
            return list((await session.scalars(query)).all())


async def approvals_for_run(db: Database, run_id: str, statuses: Sequence[str]) -> list[Approval]:
    with db.errors("read approvals"):
        async with db.session() as session:
            query = (
                select(Approval)
                .where(Approval.run_id == run_id, Approval.status.in_(statuses))
                .order_by(Approval.id)
            )
            return list((await session.scalars(query)).all())


async def decide_approval(
    db: Database,
    approval_id: int,
    status: str,
    actor: str,
    now: datetime | None = None,
    *,
    live_run_only: bool = False,
) -> Approval:
    """Approve or reject a pending approval; FfeError when it is unknown or no longer waiting
    (already decided, or expired). With ``live_run_only``, ApprovalClosedError when no agent
    trades the approval's run now (nothing would send the order)."""
    now = now or utc_now()
    with db.errors("record the approval"):
        async with db.session() as session:
            approval = await session.get(Approval, approval_id)
            if approval is None:
                raise NotFoundError(f"no approval {approval_id} (see `ffe agent approvals`)")
            if approval.status != "pending":
                raise ConflictError(f"approval {approval_id} is already {approval.status}")
            if approval.expires_at <= now:
                raise ConflictError(
                    f"approval {approval_id} expired at {approval.expires_at:%H:%M:%S} UTC"
                )
            if live_run_only:
                await _check_run_traded(session, approval, now)
            approval.status, approval.decided_at, approval.decided_by = status, now, actor
            await session.flush()
            return approval


async def _check_run_traded(session: Any, approval: Approval, now: datetime) -> None:
    state = await session.get(AgentState, approval.account)
    if state is not None and state.run_id == approval.run_id and lease_live(state, now):
        return
    raise ApprovalClosedError(
        f"approval {approval.id} belongs to run {approval.run_id[:8]}, which no agent is "
        f"trading now: nothing would send the order, so it was not approved (see "
        f"`ffe agent status`)"
    )


async def mark_approvals(db: Database, ids: Sequence[int], status: str, by: str) -> None:
    if not ids:
        return
    with db.errors("update approvals"):
        async with db.session() as session:
            await session.execute(
                update(Approval)
                .where(Approval.id.in_(list(ids)))
                .values(status=status, decided_at=utc_now(), decided_by=by)
                .execution_options(synchronize_session=False)
            )


async def record_event(db: Database, account: str, action: str, details: dict[str, Any]) -> None:
    """One of the agent's events in the audit log: what its feed did (an outage and its end,
    stale data, a gap filled, bars caught up after a restart)."""
    from ffe.store.repositories import unit_of_work

    async with unit_of_work(db) as uow:
        await uow.audit.record("agent", action, account, details)
