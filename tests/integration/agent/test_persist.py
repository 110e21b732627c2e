"""The agent's own rows, on SQLite and on PostgreSQL: the account lease (one agent per
account, taken over when expired or when its holder died), control commands, approvals."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from ffe.agent import persist
from ffe.agent.journal import AgentJournal, LeaseLostError
from ffe.agent.persist import LeaseHeldError
from ffe.domain.errors import ConflictError, NotFoundError
from ffe.store.database import Database
from ffe.store.models import Approval
from ffe.store.repositories import unit_of_work
from ffe.store.types import utc_now

ACCOUNT = "paper"


def _dead_local_owner() -> str:
    """The lease owner string of a process on this host that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return f"{socket.gethostname()}:{process.pid}:x"


# -- the lease ------------------------------------------------------------------------------


async def test_acquire_lease_when_account_new_then_taken_by_owner(db):
    before = utc_now()

    state = await persist.acquire_lease(db, ACCOUNT, "host:1:a")
    stored = await persist.get_state(db, ACCOUNT)

    assert state.owner == "host:1:a"
    assert stored is not None
    assert stored.owner == "host:1:a"
    assert stored.lease_expires_at is not None
    assert stored.lease_expires_at >= before + persist.LEASE_TTL - timedelta(seconds=1)


async def test_acquire_lease_when_held_by_another_then_lease_held_error_naming_holder(db):
    await persist.acquire_lease(db, ACCOUNT, "otherhost:1:first")

    with pytest.raises(LeaseHeldError) as raised:
        await persist.acquire_lease(db, ACCOUNT, "otherhost:2:second")

    message = str(raised.value)
    assert "otherhost:1:first" in message
    assert f"ffe agent stop --account {ACCOUNT}" in message
    stored = await persist.get_state(db, ACCOUNT)
    assert stored is not None
    assert stored.owner == "otherhost:1:first"


async def test_acquire_lease_when_same_owner_again_then_renewed(db):
    first = await persist.acquire_lease(db, ACCOUNT, "host:1:a", ttl=timedelta(seconds=5))

    again = await persist.acquire_lease(db, ACCOUNT, "host:1:a", ttl=timedelta(minutes=5))

    assert again.owner == "host:1:a"
    assert first.lease_expires_at is not None
    assert again.lease_expires_at is not None
    assert again.lease_expires_at > first.lease_expires_at


async def test_acquire_lease_when_released_then_second_owner_takes_it(db):
    await persist.acquire_lease(db, ACCOUNT, "otherhost:1:first")
    await persist.release_lease(db, ACCOUNT, "otherhost:1:first", "stopped")
    released = await persist.get_state(db, ACCOUNT)

    state = await persist.acquire_lease(db, ACCOUNT, "otherhost:2:second")

    assert released is not None
    assert released.owner is None
    assert released.lease_expires_at is None
    assert released.status == "stopped"
    assert state.owner == "otherhost:2:second"


async def test_release_lease_when_not_the_holder_then_lease_kept(db):
    await persist.acquire_lease(db, ACCOUNT, "otherhost:1:first")

    await persist.release_lease(db, ACCOUNT, "otherhost:2:second", "stopped")

    with pytest.raises(LeaseHeldError):
        await persist.acquire_lease(db, ACCOUNT, "otherhost:3:third")


async def test_acquire_lease_when_expired_then_taken(db):
    await persist.acquire_lease(db, ACCOUNT, "otherhost:1:first", ttl=timedelta(seconds=-1))

    state = await persist.acquire_lease(db, ACCOUNT, "otherhost:2:second")

    assert state.owner == "otherhost:2:second"
    assert state.lease_expires_at is not None
    assert state.lease_expires_at > utc_now()


async def test_acquire_lease_when_holder_is_dead_local_process_then_taken_at_once(db):
    dead = _dead_local_owner()
    await persist.acquire_lease(db, ACCOUNT, dead, ttl=timedelta(hours=1))

    state = await persist.acquire_lease(db, ACCOUNT, "otherhost:2:second")

    assert state.owner == "otherhost:2:second"


async def test_acquire_lease_when_holder_is_live_local_process_then_lease_held_error(db):
    alive = f"{socket.gethostname()}:{os.getppid()}:x"  # the process that started pytest
    await persist.acquire_lease(db, ACCOUNT, alive, ttl=timedelta(hours=1))

    with pytest.raises(LeaseHeldError, match=alive):
        await persist.acquire_lease(db, ACCOUNT, "otherhost:2:second")


async def test_acquire_lease_when_holder_pid_gone_on_other_host_then_lease_held_error(db):
    pid = _dead_local_owner().split(":")[1]
    remote = f"not-{socket.gethostname()}:{pid}:x"  # its pid means nothing here
    await persist.acquire_lease(db, ACCOUNT, remote, ttl=timedelta(hours=1))

    with pytest.raises(LeaseHeldError):
        await persist.acquire_lease(db, ACCOUNT, "otherhost:2:second")


async def test_acquire_lease_when_two_accounts_then_each_has_its_own(db):
    await persist.acquire_lease(db, "one", "otherhost:1:a")

    state = await persist.acquire_lease(db, "two", "otherhost:2:b")

    assert state.owner == "otherhost:2:b"
    assert [s.account for s in await persist.list_states(db)] == ["one", "two"]


async def test_journal_flush_when_lease_taken_over_then_other_agent_row_untouched(db):
    await persist.acquire_lease(db, ACCOUNT, "otherhost:1:first", ttl=timedelta(seconds=-1))
    await persist.acquire_lease(db, ACCOUNT, "otherhost:2:second")
    stale = AgentJournal(db, "run-of-first", ACCOUNT, "otherhost:1:first")

    with pytest.raises(LeaseLostError, match="lost the lease"):
        await stale.flush({"bar": 999}, None, utc_now() + timedelta(hours=1))

    stored = await persist.get_state(db, ACCOUNT)
    assert stored is not None
    assert stored.checkpoint != {"bar": 999}
    assert stored.owner == "otherhost:2:second"


async def _stored_state(db: Database) -> persist.AgentState:
    state = await persist.get_state(db, ACCOUNT)
    assert state is not None
    return state


async def test_lease_live_when_owner_died_and_lease_expired_then_false(db):
    # A holder on another host (its pid means nothing here) whose lease ran out: SIGKILLed.
    await persist.acquire_lease(db, ACCOUNT, "otherhost:1:killed", ttl=timedelta(seconds=-35))

    state = await _stored_state(db)

    assert state.owner == "otherhost:1:killed"  # nobody released it
    assert persist.lease_live(state) is False


async def test_lease_live_when_holder_is_dead_local_process_then_false_before_expiry(db):
    await persist.acquire_lease(db, ACCOUNT, _dead_local_owner(), ttl=timedelta(hours=1))

    assert persist.lease_live(await _stored_state(db)) is False


async def test_lease_live_when_held_and_unexpired_then_true_until_its_expiry(db):
    await persist.acquire_lease(db, ACCOUNT, "otherhost:1:a", ttl=timedelta(minutes=5))
    state = await _stored_state(db)

    assert persist.lease_live(state) is True
    assert persist.lease_live(state, now=utc_now() + timedelta(minutes=6)) is False


async def test_renew_lease_when_held_then_extended_and_when_taken_over_then_false(db):
    await persist.acquire_lease(db, ACCOUNT, "otherhost:1:a", ttl=timedelta(seconds=5))

    renewed = await persist.renew_lease(db, ACCOUNT, "otherhost:1:a", timedelta(minutes=5))
    extended = (await _stored_state(db)).lease_expires_at
    lost = await persist.renew_lease(db, ACCOUNT, "otherhost:2:b", timedelta(minutes=5))

    assert renewed is True
    assert extended is not None
    assert extended > utc_now() + timedelta(minutes=4)
    assert lost is False
    assert (await _stored_state(db)).owner == "otherhost:1:a"


async def test_apply_if_idle_when_agent_holds_account_then_nothing_written(db):
    await persist.acquire_lease(db, ACCOUNT, "otherhost:1:a", ttl=timedelta(minutes=5))

    applied = await persist.apply_if_idle(
        db, ACCOUNT, "emergency_stop", "cli", lambda _: {"status": "halted"}
    )

    assert applied is None
    assert (await _stored_state(db)).status == "stopped"
    assert await persist.take_commands(db, ACCOUNT) == []


async def test_apply_if_idle_when_lease_expired_then_state_changed_and_command_recorded(db):
    await persist.acquire_lease(db, ACCOUNT, "otherhost:1:a", ttl=timedelta(seconds=-1))

    applied = await persist.apply_if_idle(
        db, ACCOUNT, "emergency_stop", "cli", lambda _: {"status": "halted"}
    )

    assert applied is not None
    assert (await _stored_state(db)).status == "halted"
    assert await persist.take_commands(db, ACCOUNT) == []  # carried out, not waiting


def _halt_or_reset(command, actor):
    if command == "emergency_stop":
        return lambda state: {"status": "halted", "halted_reason": f"stop by {actor}"}
    if command == "reset":
        return lambda state: {"status": "stopped", "halted_reason": None}
    return None


async def test_settle_stale_commands_when_queued_after_the_lease_was_taken_then_kept(db):
    stale = await persist.queue_command(db, ACCOUNT, "stop", "cli")
    state = await persist.acquire_lease(db, ACCOUNT, "otherhost:1:a")
    fresh = await persist.queue_command(db, ACCOUNT, "pause", "cli")

    _, settled = await persist.settle_stale_commands(
        db, ACCOUNT, "otherhost:1:a", state.updated_at, _halt_or_reset
    )
    taken = await persist.take_commands(db, ACCOUNT)

    assert [(c.id, c.result) for c in settled] == [(stale, "dropped: its agent had stopped")]
    assert [c.id for c in taken] == [fresh]


async def test_settle_stale_commands_when_halt_was_never_taken_then_applied_in_order(db):
    await persist.acquire_lease(db, ACCOUNT, "otherhost:1:gone", ttl=timedelta(seconds=-1))
    for command, actor in [("emergency_stop", "a"), ("stop", "b"), ("emergency_stop", "c")]:
        await persist.queue_command(db, ACCOUNT, command, actor)
    state = await persist.acquire_lease(db, ACCOUNT, "otherhost:2:next")

    settled_state, settled = await persist.settle_stale_commands(
        db, ACCOUNT, "otherhost:2:next", state.updated_at, _halt_or_reset
    )
    stored = await _stored_state(db)

    applied, dropped = "applied to the stored state", "dropped"
    assert [c.result.split(":")[0] for c in settled] == [applied, dropped, applied]
    assert (settled_state.status, settled_state.halted_reason) == ("halted", "stop by c")
    assert (stored.status, stored.halted_reason, stored.owner) == (
        "halted",
        "stop by c",
        "otherhost:2:next",
    )
    assert await persist.take_commands(db, ACCOUNT) == []


async def test_settle_stale_commands_when_lease_not_held_then_lease_held_error(db):
    await persist.queue_command(db, ACCOUNT, "emergency_stop", "cli")
    state = await persist.acquire_lease(db, ACCOUNT, "otherhost:1:a", ttl=timedelta(minutes=5))

    with pytest.raises(LeaseHeldError):
        await persist.settle_stale_commands(
            db, ACCOUNT, "otherhost:2:b", state.updated_at, _halt_or_reset
        )

    assert (await _stored_state(db)).status == "stopped"


async def test_renew_lease_when_a_command_was_applied_after_it_lapsed_then_false(db):
    await persist.acquire_lease(db, ACCOUNT, "otherhost:1:blocked", ttl=timedelta(seconds=-1))
    await persist.apply_if_idle(
        db, ACCOUNT, "emergency_stop", "cli", lambda _: {"status": "halted"}
    )

    renewed = await persist.renew_lease(db, ACCOUNT, "otherhost:1:blocked", timedelta(minutes=5))
    stored = await _stored_state(db)

    assert renewed is False
    assert (stored.status, stored.owner, stored.lease_expires_at) == ("halted", None, None)


# -- commands -------------------------------------------------------------------------------


async def test_take_commands_when_queued_then_returned_once_oldest_first(db):
    first = await persist.queue_command(db, ACCOUNT, "pause", "cli")
    second = await persist.queue_command(db, ACCOUNT, "stop", "api:alice")
    await persist.queue_command(db, "other", "pause", "cli")

    taken = await persist.take_commands(db, ACCOUNT)
    again = await persist.take_commands(db, ACCOUNT)

    assert [(c.id, c.command, c.actor) for c in taken] == [
        (first, "pause", "cli"),
        (second, "stop", "api:alice"),
    ]
    assert all(c.handled_at is not None and c.result == "taken" for c in taken)
    assert again == []
    assert [c.command for c in await persist.take_commands(db, "other")] == ["pause"]


async def test_take_commands_when_new_command_after_take_then_only_new_one(db):
    await persist.queue_command(db, ACCOUNT, "pause", "cli")
    await persist.take_commands(db, ACCOUNT)
    later = await persist.queue_command(db, ACCOUNT, "resume", "cli")

    taken = await persist.take_commands(db, ACCOUNT)

    assert [(c.id, c.command) for c in taken] == [(later, "resume")]


# -- approvals ------------------------------------------------------------------------------


async def _approval(db: Database, client_id: str, *, expires_in: timedelta) -> int:
    """A pending approval on a new paper run; its id."""
    async with unit_of_work(db) as uow:
        run = await uow.runs.add(kind="paper", strategy="x", code_version="t")
        run_id = run.id
    async with db.session() as session:
        row = Approval(
            run_id=run_id,
            account=ACCOUNT,
            client_order_id=client_id,
            time=datetime(2024, 1, 2, tzinfo=UTC),
            symbol="SP500",
            quantity=3.0,
            reference_price=4_700.5,
            rationale="sma cross",
            status="pending",
            expires_at=utc_now() + expires_in,
        )
        session.add(row)
        await session.flush()
        return row.id


async def _stored(db: Database, approval_id: int) -> Approval:
    async with db.session() as session:
        approval = await session.get(Approval, approval_id)
    assert approval is not None
    return approval


async def test_decide_approval_when_pending_then_approved_by_actor(db):
    approval_id = await _approval(db, "c-1", expires_in=timedelta(hours=1))

    decided = await persist.decide_approval(db, approval_id, "approved", "cli")
    waiting = await persist.pending_approvals(db, ACCOUNT)
    stored = await persist.approvals_for_run(db, decided.run_id, ("approved",))

    assert decided.status == "approved"
    assert decided.decided_by == "cli"
    assert decided.decided_at is not None
    assert waiting == []
    assert [(a.id, a.client_order_id, a.decided_by) for a in stored] == [
        (approval_id, "c-1", "cli")
    ]


async def test_decide_approval_when_rejected_then_no_longer_pending(db):
    kept = await _approval(db, "c-1", expires_in=timedelta(hours=1))
    dropped = await _approval(db, "c-2", expires_in=timedelta(hours=1))

    await persist.decide_approval(db, dropped, "rejected", "cli")

    assert [a.id for a in await persist.pending_approvals(db)] == [kept]


async def test_decide_approval_when_id_unknown_then_error_pointing_to_list(db):
    with pytest.raises(NotFoundError, match=r"no approval 999 \(see `ffe agent approvals`\)"):
        await persist.decide_approval(db, 999, "approved", "cli")


async def test_decide_approval_when_already_decided_then_error_saying_how(db):
    approval_id = await _approval(db, "c-1", expires_in=timedelta(hours=1))
    await persist.decide_approval(db, approval_id, "rejected", "alice")

    with pytest.raises(ConflictError, match=f"approval {approval_id} is already rejected"):
        await persist.decide_approval(db, approval_id, "approved", "bob")

    stored = await _stored(db, approval_id)
    assert (stored.status, stored.decided_by) == ("rejected", "alice")


async def test_decide_approval_when_expired_then_error_and_still_pending(db):
    approval_id = await _approval(db, "c-1", expires_in=timedelta(seconds=-1))

    with pytest.raises(ConflictError, match=f"approval {approval_id} expired at"):
        await persist.decide_approval(db, approval_id, "approved", "cli")

    stored = await _stored(db, approval_id)
    assert (stored.status, stored.decided_at) == ("pending", None)


async def test_decide_approval_when_now_past_expiry_then_error(db):
    approval_id = await _approval(db, "c-1", expires_in=timedelta(minutes=5))

    with pytest.raises(ConflictError, match="expired"):
        await persist.decide_approval(
            db, approval_id, "approved", "cli", now=utc_now() + timedelta(minutes=6)
        )


async def test_decide_approval_when_no_agent_trades_its_run_then_approval_refused(db):
    approval_id = await _approval(db, "c-1", expires_in=timedelta(hours=1))

    with pytest.raises(persist.ApprovalClosedError, match="which no agent is trading now"):
        await persist.decide_approval(db, approval_id, "approved", "cli", live_run_only=True)

    stored = await _stored(db, approval_id)
    assert (stored.status, stored.decided_at) == ("pending", None)


async def test_decide_approval_when_agent_trades_another_run_then_refused(db):
    approval_id = await _approval(db, "c-1", expires_in=timedelta(hours=1))
    other = await _approval(db, "c-2", expires_in=timedelta(hours=1))
    await persist.acquire_lease(db, ACCOUNT, "otherhost:1:a")
    await persist.set_state(db, ACCOUNT, run_id=(await _stored(db, other)).run_id)

    with pytest.raises(persist.ApprovalClosedError):
        await persist.decide_approval(db, approval_id, "approved", "cli", live_run_only=True)
    approved = await persist.decide_approval(db, other, "approved", "cli", live_run_only=True)

    assert approved.status == "approved"
    assert (await _stored(db, approval_id)).status == "pending"
