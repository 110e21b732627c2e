"""The agent's health check, read from the journal's ``agent_states``: a running agent renews
its lease there every few seconds (its heartbeat), so any process sharing the journal (the
API, ``ffe health``) sees it, whichever process runs the agent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ffe.agent.control import AgentStatus
from ffe.agent.persist import LEASE_TTL, list_states
from ffe.obs.health import Probe, ProbeError
from ffe.store.database import Database
from ffe.store.models import AgentState


def agent_probe(
    db: Database,
    account: str,
    max_age_s: float = 60.0,
    *,
    now: Callable[[], datetime] | None = None,
) -> Probe:
    """Fails when the account's agent was killed (its lease lapsed while it was running), is
    halted, or never ran; passes while it runs with a fresh heartbeat, and when it stopped or
    finished on purpose (no agent is not an outage). Its detail says which, and when."""
    clock = now or (lambda: datetime.now(UTC))

    async def probe() -> str:
        states = await list_states(db)
        mine = next((s for s in states if s.account == account), None)
        if mine is None:
            others = sorted(s.account for s in states)
            elsewhere = f" (agents ran on: {', '.join(others)})" if others else ""
            raise ProbeError(f"no agent has run on account {account!r} yet{elsewhere}")
        status = AgentStatus.of(mine, clock())
        if status.running and status.lease_expires_at is not None:
            return _running(status, status.lease_expires_at - LEASE_TTL, clock(), max_age_s)
        return _not_running(mine, status, clock())

    return probe


def _age_s(then: datetime, now: datetime) -> float:
    if then.tzinfo is None:  # SQLite hands back naive UTC
        then = then.replace(tzinfo=UTC)
    return max((now - then).total_seconds(), 0.0)


def _running(status: AgentStatus, beat: datetime, now: datetime, max_age_s: float) -> str:
    age = _age_s(beat, now)
    where = f"agent on {status.account} {status.status}, run {(status.run_id or '?')[:8]}"
    if age > max_age_s:
        raise ProbeError(f"{where}: last heartbeat {age:.0f}s ago, over {max_age_s:g}s")
    return f"{where}: last heartbeat {age:.0f}s ago"


def _not_running(state: AgentState, status: AgentStatus, now: datetime) -> str:
    ago = _ago(_age_s(state.updated_at, now))
    run = f"run {(state.run_id or '?')[:8]}"
    if status.status == "halted":
        raise ProbeError(
            f"agent on {state.account} halted {ago} ({run}): {status.halted_reason}; "
            "`ffe agent reset` clears it"
        )
    if state.status not in ("stopped", "halted"):  # a lease that lapsed while running
        raise ProbeError(
            f"agent on {state.account} stopped renewing its lease {ago} while {state.status} "
            f"({run}): it was killed or lost the journal; `ffe agent run` resumes it"
        )
    return f"no agent running on {state.account}; the last one ({run}) stopped {ago}"


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    return f"{timedelta(seconds=round(seconds))} ago"
