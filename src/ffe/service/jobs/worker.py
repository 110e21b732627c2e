"""A worker: claims queued jobs and runs each in a job process of its own (``process``),
``concurrency`` at a time. ``ffe worker`` runs one as its whole purpose; ``ffe run`` and an API
told to (``ffe serve --jobs``, ``jobs.in_api``) run one beside their requests.

While it runs, a worker beats in the registry and for each of its jobs every
``jobs.heartbeat_s``, ends a job of its own that was cancelled elsewhere at the next beat, and
``recover``s the jobs of workers that died. A job runs within the time limit of its kind
(``jobs.time_limit_s``; past it, it fails saying which setting to raise).

Stopping (``stop``) first claims nothing more, then lets running jobs finish for ``drain_s``;
the jobs still running after that are ended (their whole process groups) and recorded as the
caller says: ``ffe worker`` hands them back to the queue, where another worker (or its next
start) runs them from the beginning, without using up an attempt; the API records them
cancelled, "stopped: the server shut down", as it always has (sweeps do not resume, and a
restart should not start again, unasked, the load it was stopped to end).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ffe.domain.errors import FfeError
from ffe.obs.agent_metrics import AgentMetrics
from ffe.obs.metrics import WorkerJobs
from ffe.service.jobs.process import JobProcessError, RunningJob
from ffe.service.jobs.queue import Claim, JobQueue, Recovered, job_dict
from ffe.service.jobs.registry import WorkerCounts, worker_id
from ffe.service.jobs.stop import HANDED_BACK, time_limit_error
from ffe.service.jobs.work import WORK, in_job_process
from ffe.store.models import Job

if TYPE_CHECKING:
    from ffe.bootstrap import Components

log = logging.getLogger(__name__)

HAND_BACK = ("queued", HANDED_BACK)  # how ``ffe worker`` ends the jobs its stop cuts short
LOST = "lost"  # a job no longer this worker's (cancelled elsewhere, or taken over): not recorded


@dataclass
class _Running:
    """A job this worker runs: its claim, its process and its progress."""

    claim: Claim
    job: RunningJob
    progress: float = 0.0


class Worker:
    """Runs queued jobs, ``concurrency`` at a time, as ``components.worker`` says; each job's
    work gets ``components``. ``kind`` (worker, api, run) goes in the registry."""

    def __init__(
        self,
        components: Components,
        queue: JobQueue,
        *,
        kind: str = "worker",
        concurrency: int = 1,
        poll_s: float = 0.1,
    ) -> None:
        self.components, self.queue, self.kind = components, queue, kind
        self.options = components.worker
        self.concurrency, self.poll_s = concurrency, poll_s
        self.owner = worker_id()
        self.on_change: Callable[[dict[str, Any]], Awaitable[Any]] | None = None
        # Where a finished backtest job's LLM failures are counted (ffe_llm_failures_total).
        self.metrics: AgentMetrics | None = None
        self.finished = self.failed = 0
        self.stopping = asyncio.Event()
        self._hurry = asyncio.Event()  # set to cut a drain short
        self._running: dict[str, _Running] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._free = asyncio.Event()  # set when a running job ends: a slot is free
        self._failing = False  # the journal failed the last look for jobs
        # The work waits for its process on threads of its own, so that stopping can stop
        # taking work without waiting on whatever else the loop's default executor runs.
        self._executor = ThreadPoolExecutor(concurrency, thread_name_prefix="ffe-job")

    @property
    def counts(self) -> WorkerCounts:
        """The jobs it runs now, and has finished and failed since it started."""
        return WorkerCounts(len(self._running), self.finished, self.failed)

    def jobs(self) -> WorkerJobs:
        """Its counts as ``/metrics`` exports them."""
        return WorkerJobs(self.owner, self.kind, len(self._running), self.finished, self.failed)

    def progress(self, job_id: str) -> float | None:
        """The live progress of a job running here (None if it does not run here)."""
        running = self._running.get(job_id)
        return None if running is None else running.progress

    async def run(self) -> None:
        """Register, then claim and run jobs until ``stop``; the registry's beats and the
        recovery of dead workers' jobs go on meanwhile."""
        try:
            await self.queue.registry.register(self.owner, self.kind, self.concurrency)
        except FfeError as exc:  # its upkeep registers it once the journal answers
            log.error("worker %s not registered yet: %s", self.owner, exc)
        with contextlib.suppress(FfeError):
            await self.queue.registry.forget_gone()
        log.info(
            "worker %s (%s) runs up to %d job(s) at once", self.owner, self.kind, self.concurrency
        )
        upkeep = asyncio.create_task(self._upkeep(), name="ffe-worker-upkeep")
        try:
            await self._claim_loop()
        finally:
            upkeep.cancel()
            await asyncio.gather(upkeep, return_exceptions=True)

    async def stop(
        self, drain_s: float = 0.0, ending: tuple[str, str] = HAND_BACK, wait_s: float = 5.0
    ) -> None:
        """Claim no more jobs; give the running ones ``drain_s`` to finish; end the rest and
        record them with ``ending`` (status, error), waiting ``wait_s`` for that; then mark
        this worker stopped in the registry."""
        self.stopping.set()
        self.queue.doorbell.set()  # the claim loop sees the stop now, not at its next look
        if self._tasks and drain_s > 0 and not self._hurry.is_set():
            log.warning("waiting up to %g s for %d running job(s)", drain_s, len(self._tasks))
            await _first(asyncio.wait(set(self._tasks)), self._hurry.wait(), timeout=drain_s)
        if self._running:
            log.warning(
                "ending %d running job(s) (%s): the worker is stopping",
                len(self._running),
                ending[1],
            )
        for running in list(self._running.values()):
            running.job.end(*ending)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=wait_s)
        if self._running:  # their work has not come back yet (a thread stuck in a call)
            await self._give_up(ending)
        with contextlib.suppress(FfeError):
            await self.queue.registry.stopped(self.owner, self.counts)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def recover(self) -> Recovered:
        """Queue again, or fail, the jobs of workers that died (never this one's)."""
        return await self.queue.recover(running_here=list(self._running))

    def hurry(self) -> None:
        """Cut the drain of ``stop`` short: end the running jobs now."""
        self._hurry.set()

    async def end_here(self, job: Job) -> None:
        """A job was cancelled: if it runs here, end its processes now (not at next beat)."""
        running = self._running.get(job.id)
        if running is not None:
            running.job.end("cancelled", job.error or "cancelled")

    # -- claiming ------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        doorbell = self.queue.doorbell
        while not self.stopping.is_set():
            if len(self._running) >= self.concurrency:
                self._free.clear()
                await _first(self._free.wait(), self.stopping.wait())
                continue
            doorbell.clear()  # before looking: a job submitted from now on rings it again
            claim = await self._claim()
            if claim is not None:
                self._start(claim)
                continue
            wait_s = max(self.poll_s, 1.0) if self._failing else self.poll_s
            await _first(doorbell.wait(), self.stopping.wait(), timeout=wait_s)

    async def _claim(self) -> Claim | None:
        try:
            claim = await self.queue.claim(self.owner)
        except FfeError as exc:  # the journal failed: look again later (logged once)
            if not self._failing:
                log.error("cannot look for queued jobs, will retry: %s", exc)
            self._failing = True
            return None
        if self._failing:
            log.warning("looking for queued jobs again")
            self._failing = False
        if claim is not None and self.stopping.is_set():  # stopped while claiming
            with contextlib.suppress(FfeError):
                await self.queue.hand_back(claim)
            return None
        return claim

    def _start(self, claim: Claim) -> None:
        self._running[claim.id] = _Running(claim, RunningJob())
        task = asyncio.create_task(self._run(claim), name=f"ffe-job-{claim.id[:8]}")
        self._tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._free.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("a job's task failed", exc_info=task.exception())

    # -- running one job -----------------------------------------------------------------------

    async def _run(self, claim: Claim) -> None:
        running = self._running[claim.id]
        log.warning("job %s (%s) started, attempt %d", claim.id, claim.job.kind, claim.attempts)
        ended = asyncio.Event()
        beating = asyncio.create_task(self._beat(running, ended))
        try:
            try:
                await self._changed(claim.job)
            except Exception as exc:  # telling the stream failed: the job runs all the same
                log.warning("job %s: its start was not published: %s", claim.id, exc)
            values = await self._work(running)
        finally:
            # Told, not cancelled: a heartbeat cancelled mid-write left its journal
            # connection to be reset under a cancelled task (a traceback in the log, and on
            # some drivers a session that never closes). It finishes the write and returns.
            ended.set()
            await asyncio.gather(beating, return_exceptions=True)
            self._running.pop(claim.id, None)
        try:
            await self._record(claim, values)
        except FfeError as exc:  # the journal failed: a worker's recover() deals with it
            log.error("job %s: how it ended was not recorded: %s", claim.id, exc)
            return
        with contextlib.suppress(FfeError):
            await self._changed(await self.queue.get(claim.id))

    async def _record(self, claim: Claim, values: dict[str, Any]) -> None:
        if values["status"] == LOST:
            log.warning("job %s: %s", claim.id, values["error"])
            return
        if values["status"] == "queued":
            if await self.queue.hand_back(claim):
                log.warning("job %s handed back to the queue: %s", claim.id, HANDED_BACK)
            return
        if not await self.queue.finish(claim, values):
            if values["status"] == "cancelled":  # as the journal already says
                return
            log.warning(
                "job %s: its end (%s) was not recorded: it is no longer this worker's "
                "(cancelled, or taken over after its heartbeat went stale)",
                claim.id,
                values["status"],
            )
            return
        if values["status"] == "finished":
            self.finished += 1
            self._count_llm_failures(values.get("result"))
        elif values["status"] == "failed":
            self.failed += 1

    def _count_llm_failures(self, result: Any) -> None:
        """A finished job's decisions its LLM voter failed to vote on, by reason, into
        ``/metrics`` once (the job's record, not a retry, says it finished)."""
        found = result.get("llm_failure_reasons") if isinstance(result, dict) else None
        if self.metrics is None or not isinstance(found, dict):
            return
        for reason, count in found.items():
            self.metrics.record_llm_failure(str(reason), int(count))

    async def _work(self, running: _Running) -> dict[str, Any]:
        """Run the job's work in a job process, within its time limit; what to record."""
        job = running.claim.job

        def report(fraction: float) -> None:
            running.progress = max(0.0, min(1.0, fraction))

        args = (WORK[job.kind], self.components, job.id, dict(job.payload))
        work = asyncio.get_running_loop().run_in_executor(
            self._executor, running.job.run, in_job_process, args, report, self.options.nice
        )
        limit_s = self.options.time_limit_s(job.kind)
        if not (await asyncio.wait({work}, timeout=limit_s))[0]:
            running.job.end("failed", time_limit_error(job.kind, limit_s))
        try:
            result, run_id = await work
        except Exception as exc:  # any failure of the work is the job's result, not a crash
            if running.job.reason is not None:  # it ended because it was told to
                status, error = running.job.reason
                log.warning("job %s (%s) ended: %s", job.id, job.kind, error)
                return {"status": status, "error": error}
            log.warning("job %s (%s) failed: %s", job.id, job.kind, exc)
            error = str(exc) if isinstance(exc, JobProcessError) else f"{type(exc).__name__}: {exc}"
            return {"status": "failed", "error": error}
        return {"status": "finished", "result": result, "run_id": run_id, "progress": 1.0}

    async def _beat(self, running: _Running, ended: asyncio.Event) -> None:
        """While the job runs: say so, with its progress; end it once it is no longer this
        worker's (cancelled elsewhere, or taken over). A journal that fails for a while does
        not end the job: it beats again next time (logged once per outage); other workers
        take it over only if the outage outlasts ``jobs.stale_s``."""
        failing = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), self.options.heartbeat_s)
                return  # the job's work is back: no more beats
            try:
                beating = await self.queue.beat(running.claim, running.progress)
            except FfeError as exc:
                if not failing:
                    log.error(
                        "job %s: heartbeat not recorded, will retry: %s", running.claim.id, exc
                    )
                failing = True
                continue
            if failing:
                log.warning("job %s: heartbeat recorded again", running.claim.id)
                failing = False
            if not beating:  # the journal says why: cancelled by whom, or queued again
                running.job.end(
                    LOST,
                    "no longer this worker's (cancelled elsewhere, or taken over after its "
                    "heartbeat went stale): its processes were ended and nothing recorded",
                )
                return

    # -- upkeep --------------------------------------------------------------------------------

    async def _upkeep(self) -> None:
        """Every heartbeat: say this worker is alive, and recover dead workers' jobs."""
        registry, failing = self.queue.registry, False
        while not self.stopping.is_set():
            try:
                if not await registry.beat(self.owner, self.counts):
                    await registry.register(self.owner, self.kind, self.concurrency)
                await self.recover()
            except FfeError as exc:  # logged once per outage
                if not failing:
                    log.error("worker heartbeat not recorded, will retry: %s", exc)
                failing = True
            else:
                if failing:
                    log.warning("worker heartbeat recorded again")
                failing = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), self.options.heartbeat_s)

    async def _give_up(self, ending: tuple[str, str]) -> None:
        """Record the jobs still running here as ``ending`` says, their work not back yet."""
        log.warning(
            "job(s) %s did not stop in time: recorded as %s", ", ".join(self._running), ending[0]
        )
        for running in list(self._running.values()):
            try:
                await self._record(running.claim, {"status": ending[0], "error": ending[1]})
            except FfeError as exc:  # the next start's recover() deals with them
                log.error("could not record job %s: %s", running.claim.id, exc)

    async def _changed(self, job: Job) -> None:
        if self.on_change is not None:
            await self.on_change(job_dict(job))


async def _first(*waits: Coroutine[Any, Any, Any], timeout: float | None = None) -> None:
    """Wait until the first of ``waits`` is done (or ``timeout``); cancel the others."""
    tasks = [asyncio.ensure_future(each) for each in waits]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
