"""The application facade: one object the routes, the dashboard and the WebSocket share.

Built from the composition root's ``Components`` by ``Services.open`` (the app factory's
lifespan calls it), so nothing connects at import time and tests can build the app against a
database of their own. It reads no settings: ``options`` (``bootstrap.ApiOptions``) holds the
values the routes use.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request, status
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from ffe import __version__
from ffe.agent.control import AgentService
from ffe.api.auth import KeyVerifier
from ffe.api.clients import TrustedProxies
from ffe.api.fresh import FreshCache
from ffe.api.secrets import session_secret
from ffe.api.sessions import SessionChecker, SessionTokens
from ffe.api.throttle import AuthThrottle, LoginBackoff
from ffe.domain.errors import StoreError
from ffe.kv import KvBackends
from ffe.kv.events import publish_event, publisher
from ffe.obs.health import (
    DependencyScrape,
    HealthChecks,
    Probe,
    ProbeError,
    disk_probe,
    memory_probe,
    ping_probe,
)
from ffe.obs.metrics import Metrics
from ffe.service.background import watched
from ffe.service.jobs.stop import STOPPED
from ffe.service.journal_tail import JournalTail
from ffe.store.database import Database

if TYPE_CHECKING:
    from ffe.bootstrap import ApiOptions, Components
    from ffe.service.analysis import AnalysisReader
    from ffe.service.jobs.queue import JobQueue
    from ffe.service.jobs.worker import Worker
    from ffe.service.supervisor import AgentSupervisor
    from ffe.store.models import Job

log = logging.getLogger(__name__)
# A journal unreachable at start-up is checked again after 1 s, then twice as long each
# time, at most every 30 s.
JOURNAL_RETRY_S = (1.0, 30.0)


def journal_unreachable(exc: StoreError) -> bool:
    """Whether the journal's database failed to answer (down, refusing connections, a folder
    missing), which may pass, rather than answered with something wrong (a corrupt file, a
    schema this ffe cannot use, a failed migration, no rights), which will not by itself."""
    cause = exc.__cause__
    if isinstance(cause, OSError | OperationalError | InterfaceError):
        return True
    return isinstance(cause, DBAPIError) and cause.connection_invalidated


async def _open_journal(components: Components) -> tuple[Database, bool]:
    """The journal, checked and migrated, and True; or, when its database does not answer,
    its unchecked handle and False: the API still starts (readiness fails and requests that
    need the journal get 503) instead of exiting, which would only restart it in a loop."""
    try:
        return await components.open_journal(), True
    except StoreError as exc:
        if not journal_unreachable(exc):
            raise
        log.error("the journal is unreachable; starting without it and retrying: %s", exc)
        return components.database(), False


def _agent_supervisor(components: Components, kv: KvBackends, metrics: Metrics) -> AgentSupervisor:
    """The in-process agent's supervisor, wired: agents built by the composition root,
    reported on this process's event bus and in its metrics."""
    from ffe import bootstrap
    from ffe.service.agents import AgentLauncher
    from ffe.service.supervisor import AgentSupervisor

    publisher = bootstrap.agent_publisher(kv, in_process=True)
    launcher = AgentLauncher(components.agent, publisher, metrics)
    return AgentSupervisor(launcher, components.catalog(), components.api.account)


@dataclass
class Services:
    """Everything a request may need, opened once per process."""

    components: Components
    options: ApiOptions
    db: Database
    kv: KvBackends
    metrics: Metrics
    tokens: SessionTokens
    sessions: SessionChecker
    keys: KeyVerifier
    agents: AgentService
    jobs: JobQueue
    analysis: AnalysisReader
    supervisor: AgentSupervisor
    # argon2 checks: threads of their own, so health probes and other work never queue
    # behind a flood of hashes (the loop's default executor is what those use).
    hashing: ThreadPoolExecutor
    proxies: TrustedProxies  # whose X-Forwarded-For and X-Forwarded-Proto are believed
    throttle: AuthThrottle  # failed authentications per client address
    backoff: LoginBackoff  # wrong passwords per client address and user
    health: HealthChecks = field(default_factory=HealthChecks)
    worker: Worker | None = None  # runs jobs in this process: `ffe run`, jobs.in_api
    started: float = field(default_factory=time.monotonic)
    journal_checked: bool = True  # False while start-up waits for the journal to answer
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _fresh: FreshCache | None = None
    _dependencies: DependencyScrape | None = None

    @property
    def dependencies(self) -> DependencyScrape:
        """The readiness checks that ping a dependency, run again for a scrape when stale."""
        if self._dependencies is None:
            self._dependencies = DependencyScrape(self.health, self.metrics.record_readiness)
        return self._dependencies

    @property
    def answers(self) -> FreshCache:
        """Polled answers (lists, the portfolio), at most ``options.list_cache_s`` old."""
        if self._fresh is None:
            self._fresh = FreshCache(self.kv.cache)
        return self._fresh

    async def fresh(self, key: str, compute: Callable[[], Awaitable[bytes]]) -> bytes:
        """``compute()``'s answer (JSON bytes), at most ``api.list_cache_s`` old, shared
        through the cache (Redis when configured); see ``ffe.api.fresh``."""
        return await self.answers.get(key, self.options.list_cache_s, compute)

    @classmethod
    async def open(
        cls, components: Components, *, background: bool = True, worker_kind: str = "api"
    ) -> Services:
        """Open the journal (migrating SQLite on first use), Redis or its in-process stand-ins,
        the analysis (with ``precompute.in_api``) and a job worker (with ``jobs.in_api``)
        (``background``). A journal that does not answer is waited for in the background
        (``_await_journal``); one that answers with a schema this ffe cannot use stops here."""
        from ffe.service.analysis import open_analysis
        from ffe.service.jobs.queue import JobQueue

        api = components.api
        secret = session_secret(api)  # first: a production config without one stops here
        db, journal_ready = await _open_journal(components)
        metrics = Metrics()
        metrics.forget_dead_processes()  # workers that crashed before this one started
        kv = components.kv_backends(observer=lambda hit: metrics.cache_event("kv", hit))
        analysis, _ = open_analysis(components, db, kv, metrics)
        hashing = ThreadPoolExecutor(api.hash_threads, thread_name_prefix="ffe-hash")
        services = cls(
            components=components,
            options=api,
            db=db,
            kv=kv,
            metrics=metrics,
            tokens=(tokens := SessionTokens(secret, api.session_ttl_s)),
            sessions=SessionChecker(
                db, tokens, kv.cache, shared=kv.redis_url is not None
            ),  # logouts shared through kv
            keys=KeyVerifier(db, hashing=hashing),
            agents=AgentService(db),
            jobs=JobQueue(db, components.queue, kv.bus if kv.redis_url is not None else None),
            analysis=analysis,
            supervisor=_agent_supervisor(components, kv, metrics),
            hashing=hashing,
            proxies=TrustedProxies(api.trusted_proxies),
            throttle=AuthThrottle(kv.limiter, api.auth_failures_limit, api.auth_failures_window_s),
            backoff=LoginBackoff(
                kv.cache, api.login_failures_free, api.login_backoff_max_s, limiter=kv.limiter
            ),
        )
        services._add_checks()
        if background and api.run_jobs:
            services.worker = services._job_worker(worker_kind)
        if background and analysis.here is not None:  # precompute.in_api (`ffe run`)
            schedule = asyncio.create_task(analysis.here.run(), name="ffe-analysis")
            services._tasks.append(watched(schedule, "the background analysis"))
        if journal_ready:
            services._journal_ready(background)
        else:
            services.journal_checked = False
            services._tasks.append(asyncio.create_task(services._await_journal(background)))
        return services

    def _job_worker(self, kind: str) -> Worker:
        from ffe.service.jobs.wake import poll_interval
        from ffe.service.jobs.worker import Worker

        worker = Worker(
            self.components,
            self.jobs,
            kind=kind,
            concurrency=self.options.max_jobs,
            poll_s=poll_interval(self.components.worker.wake, notified=self._notified()),
        )
        worker.on_change = lambda job: self.publish("job", job)
        worker.metrics = self.metrics
        return worker

    def _notified(self) -> bool:
        from ffe.service.jobs.wake import listen_url

        return self.kv.redis_url is not None or listen_url(self.components.worker.wake) is not None

    def _journal_ready(self, background: bool) -> None:
        if not background:
            return
        self._follow_other_agents()
        if self.worker is None:
            return
        from ffe.service.jobs.runner import start_listeners

        self._tasks.append(watched(asyncio.create_task(self.worker.run()), "the job worker"))
        wake = self.components.worker.wake
        for listener in start_listeners(wake, self.jobs, self.kv).tasks:
            self._tasks.append(watched(listener, "listening for submitted jobs"))

    def _follow_other_agents(self) -> None:
        """Show agents of other processes (``ffe agent run``): their gauges from the journal
        and, without Redis (which carries their events otherwise), their journaled events."""
        events = publisher(self.kv.bus) if self.kv.redis_url is None else None
        tail = JournalTail(self.db, self.metrics, events)
        task = asyncio.create_task(tail.run(), name="ffe-journal-tail")
        self._tasks.append(watched(task, "following the agents of other processes"))

    async def _await_journal(self, background: bool) -> None:
        """Check the journal again, less and less often, until it answers; then start the
        job workers. Meanwhile requests that need it get 503 and readiness fails."""
        from ffe.store.migrate import ensure_schema

        delay = JOURNAL_RETRY_S[0]
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, JOURNAL_RETRY_S[1])
            try:
                await ensure_schema(self.db, auto_upgrade=self.components.auto_upgrade(self.db))
            except StoreError as exc:
                if journal_unreachable(exc):
                    log.warning("the journal is still unreachable (next try in %.0f s)", delay)
                else:  # it answers, with something an operator must fix
                    log.error("the journal answers but cannot be used: %s", exc)
                continue
            log.warning("the journal %s answers again: serving it", self.db)
            self.journal_checked = True
            self._journal_ready(background)
            return

    def _add_checks(self) -> None:
        checks = self.health
        checks.add("database", ping_probe(self._ping_database, "database"), dependency="database")
        if self.kv.redis_url is not None:
            # Without Redis the API still serves (no shared cache): degraded, not down.
            checks.add(
                "redis", ping_probe(self.kv.ping, "redis"), critical=False, dependency="redis"
            )
        checks.add("disk", disk_probe(self.options.data_dir))
        checks.add("memory", memory_probe(), critical=False)
        checks.add("agent", self._agent_probe(), critical=False)

    async def _ping_database(self) -> str:
        from sqlalchemy import text

        async with self.db.session() as session:
            await session.execute(text("SELECT 1"))
        if not self.journal_checked:  # it answers, but its schema is not known to be right
            raise StoreError(f"{self.db} answers; its schema is checked again shortly")
        return str(self.db)

    def _agent_probe(self) -> Probe:
        """The account's agent from the journal (``ffe.agent.health``), whichever process
        runs it; while the in-process agent waits to restart, that is the detail."""
        from ffe.agent.health import agent_probe

        probe = agent_probe(self.db, self.options.account)
        supervisor = self.supervisor

        async def agent() -> str:
            if supervisor.restarting:
                raise ProbeError(
                    f"the agent stopped on a journal failure and is restarted once the "
                    f"journal answers (restarts so far: {supervisor.restarts})"
                )
            return await probe()

        return agent

    async def close(self) -> None:
        """Stop the agent and the workers, and close Redis and the journal."""
        await self.supervisor.stop(wait_s=10.0)
        # Work that reads or writes the journal ends at its next pause, so no session is cut
        # off mid-transaction by the cancels below (a journal connection closed under a
        # cancelled session can leave a task waiting for ever).
        if self.worker is not None:  # its jobs end now, recorded as stopped by the shutdown
            await self.worker.stop(drain_s=0.0, ending=("cancelled", STOPPED), wait_s=5.0)
        await self.keys.settle()
        refreshing = self.answers.refreshing
        pending = [*self._tasks, *refreshing]
        if refreshing:
            await asyncio.wait(refreshing, timeout=5.0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.kv.close()
        self.hashing.shutdown(wait=False, cancel_futures=True)
        await self.db.dispose()
        self.metrics.mark_process_dead(os.getpid())  # several workers: this one's gauges go

    async def check_rate(self, request: Request, key: str, limit: int | None = None) -> None:
        """Count a request against ``key``'s per-minute limit; 429 with Retry-After when over."""
        limit = limit or self.options.rate_limit
        decision = await self.kv.limiter.hit(key, limit, 60.0)
        request.state.rate = decision
        if not decision.allowed:
            retry = max(1, int(decision.reset_s + 0.999))
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                f"rate limit of {limit} requests per minute reached: retry in {retry}s",
                headers={"Retry-After": str(retry)},
            )

    async def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Send an event to every live-stream subscriber, in every worker."""
        await publish_event(self.kv.bus, kind, data)

    def publish_state_soon(self, account: str, delays: tuple[float, ...] = (0.5, 2.0)) -> None:
        """Publish the account's agent state after a command, once the agent (which polls
        for commands every quarter second) has had time to carry it out."""

        async def later() -> None:
            for delay in delays:
                await asyncio.sleep(delay)
                for state in await self.agents.status(account):
                    await self.publish("agent", state.as_dict())

        task = watched(asyncio.create_task(later()), f"publishing the state of agent {account}")
        self._tasks.append(task)
        task.add_done_callback(
            lambda done: self._tasks.remove(done) if done in self._tasks else None
        )

    async def status(self) -> dict[str, Any]:
        """Version, mode, agents and jobs at a glance (what the journal says of agents and
        jobs at most ``api.list_cache_s`` old; time and uptime are this process's, now)."""

        async def read() -> bytes:
            agents = [s.as_dict() for s in await self.agents.status()]
            counts = {**await self.jobs.counts(), "workers": await self.jobs.registry.count_alive()}
            return json.dumps({"agents": agents, "jobs": counts}).encode()

        journal = json.loads(await self.fresh("status:", read))
        return {
            "version": __version__,
            "environment": self.options.environment,
            "mode": self.options.mode,
            "time": datetime.now(UTC).isoformat(),
            "uptime_s": round(time.monotonic() - self.started, 3),
            "redis": self.kv.redis_url is not None,
            **journal,
        }

    async def written(self, *what: str) -> None:
        """Say this process changed the journal's ``what`` (``jobs``, ``status``): its next
        answers of those are read afresh (``ffe.api.fresh``)."""
        for prefix in what:
            await self.answers.forget(f"{prefix}:")

    # -- jobs ----------------------------------------------------------------------------------

    async def submit_job(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Queue a job and say so on the live stream; the job as JSON."""
        answer = (await self.job_answers([await self.jobs.submit(kind, payload)]))[0]
        await self.written("jobs", "status")
        await self.publish("job", answer)
        return answer

    async def cancel_job(self, job_id: str, actor: str) -> dict[str, Any]:
        """Cancel a job (ending its processes now if they run here); the job as JSON."""
        job = await self.jobs.cancel(job_id, actor)
        if self.worker is not None:
            await self.worker.end_here(job)
        answer = (await self.job_answers([job]))[0]
        await self.written("jobs", "status")
        await self.publish("job", answer)
        return answer

    async def job_answers(self, jobs: Sequence[Job]) -> list[dict[str, Any]]:
        """Jobs as JSON: a queued one says when no worker is alive; one running here shows
        its progress as it is now, not as of its last heartbeat."""
        live = None if self.worker is None else self.worker.progress
        return await self.jobs.describe(jobs, live)

    async def refresh_job_metrics(self) -> None:
        """Read the queue and the workers from the journal for ``/metrics``."""
        here = None if self.worker is None else self.worker.jobs()
        self.metrics.set_jobs(await self.jobs.snapshot(here))
