"""``ffe worker`` as a process: the journal, the wake-up listeners, a ``Worker``, and the probe
server on ``--health-port``; SIGTERM or SIGINT drains it and it exits.

On the first SIGTERM (or Ctrl-C) the worker claims nothing more and gives its running jobs
``jobs.drain_s`` to finish; then it ends the rest, process groups and all, and hands them back
to the queue (see ``worker``). A second signal cuts the drain short.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ffe.bootstrap import Components, WakeOptions
from ffe.domain.errors import ConfigError
from ffe.kv import KvBackends
from ffe.obs.health import HealthChecks, ProbeError, ping_probe
from ffe.obs.metrics import Metrics
from ffe.service.jobs.queue import JobQueue
from ffe.service.jobs.wake import listen_postgres, listen_redis, listen_url, poll_interval
from ffe.service.jobs.worker import HAND_BACK, Worker
from ffe.service.probe import ProbeServer, probe_app
from ffe.store.database import Database

log = logging.getLogger(__name__)


@dataclass
class WorkerProcess:
    """What one ``ffe worker`` process holds while it runs."""

    components: Components
    db: Database
    kv: KvBackends
    queue: JobQueue
    worker: Worker
    listeners: Listeners
    metrics: Metrics = field(default_factory=Metrics)
    checks: HealthChecks = field(default_factory=HealthChecks)

    async def refresh_metrics(self) -> None:
        """Read the queue and the workers from the journal for ``/metrics``, this worker's own
        counts as they are now."""
        self.metrics.set_jobs(await self.queue.snapshot(self.worker.jobs()))


@contextlib.asynccontextmanager
async def worker_process(
    components: Components, concurrency: int | None = None
) -> AsyncIterator[WorkerProcess]:
    """Open the journal and Redis (when configured), start listening for submissions, and
    build the worker (it runs once the caller runs it); close everything on leaving."""
    options = components.worker
    db = await components.open_journal()
    kv = components.kv_backends()  # redis.key_prefix keeps deployments apart
    redis = kv.redis_url
    queue = JobQueue(db, components.queue, kv.bus if redis else None)
    listeners = start_listeners(options.wake, queue, kv)
    worker = Worker(
        components,
        queue,
        kind="worker",
        concurrency=concurrency or options.concurrency,
        poll_s=poll_interval(options.wake, notified=bool(listeners.tasks)),
    )
    process = WorkerProcess(components, db, kv, queue, worker, listeners)
    worker.metrics = process.metrics
    process.checks.add("database", ping_probe(_pinger(db), "database"), dependency="database")
    if redis is not None:  # without Redis a worker still runs jobs: degraded, not down
        process.checks.add(
            "redis", ping_probe(kv.ping, "redis"), critical=False, dependency="redis"
        )
    process.checks.add("wakeup", listeners.probe, critical=False)
    try:
        yield process
    finally:
        for task in listeners.tasks:
            task.cancel()
        await asyncio.gather(*listeners.tasks, return_exceptions=True)
        await kv.close()
        await db.dispose()


@dataclass
class Listeners:
    """The tasks listening for submissions, and whether each listens now."""

    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    listening: dict[str, asyncio.Event] = field(default_factory=dict)

    async def probe(self) -> str:
        """For ``/health/ready``: which carriers listen; ``ProbeError`` naming those that do
        not (the worker still finds jobs by polling meanwhile)."""
        deaf = [name for name, event in self.listening.items() if not event.is_set()]
        if deaf:
            raise ProbeError(f"not listening on {', '.join(deaf)}: polling for jobs meanwhile")
        return f"woken by {', '.join(self.listening) or 'polling only'}"


def start_listeners(options: WakeOptions, queue: JobQueue, kv: KvBackends) -> Listeners:
    """Listen for submissions on Redis and PostgreSQL, where either can carry them."""
    found = Listeners()
    if kv.redis_url is not None:
        found.listening["redis"] = ready = asyncio.Event()
        wake = listen_redis(kv.bus, queue.doorbell, ready)
        found.tasks.append(asyncio.create_task(wake, name="ffe-wake-redis"))
    url = listen_url(options)
    if url is not None:
        found.listening["postgresql"] = ready = asyncio.Event()
        wake = listen_postgres(url, queue.doorbell, ready)
        found.tasks.append(asyncio.create_task(wake, name="ffe-wake-postgresql"))
    return found


async def serve_worker(
    components: Components,
    *,
    concurrency: int | None = None,
    health_port: int | None = None,
    on_ready: Callable[[WorkerProcess, ProbeServer | None], Any] | None = None,
) -> None:
    """Run ``ffe worker`` until SIGTERM or SIGINT, then drain and return."""
    options = components.worker
    async with worker_process(components, concurrency) as process:
        port = options.health_port if health_port is None else health_port
        probes = None
        if port:
            app = probe_app(process.checks, process.metrics, process.refresh_metrics)
            probes = ProbeServer(app, options.health_host, port)
            try:
                await probes.start()
            except OSError as exc:  # says which address, and to pick another port
                raise ConfigError(str(exc)) from exc
        try:
            stop = _on_signals(process.worker)
            running = asyncio.create_task(process.worker.run(), name="ffe-worker")
            if on_ready is not None:
                on_ready(process, probes)
            await _first_done(running, stop.wait())
            await process.worker.stop(options.drain_s, HAND_BACK)
            await asyncio.gather(running, return_exceptions=True)
        finally:
            if probes is not None:
                await probes.stop()


def _on_signals(worker: Worker) -> asyncio.Event:
    """An event set by the first SIGTERM or SIGINT; the next one hurries the worker's drain."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def signalled(signum: int) -> None:
        if stop.is_set():
            log.warning("%s again: ending the running jobs now", signal.Signals(signum).name)
            worker.hurry()
            return
        log.warning(
            "%s: claiming no more jobs; running ones have %g s to finish (again: end them now)",
            signal.Signals(signum).name,
            worker.options.drain_s,
        )
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, signalled, signum)
    return stop


async def _first_done(task: asyncio.Task[None], other: Awaitable[Any]) -> None:
    waiting = asyncio.ensure_future(other)
    try:
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    if task.done():
        task.result()  # the worker ended by itself: raise why


def _pinger(db: Database) -> Callable[[], Awaitable[str]]:
    async def ping() -> str:
        await db.ping()
        return str(db)

    return ping
