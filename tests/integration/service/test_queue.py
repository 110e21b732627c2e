"""The job queue on the journal, SQLite and PostgreSQL: each job goes to one claim however
many workers race for it; only the current claim records a result; a dead worker's job is
queued again while it has attempts left, then failed saying so; a worker that stops hands its
job back without using an attempt; queued jobs say when no worker is alive."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from ffe import bootstrap
from ffe.config import Settings
from ffe.service.jobs.queue import JobQueue
from ffe.service.jobs.registry import WorkerCounts
from ffe.service.jobs.stop import NO_WORKER
from ffe.service.jobs.work import KINDS
from ffe.store.database import Database
from ffe.store.models import Job, Worker

POLICY = bootstrap.queue_policy(Settings())


async def _silence(db: Database, job_id: str) -> None:
    """Make the job's heartbeat stale, as when its worker was killed."""
    stale = datetime.now(UTC) - timedelta(seconds=POLICY.stale_s * 2)
    async with db.session() as session:
        await session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=stale))


async def test_claim_when_workers_race_then_each_job_goes_to_exactly_one(db, database_url):
    other = Database(database_url)  # a second engine, as a second process has
    try:
        queues = [JobQueue(db, POLICY), JobQueue(other, POLICY)]
        submitted = {(await queues[0].submit("backtest", {"n": n})).id for n in range(6)}

        claims = await asyncio.gather(*(queues[n % 2].claim(f"worker-{n}") for n in range(12)))

        taken = [claim.id for claim in claims if claim is not None]
        assert sorted(taken) == sorted(submitted)  # each job once, none twice
        assert all(claim.attempts == 1 for claim in claims if claim is not None)
        assert await queues[1].counts() == {"queued": 0, "running": 6}
    finally:
        await other.dispose()


async def test_claim_takes_the_oldest_queued_job_first(db):
    queue = JobQueue(db, POLICY)
    first = await queue.submit("sweep", {})
    await queue.submit("sweep", {})

    claim = await queue.claim("worker-a")

    assert claim is not None
    assert (claim.id, claim.job.status, claim.job.owner) == (first.id, "running", "worker-a")


async def test_finish_when_job_was_taken_over_then_only_the_current_claim_records(db):
    queue = JobQueue(db, POLICY)
    job = await queue.submit("backtest", {})
    stalled = await queue.claim("worker-a")
    assert stalled is not None
    await _silence(db, job.id)

    recovered = await queue.recover()
    current = await queue.claim("worker-b")
    assert current is not None
    late = await queue.finish(stalled, {"status": "finished", "result": {"by": "a"}})
    landed = await queue.finish(current, {"status": "finished", "result": {"by": "b"}})

    assert recovered.requeued == (job.id,)
    assert (late, landed) == (False, True)
    assert not await queue.beat(stalled, 0.9)
    done = await queue.get(job.id)
    assert (done.status, done.result, done.attempts, done.owner) == (
        "finished",
        {"by": "b"},
        2,
        "worker-b",
    )


async def test_recover_when_attempts_used_up_then_failed_saying_how_often(db):
    queue = JobQueue(db, bootstrap.queue_policy(Settings(jobs={"max_attempts": 2})))  # type: ignore[arg-type]
    job = await queue.submit("backtest", {})
    for worker in ("worker-a", "worker-b"):
        assert await queue.claim(worker) is not None
        await _silence(db, job.id)
        recovered = await queue.recover()

    assert recovered.failed == (job.id,)
    failed = await queue.get(job.id)
    assert (failed.status, failed.attempts) == ("failed", 2)
    assert failed.error is not None
    assert failed.error.startswith(
        "interrupted: the process running it stopped 2 times (jobs.max_attempts is 2)"
    )
    assert failed.finished_at is not None


async def test_recover_when_job_still_runs_here_or_beats_then_left_alone(db):
    queue = JobQueue(db, POLICY)
    here, elsewhere = await queue.submit("sweep", {}), await queue.submit("sweep", {})
    assert await queue.claim("worker-a") is not None
    assert await queue.claim("worker-b") is not None
    await _silence(db, here.id)  # a journal outage here: its heartbeats were not recorded

    recovered = await queue.recover(running_here=[here.id])

    assert (recovered.requeued, recovered.failed) == ((), ())
    assert (await queue.get(here.id)).status == "running"
    assert (await queue.get(elsewhere.id)).status == "running"


async def test_failed_by_its_own_error_then_not_retried(db):
    queue = JobQueue(db, POLICY)
    job = await queue.submit("backtest", {})
    claim = await queue.claim("worker-a")
    assert claim is not None

    await queue.finish(claim, {"status": "failed", "error": "ValueError: no bars"})
    recovered = await queue.recover()

    assert recovered.requeued == ()
    assert await queue.claim("worker-b") is None
    assert (await queue.get(job.id)).status == "failed"


async def test_hand_back_then_queued_as_before_without_using_an_attempt(db):
    queue = JobQueue(db, POLICY)
    job = await queue.submit("backtest", {})
    claim = await queue.claim("worker-a")
    assert claim is not None
    queue.doorbell.clear()

    handed = await queue.hand_back(claim)

    assert handed
    assert queue.doorbell.is_set()  # a worker of this process looks again at once
    back = await queue.get(job.id)
    assert (back.status, back.attempts, back.owner, back.started_at) == ("queued", 0, None, None)
    again = await queue.claim("worker-b")
    assert again is not None
    assert again.attempts == 1


async def test_beat_when_cancelled_elsewhere_then_false(db):
    queue = JobQueue(db, POLICY)
    job = await queue.submit("sweep", {})
    claim = await queue.claim("worker-a")
    assert claim is not None
    assert await queue.beat(claim, 0.5)

    await queue.cancel(job.id, "cli:someone")

    assert not await queue.beat(claim, 0.6)
    cancelled = await queue.get(job.id)
    assert (cancelled.status, cancelled.error) == ("cancelled", "cancelled by cli:someone")


async def test_describe_when_no_worker_alive_then_queued_jobs_say_so(db):
    queue = JobQueue(db, POLICY)
    running = await queue.submit("sweep", {})
    assert await queue.claim("worker-a") is not None
    queued = await queue.submit("sweep", {})

    alone = await queue.describe([await queue.get(running.id), queued])
    await queue.registry.register("worker-b", "worker", 1)
    served = await queue.describe([queued])

    assert [job["waiting"] for job in alone] == [None, NO_WORKER]
    assert served[0]["waiting"] is None


async def test_registry_counts_only_workers_that_beat_and_did_not_stop(db):
    queue = JobQueue(db, POLICY)
    registry = queue.registry
    for name in ("alive", "stopped", "silent"):
        await registry.register(name, "worker", 2)
    await registry.stopped("stopped", WorkerCounts(running=0, finished=3, failed=1))
    stale = datetime.now(UTC) - timedelta(seconds=POLICY.stale_s * 2)
    async with db.session() as session:
        await session.execute(
            update(Worker).where(Worker.id == "silent").values(heartbeat_at=stale)
        )

    snapshot = await queue.snapshot()

    assert await registry.count_alive() == 1
    assert [w.worker for w in snapshot.workers] == ["alive"]


async def test_submit_when_kind_unknown_then_refused_naming_the_kinds(db):
    from ffe.domain.errors import FfeError

    with pytest.raises(FfeError, match="unknown job kind 'teleport'") as refused:
        await JobQueue(db, POLICY).submit("teleport", {})

    assert all(kind in str(refused.value) for kind in KINDS)


class _Behind(datetime):
    """A machine's clock running a minute behind (no NTP on it)."""

    @classmethod
    def now(cls, tz=None):  # type: ignore[no-untyped-def,override]
        return datetime.now(tz) - timedelta(seconds=60)


async def test_workers_on_machines_whose_clocks_differ_then_a_live_one_is_not_taken_over(
    postgres_url, monkeypatch
):
    from ffe.service.jobs import queue as queue_module
    from ffe.service.jobs import registry as registry_module
    from ffe.store import migrate

    behind, ahead = Database(postgres_url), Database(postgres_url)  # two machines, one journal
    await migrate.upgrade(behind)
    try:
        slow, right = JobQueue(behind, POLICY), JobQueue(ahead, POLICY)
        job = await right.submit("sweep", {})
        with monkeypatch.context() as machine:  # what the worker with the late clock does
            machine.setattr(queue_module, "datetime", _Behind)
            machine.setattr(registry_module, "datetime", _Behind)
            await slow.registry.register("late-clock", "worker", 1)
            claim = await slow.claim("late-clock")
            assert claim is not None
            assert await slow.beat(claim, 0.5)
            assert await slow.registry.beat("late-clock", WorkerCounts(running=1))

        recovered = await right.recover()  # another worker, its clock right

        assert recovered.requeued == ()  # it beats: its job stays its own
        assert (await right.get(job.id)).status == "running"
        assert await right.registry.count_alive() == 1
    finally:
        await behind.dispose()
        await ahead.dispose()
