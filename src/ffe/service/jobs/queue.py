"""The job queue: backtests, sweeps and forecast benchmarks in the journal's ``jobs`` table,
shared by every process that submits, runs or shows them (the API, ``ffe worker``, ``ffe jobs``).

A job is ``queued`` until a worker claims it, ``running`` while that worker's heartbeat stays
fresh, then ``finished``, ``failed`` or ``cancelled``. ``claim`` takes the oldest queued job in
one ``UPDATE ... WHERE status = 'queued'`` (on PostgreSQL the row is chosen ``FOR UPDATE SKIP
LOCKED``; SQLite runs one writer at a time), so with any number of workers each claim goes to
one of them. Each claim adds one to ``attempts``, and a claim is the job's id, its worker (the
``owner``) and that count: heartbeats, progress and the result land only while the job is
still that claim, so a worker that stalled past ``jobs.stale_s`` and comes back after its job
was taken over records nothing.

A worker that dies leaves its job ``running`` with a stale heartbeat. ``recover`` (every worker
runs it) queues such a job again while its ``attempts`` are below ``jobs.max_attempts``, and
otherwise fails it, saying it was interrupted so many times. A job that fails by its own error
is not retried: the same input fails the same way. A worker that stops cleanly hands its
unfinished jobs back (``hand_back``), which does not use up an attempt.

Submitting wakes the workers at once where something can carry the news: in this process (the
``doorbell`` event), over Redis (a message on the kv bus's ``jobs`` channel) and PostgreSQL
(``NOTIFY ffe_jobs``, sent in the transaction that queues the job); see ``wake``.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from ffe.domain.errors import FfeError
from ffe.obs.metrics import JobsSnapshot, WorkerJobs
from ffe.service.jobs.registry import WorkerRegistry, journal_now
from ffe.service.jobs.stop import NO_WORKER, JobNotFoundError, cancel_job, interrupted_error
from ffe.service.jobs.work import KINDS
from ffe.store.database import Database
from ffe.store.models import Job
from ffe.store.repositories import new_id

if TYPE_CHECKING:
    from ffe.bootstrap import QueuePolicy
    from ffe.kv import EventBus

log = logging.getLogger(__name__)

JOBS_CHANNEL = "jobs"  # the kv bus channel submissions are announced on
NOTIFY_CHANNEL = "ffe_jobs"  # and PostgreSQL's


def job_dict(job: Job, waiting: str | None = None, progress: float | None = None) -> dict[str, Any]:
    """A job as JSON; ``waiting`` says why a queued job does not run (no worker alive);
    ``progress``, when known, is fresher than the one its last heartbeat recorded."""

    def iso(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "waiting": waiting,
        "progress": job.progress if progress is None else progress,
        "error": job.error,
        "attempts": job.attempts,
        "run_id": job.run_id,
        "payload": job.payload,
        "result": job.result,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
    }


@dataclass(frozen=True, slots=True)
class Claim:
    """One worker's claim of one job: the job's heartbeats and result land only while the job
    is still this claim (running, this owner, this many attempts)."""

    job: Job
    owner: str
    attempts: int

    @property
    def id(self) -> str:
        return self.job.id


@dataclass(frozen=True, slots=True)
class Recovered:
    """What ``recover`` did with the jobs of dead workers."""

    requeued: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


class JobQueue:
    """Submits, claims, tracks and reports jobs in one journal."""

    def __init__(self, db: Database, policy: QueuePolicy, bus: EventBus | None = None) -> None:
        self.db, self.policy, self.bus = db, policy, bus
        self.registry = WorkerRegistry(db, policy.stale_s)
        self.doorbell = asyncio.Event()  # set when a job may be waiting: a worker looks now

    # -- submitting and reading ----------------------------------------------------------------

    async def submit(self, kind: str, payload: dict[str, Any]) -> Job:
        """Queue a job; a worker runs it when one is free."""
        if kind not in KINDS:
            raise FfeError(f"unknown job kind {kind!r}: use one of {', '.join(KINDS)}")
        job = Job(
            id=new_id(), kind=kind, status="queued", payload=payload, progress=0.0, attempts=0
        )
        async with self.db.session() as session:
            session.add(job)
            await self._notify_postgres(session)
        await self._announce([job.id])
        return job

    async def get(self, job_id: str) -> Job:
        """One job; ``JobNotFoundError`` for an unknown id."""
        async with self.db.session() as session:
            job = await session.get(Job, job_id)
        if job is None:
            raise JobNotFoundError(f"no job {job_id!r}: list the jobs with GET /api/v1/jobs")
        return job

    async def list(self, kind: str | None, limit: int, offset: int) -> tuple[list[Job], int]:
        """Jobs newest first (of one ``kind``), and how many there are."""
        query = select(Job).order_by(Job.created_at.desc(), Job.id)
        counted = select(func.count()).select_from(Job)
        if kind is not None:
            query, counted = query.where(Job.kind == kind), counted.where(Job.kind == kind)
        async with self.db.session() as session:
            rows = list((await session.scalars(query.limit(limit).offset(offset))).all())
            total = int(await session.scalar(counted) or 0)
        return rows, total

    async def cancel(self, job_id: str, actor: str) -> Job:
        """Cancel a queued job (it will not run) or a running one (its worker ends it at its
        next heartbeat); ``JobNotFoundError``, or ``JobEndedError`` for a job already ended."""
        job = await cancel_job(self.db, job_id, f"cancelled by {actor}")
        log.warning("job %s (%s) cancelled by %s", job.id, job.kind, actor)
        return job

    async def counts(self) -> dict[str, int]:
        """How many jobs are queued and running."""
        query = select(Job.status, func.count()).group_by(Job.status)
        async with self.db.session() as session:
            found = {status: int(n) for status, n in (await session.execute(query)).all()}
        return {"queued": found.get("queued", 0), "running": found.get("running", 0)}

    async def describe(
        self, jobs: Sequence[Job], live: Callable[[str], float | None] | None = None
    ) -> builtins.list[dict[str, Any]]:
        """The jobs as JSON, a queued one saying so when no worker is alive to run it;
        ``live`` gives the progress of the jobs running in this process."""
        waiting = None
        if any(job.status == "queued" for job in jobs) and not await self.registry.count_alive():
            waiting = NO_WORKER
        return [
            job_dict(
                job,
                waiting if job.status == "queued" else None,
                live(job.id) if live is not None and job.status == "running" else None,
            )
            for job in jobs
        ]

    async def snapshot(self, here: WorkerJobs | None = None) -> JobsSnapshot:
        """Queued and running jobs and each live worker's counts, for ``/metrics``; ``here``,
        the counts of this process's worker as they are now (its row has them as of its last
        beat)."""
        counts = await self.counts()
        workers = [
            WorkerJobs(w.id, w.kind, w.running, w.finished, w.failed)
            for w in await self.registry.alive()
            if here is None or w.id != here.worker
        ]
        if here is not None:
            workers.append(here)
        return JobsSnapshot(counts["queued"], counts["running"], tuple(workers))

    # -- what workers do -----------------------------------------------------------------------

    async def claim(self, owner: str) -> Claim | None:
        """Take the oldest queued job for ``owner``; None when none is queued."""
        oldest = (
            select(Job.id).where(Job.status == "queued").order_by(Job.created_at, Job.id).limit(1)
        )
        if not self.db.is_sqlite:  # another worker's claim in flight holds its row: skip it
            oldest = oldest.with_for_update(skip_locked=True)
        now = journal_now(self.db)
        async with self.db.session() as session:
            taken = (
                await session.execute(
                    update(Job)
                    .where(Job.id == oldest.scalar_subquery(), Job.status == "queued")
                    .values(
                        status="running",
                        owner=owner,
                        started_at=now,
                        heartbeat_at=now,
                        attempts=Job.attempts + 1,
                        progress=0.0,
                    )
                    .returning(Job.id, Job.attempts)
                    .execution_options(synchronize_session=False)
                )
            ).first()
            if taken is None:
                return None
            job = await session.get(Job, taken.id, populate_existing=True)
        assert job is not None  # claimed in this very transaction
        return Claim(job, owner, int(taken.attempts))

    async def beat(self, claim: Claim, progress: float) -> bool:
        """Record the claimed job's heartbeat and progress; False once the job is no longer
        this claim (cancelled, or given to another worker after a stale heartbeat)."""
        async with self.db.session() as session:
            beat = await session.execute(
                self._update(claim).values(heartbeat_at=journal_now(self.db), progress=progress)
            )
        return bool(beat.rowcount == 1)  # type: ignore[attr-defined]

    async def finish(self, claim: Claim, values: dict[str, Any]) -> bool:
        """Record how the claimed job ended (``values``: status, error, result, run id);
        False, and nothing written, when the job is no longer this claim."""
        async with self.db.session() as session:
            done = await session.execute(
                self._update(claim).values(finished_at=datetime.now(UTC), **values)
            )
        return bool(done.rowcount == 1)  # type: ignore[attr-defined]

    async def hand_back(self, claim: Claim) -> bool:
        """Queue the claimed job again, as it was before this claim (its worker stops before
        it could finish: that does not count as an attempt); False if it was no longer this
        claim."""
        async with self.db.session() as session:
            back = await session.execute(
                self._update(claim).values(**_requeued(), attempts=Job.attempts - 1)
            )
            await self._notify_postgres(session)
        if back.rowcount != 1:  # type: ignore[attr-defined]
            return False
        await self._announce([claim.id])
        return True

    async def recover(self, running_here: Collection[str] = ()) -> Recovered:
        """Deal with the running jobs whose heartbeat is stale (their worker died), except
        ``running_here`` (this process still runs them; the journal may have failed for a
        while): queue each again while it has attempts left, else fail it."""
        stale = journal_now(self.db) - timedelta(seconds=self.policy.stale_s)
        lost = (
            (Job.status == "running")
            & Job.id.not_in(list(running_here))
            & (Job.heartbeat_at.is_(None) | (Job.heartbeat_at < stale))
        )
        limit = self.policy.max_attempts
        async with self.db.session() as session:
            requeued = (
                await session.scalars(
                    update(Job)
                    .where(lost, Job.attempts < limit)
                    .values(**_requeued())
                    .returning(Job.id)
                    .execution_options(synchronize_session=False)
                )
            ).all()
            if requeued:
                await self._notify_postgres(session)
            failed = await self._give_up(session, lost & (Job.attempts >= limit))
        if requeued:
            log.warning("job(s) %s queued again: their worker stopped", ", ".join(requeued))
            await self._announce(list(requeued))
        return Recovered(tuple(requeued), tuple(failed))

    async def _give_up(self, session: AsyncSession, lost: Any) -> builtins.list[str]:
        """Fail the lost jobs that have used their attempts, each saying how many."""
        found = (await session.execute(select(Job.id, Job.attempts).where(lost))).all()
        now = datetime.now(UTC)
        for job_id, attempts in found:
            await session.execute(
                update(Job)
                .where(Job.id == job_id, lost)
                .values(
                    status="failed",
                    error=interrupted_error(attempts, self.policy.max_attempts),
                    finished_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            log.error("job %s failed: interrupted %d time(s)", job_id, attempts)
        return [job_id for job_id, _ in found]

    def _update(self, claim: Claim) -> Any:
        return (
            update(Job)
            .where(
                Job.id == claim.id,
                Job.owner == claim.owner,
                Job.status == "running",
                Job.attempts == claim.attempts,
            )
            .execution_options(synchronize_session=False)
        )

    async def _notify_postgres(self, session: AsyncSession) -> None:
        """Wake the workers listening on PostgreSQL once this transaction commits."""
        if not self.db.is_sqlite:
            await session.execute(
                text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL}
            )

    async def _announce(self, job_ids: Sequence[str]) -> None:
        """Wake the workers of this process, and over Redis those of the others."""
        self.doorbell.set()
        if self.bus is not None:
            await self.bus.publish(JOBS_CHANNEL, {"ids": job_ids})


def _requeued() -> dict[str, Any]:
    """The values that put a job back in the queue, as it was before it was claimed."""
    return {
        "status": "queued",
        "owner": None,
        "started_at": None,
        "heartbeat_at": None,
        "progress": 0.0,
        "error": None,
    }
