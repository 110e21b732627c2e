"""Background jobs: backtests, parameter sweeps and forecast benchmarks submitted through the API,
run one at a time (``api.max_jobs``), with progress, in the journal's ``jobs`` table.

A job is claimed by an atomic ``queued -> running`` update, so with several workers sharing a
database each job runs once. The process running a job writes a heartbeat (and the progress) every
few seconds; a job whose heartbeat is stale is marked failed by any worker but the one running it (a
journal outage makes a live job's heartbeat stale too), and queued jobs whose worker went away are
picked up by another.

What each kind of job does is in ``jobwork``. Each job's work runs in a child process leading a
process group of its own (``jobproc``), so that it can be ended with every process it started,
cooperative or not. A job ends early when it is cancelled (``cancel``: a queued one never runs; a
running one here is ended at once, one running in another process when that process next beats),
when it runs past the time limit of its kind (``jobs.time_limit_s``; it fails, and the error names
the setting to raise), and when the server shuts down (``stop``): then it ends ``cancelled`` with
the error "stopped: the server shut down". It is not queued again: sweeps and benchmarks do not
resume, so a restart would run it again from the start, unasked, maybe the very load the server was
stopped to end; submit it again to re-run it. Jobs still queued stay queued, and the next start (or
another worker) runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from ffe.api.jobproc import JobProcessError, RunningJob
from ffe.api.jobstop import STOPPED, JobNotFoundError, cancel_job, time_limit_error
from ffe.api.jobwork import KINDS, WORK, in_job_process
from ffe.config import Settings
from ffe.domain.errors import FfeError
from ffe.store.database import Database
from ffe.store.models import Job
from ffe.store.repositories import new_id

if TYPE_CHECKING:  # for annotations only: importing them loads redis and prometheus
    from ffe.kv import KvBackends
    from ffe.obs.metrics import Metrics

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0  # a running job's process says it is alive this often
STALE_S = 30.0  # and is taken for dead this long after it last did


def job_dict(job: Job) -> dict[str, Any]:
    """A job as JSON."""

    def iso(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "progress": job.progress,
        "error": job.error,
        "run_id": job.run_id,
        "payload": job.payload,
        "result": job.result,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
    }


class JobService:
    """Submits, runs and reports jobs."""

    def __init__(self, settings: Settings, db: Database, kv: KvBackends, metrics: Metrics) -> None:
        self.settings, self.db, self.kv, self.metrics = settings, db, kv, metrics
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.on_change: Callable[[dict[str, Any]], Any] | None = None
        self._progress: dict[str, float] = {}
        self._queued: set[str] = set()  # in this process's queue, not yet taken
        # Set on close: the watcher finishes what it is writing instead of being cancelled
        # mid-transaction (a journal connection closed under a cancelled session can hang).
        self.stopping = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None
        # The work runs here, not on the loop's default executor, so that closing can stop
        # taking work without waiting on whatever else that executor runs.
        self._executor = ThreadPoolExecutor(settings.api.max_jobs, thread_name_prefix="ffe-job")
        self._stops: dict[str, RunningJob] = {}  # jobs running here, by id
        self._running: set[asyncio.Task[None]] = set()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"

    async def submit(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Queue a job; it runs when a worker is free."""
        if kind not in KINDS:
            raise FfeError(f"unknown job kind {kind!r}: use one of {', '.join(KINDS)}")
        job = Job(id=new_id(), kind=kind, status="queued", payload=payload, progress=0.0)
        async with self.db.session() as session:
            session.add(job)
        self._queued.add(job.id)
        self.queue.put_nowait(job.id)
        await self._changed(job)
        return job_dict(job)

    async def get(self, job_id: str) -> Job:
        """One job, with live progress while it runs here."""
        async with self.db.session() as session:
            job = await session.get(Job, job_id)
        if job is None:
            raise JobNotFoundError(f"no job {job_id!r}")
        if job.id in self._progress and job.status == "running":
            job.progress = self._progress[job.id]
        return job

    async def cancel(self, job_id: str, actor: str) -> Job:
        """Cancel a queued job (it will not run) or a running one (its processes end now if
        they run here, else when their server next beats); ``JobNotFoundError`` for an
        unknown id, ``JobEndedError`` for a job that has already ended."""
        job = await cancel_job(self.db, job_id, f"cancelled by {actor}")
        log.warning("job %s (%s) cancelled by %s", job.id, job.kind, actor)
        running = self._stops.get(job_id)
        if running is not None:
            running.end("cancelled", job.error or "cancelled")
        await self._changed(job)
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

    async def counts(self) -> dict[str, int]:
        """How many jobs are queued and running."""
        query = select(Job.status, func.count()).group_by(Job.status)
        async with self.db.session() as session:
            found = {status: int(n) for status, n in (await session.execute(query)).all()}
        return {"queued": found.get("queued", 0), "running": found.get("running", 0)}

    # -- the workers --------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        """Run the job workers in the background."""
        return asyncio.create_task(self._serve(), name="ffe-jobs")

    async def close(self) -> None:
        """Take no more work and forget the progress of jobs (the workers are cancelled by the
        caller, after ``stop``)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._progress.clear()

    async def _serve(self) -> None:
        self._watcher = asyncio.create_task(self._watch())
        workers = [self._worker() for _ in range(self.settings.api.max_jobs)]
        await asyncio.gather(self._watcher, *workers)

    async def stop(self, wait_s: float = 5.0) -> None:
        """Claim no more jobs, ask the running ones to stop, and give them and the watcher
        ``wait_s`` to record how they ended (the caller cancels the rest)."""
        self.stopping.set()
        if self._stops:
            log.warning(
                "asking %d running job(s) to stop: the server is shutting down", len(self._stops)
            )
        for running in self._stops.values():
            running.end("cancelled", STOPPED)
        waiting = {*self._running, *([self._watcher] if self._watcher is not None else [])}
        if waiting:
            await asyncio.wait(waiting, timeout=wait_s)
        if self._stops:  # their work has not come back yet (one long backtest, say)
            await self._give_up(list(self._stops))

    async def _give_up(self, job_ids: Sequence[str]) -> None:
        """Record as stopped the jobs still running here, whose worker is about to go."""
        log.warning("job(s) %s did not stop in time; recorded as stopped", ", ".join(job_ids))
        try:
            async with self.db.session() as session:
                await session.execute(
                    update(Job)
                    .where(Job.id.in_(job_ids), Job.owner == self.owner, Job.status == "running")
                    .values(status="cancelled", error=STOPPED, finished_at=datetime.now(UTC))
                )
        except FfeError as exc:  # the next start's recover() marks them lost instead
            log.error("could not record the stopped jobs: %s", exc)

    async def _watch(self) -> None:
        """Every ``STALE_S``: give up jobs whose process stopped beating (it died), and pick
        up queued ones (their worker may have gone before running them)."""
        while not self.stopping.is_set():
            await self.recover()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), STALE_S)

    async def recover(self) -> int:
        """Mark lost the running jobs with a stale heartbeat, except those this process still
        runs (their heartbeat may be stale only because the journal failed for a while);
        queue the waiting ones here."""
        now = datetime.now(UTC)
        stale = now - timedelta(seconds=STALE_S)
        async with self.db.session() as session:
            lost = await session.execute(
                update(Job)
                .where(Job.status == "running", Job.id.not_in(list(self._stops)))
                .where((Job.heartbeat_at.is_(None)) | (Job.heartbeat_at < stale))
                .values(
                    status="failed",
                    error="interrupted: the process running it stopped",
                    finished_at=now,
                )
            )
            queued = (await session.scalars(select(Job.id).where(Job.status == "queued"))).all()
        for job_id in queued:
            if job_id not in self._queued:
                self._queued.add(job_id)
                self.queue.put_nowait(job_id)
        return int(lost.rowcount)  # type: ignore[attr-defined]

    async def _worker(self) -> None:
        while True:
            job_id = await self.queue.get()
            self._queued.discard(job_id)
            self.metrics.set_queue_depth(self.queue.qsize())
            running = asyncio.create_task(self._run(job_id))  # for stop() to wait on
            self._running.add(running)
            try:
                await running
            except FfeError as exc:  # the journal failed: the job stays as it was
                log.error("job %s: %s", job_id, exc)
            finally:
                self._running.discard(running)

    async def _claim(self, job_id: str) -> Job | None:
        if self.stopping.is_set():
            return None  # it stays queued, for the next start or another worker
        now = datetime.now(UTC)
        with contextlib.suppress(_UnclaimedError):
            async with self.db.session() as session:
                claimed = await session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == "queued")
                    .values(status="running", started_at=now, owner=self.owner, heartbeat_at=now)
                )
                if claimed.rowcount != 1:  # type: ignore[attr-defined]
                    return None  # another worker has it, or it was cancelled
                if self.stopping.is_set():  # stopped while claiming: roll the claim back
                    raise _UnclaimedError
                return await session.get(Job, job_id)
        return None

    async def _beat(self, job_id: str, running: RunningJob) -> None:
        """While the job runs: say so, with its progress, for the other workers to see; end
        it if it was cancelled elsewhere (the CLI, another worker). A journal that fails for a
        while does not end the job: it beats again next time (logged once per outage), and
        until then ``recover`` here leaves it alone; other workers give it up only if the
        outage outlasts ``STALE_S``."""
        failing = False
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                beating = await self._beat_once(job_id)
            except FfeError as exc:
                if not failing:
                    log.error("job %s: heartbeat not recorded, will retry: %s", job_id, exc)
                failing = True
                continue
            if failing:
                log.warning("job %s: heartbeat recorded again", job_id)
                failing = False
            if not beating:
                running.end("cancelled", "cancelled")  # the journal already says by whom
                return

    async def _beat_once(self, job_id: str) -> bool:
        """Record the job's heartbeat and progress; False if it is no longer running here."""
        async with self.db.session() as session:
            beat = await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.owner == self.owner, Job.status == "running")
                .values(heartbeat_at=datetime.now(UTC), progress=self._progress.get(job_id, 0.0))
            )
        return bool(beat.rowcount == 1)  # type: ignore[attr-defined]

    async def _run(self, job_id: str) -> None:
        job = await self._claim(job_id)
        if job is None:
            return
        running = self._stops[job_id] = RunningJob()
        if self.stopping.is_set():  # stop() came while the claim was being committed
            running.end("cancelled", STOPPED)
        await self._changed(job)
        self._progress[job_id] = 0.0
        beating = asyncio.create_task(self._beat(job_id, running))

        def report(fraction: float) -> None:
            self._progress[job_id] = max(0.0, min(1.0, fraction))

        try:
            values = await self._work(job, report, running)
        finally:
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)
            self._progress.pop(job_id, None)
            self._stops.pop(job_id, None)
        async with self.db.session() as session:
            await session.execute(  # still running: stop() may have recorded it stopped
                update(Job)
                .where(Job.id == job_id, Job.owner == self.owner, Job.status == "running")
                .values(finished_at=datetime.now(UTC), **values)
            )
        await self._changed(await self.get(job_id))

    async def _work(
        self, job: Job, report: Callable[[float], None], running: RunningJob
    ) -> dict[str, Any]:
        """Run the job's work in a job process, within its time limit; what to record of it."""
        args = (WORK[job.kind], self.settings, dict(job.payload))
        work = asyncio.get_running_loop().run_in_executor(
            self._executor, running.run, in_job_process, args, report
        )
        limit_s = float(getattr(self.settings.jobs.time_limit_s, job.kind))
        if not (await asyncio.wait({work}, timeout=limit_s))[0]:
            running.end("failed", time_limit_error(job.kind, limit_s))
        try:
            result, run_id = await work
        except Exception as exc:  # any failure of the work is the job's result, not a crash
            if running.reason is not None:  # it ended because it was told to, not of itself
                status, error = running.reason
                log.warning("job %s (%s) ended: %s", job.id, job.kind, error)
                return {"status": status, "error": error}
            log.warning("job %s (%s) failed: %s", job.id, job.kind, exc)
            error = str(exc) if isinstance(exc, JobProcessError) else f"{type(exc).__name__}: {exc}"
            return {"status": "failed", "error": error}
        return {"status": "finished", "result": result, "run_id": run_id, "progress": 1.0}

    async def _changed(self, job: Job) -> None:
        self.metrics.set_queue_depth(self.queue.qsize())
        if self.on_change is not None:
            await self.on_change(job_dict(job))


class _UnclaimedError(Exception):
    """Raised inside a claim's transaction to roll it back."""
