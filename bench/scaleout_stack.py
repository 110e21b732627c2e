"""The processes ``bench_scaleout`` measures: an ffe "stack" (one journal, ``ffe serve``, and
an ``ffe worker`` or none) on loopback, its API client, its Redis database and scratch
PostgreSQL database, and the job processes it starts, found and ended by process group.

Every stack gets a data directory of its own, so its journal (and with it its job queue) is
its own: a job submitted to one stack is never claimed by another stack's worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.bench_api import PAPER_RUN, Server, _env, _ffe
from bench.bench_journal import scratch_postgres

JOB_MODULE = "ffe.service.jobs.process"  # what a job's process runs (`python -m ...`)
POLL_S = 0.05  # between looks at a job's state; submit-to-start is read from the journal
REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class StackSpec:
    """How to run one stack: the journal, Redis or none, API processes, where jobs run."""

    name: str
    database_url: str | None = None  # None: SQLite in the stack's data directory
    redis_url: str | None = None
    api_workers: int = 1
    jobs_in_api: bool = False  # `ffe serve --jobs`: the API's processes run the jobs
    worker: bool = True  # a separate `ffe worker`
    paper_run: bool = False  # seed a journaled paper run, so the portfolio has positions
    settings: dict[str, str] = field(default_factory=dict)  # more FFE__ variables


@dataclass
class Stack:
    """A running stack: its API (and worker) processes and a client with a trade-scoped key."""

    spec: StackSpec
    api: Server
    worker: Server | None
    key: str
    client: httpx.Client

    @property
    def servers(self) -> list[Server]:
        return [self.api] if self.worker is None else [self.api, self.worker]

    def pids(self) -> list[int]:
        return [s.process.pid for s in self.servers if s.process is not None]

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = self.client.post(path, json=body)
        if answer.status_code >= 300:
            raise RuntimeError(
                f"POST {path} on {self.spec.name}: {answer.status_code}: {answer.text}"
            )
        found: dict[str, Any] = answer.json()
        return found

    def job(self, job_id: str) -> dict[str, Any]:
        answer = self.client.get(f"/api/v1/jobs/{job_id}")
        answer.raise_for_status()
        found: dict[str, Any] = answer.json()
        return found

    def cancel(self, job_id: str) -> None:
        """Cancel a job; one that has already ended (409) is left as it is."""
        answer = self.client.post(f"/api/v1/jobs/{job_id}/cancel")
        if answer.status_code not in (200, 409):
            answer.raise_for_status()

    def wait_job(self, job_id: str, done: Any, timeout: float, what: str) -> dict[str, Any]:
        """Poll the job until ``done(job)`` is true; RuntimeError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if done(job):
                return job
            if job["status"] in ("failed", "cancelled") or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.spec.name}: job {job_id} is not {what} ({timeout:g} s): "
                    f"{job['status']}, {job.get('error') or job.get('waiting')}"
                )
            time.sleep(POLL_S)


def stack_env(folder: Path, spec: StackSpec) -> dict[str, str]:
    """bench_api's environment (fresh data directory, no config files, no background
    analysis, a rate limit that refuses nothing) plus this stack's journal, Redis and
    settings. A worker stops at once when told (no drain): the bench cancels its jobs."""
    env = _env(folder)
    env["FFE__JOBS__DRAIN_S"] = "0"
    if spec.database_url is not None:
        env["FFE__DATABASE__URL"] = spec.database_url
    if spec.redis_url is not None:
        env["FFE__REDIS__URL"] = spec.redis_url
    env.update(spec.settings)
    return env


def open_stack(stack: ExitStack, folder: Path, spec: StackSpec) -> Stack:
    """Migrate and seed the stack's journal, start its processes (stopped when ``stack``
    closes) and wait until each answers."""
    folder.mkdir(parents=True)
    env = stack_env(folder, spec)
    _ffe(env, "db", "upgrade")  # PostgreSQL is never migrated on first use
    key = _ffe(env, "keys", "create", "bench", "--scope", "read", "--scope", "trade")
    key = key.strip().splitlines()[-1]
    if spec.paper_run:
        _ffe(env, *PAPER_RUN.split())
    serve = [sys.executable, "-m", "ffe", "serve", "--host", "127.0.0.1"]
    serve += ["--workers", str(spec.api_workers)] + (["--jobs"] if spec.jobs_in_api else [])
    api = stack.enter_context(
        Server(f"{spec.name} API", serve, env, folder / "api.log", "/health/live")
    )
    worker = None
    if spec.worker:
        command = [sys.executable, "-m", "ffe", "worker"]
        worker = stack.enter_context(
            Server(
                f"{spec.name} worker",
                command,
                env,
                folder / "worker.log",
                "/health/ready",
                port_flag="--health-port",
            )
        )
    api.wait_ready()
    if worker is not None:
        worker.wait_ready()
    client = stack.enter_context(
        httpx.Client(
            base_url=api.url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=REQUEST_TIMEOUT_S,
        )
    )
    return Stack(spec, api, worker, key, client)


def journal_time(value: str) -> float:
    """A journal timestamp (ISO 8601, UTC when it names no zone) as seconds since the epoch."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


# --- job processes --------------------------------------------------------------------------


class JobProcesses:
    """Finds the job processes below a stack's processes, and what their process groups (the
    job process and the pool it starts) are doing; on exit kills any group still alive, so
    nothing the bench started outlives it, whatever stopped it."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def __enter__(self) -> JobProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        for group in self.seen:
            if self.members({group}):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)

    def groups(self, pids: list[int]) -> set[int]:
        """The process groups of the job processes below ``pids`` (each leads its own)."""
        found = set()
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(pid).children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        if JOB_MODULE in " ".join(child.cmdline()):
                            found.add(child.pid)
        self.seen |= found
        return found

    @staticmethod
    def members(groups: set[int]) -> list[psutil.Process]:
        """The processes still alive in ``groups``."""
        alive = []
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if process.status() != psutil.STATUS_ZOMBIE and os.getpgid(process.pid) in groups:
                    alive.append(process)
        return alive

    def cpu_s(self, groups: set[int]) -> float:
        """CPU seconds (user and system) the live members of ``groups`` have used so far."""
        total = 0.0
        for process in self.members(groups):
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    @staticmethod
    def scheduling(pid: int) -> dict[str, Any]:
        """A process's niceness and, on Linux with autogroups, its autogroup: the kernel
        shares the CPU between autogroups (one per session) first, and niceness counts only
        within one (sched(7))."""
        found: dict[str, Any] = {"nice": None, "autogroup": None}
        with contextlib.suppress(psutil.Error):
            found["nice"] = psutil.Process(pid).nice()
        with contextlib.suppress(OSError):
            found["autogroup"] = Path(f"/proc/{pid}/autogroup").read_text().strip()
        return found

    def wait_gone(self, groups: set[int], timeout: float) -> bool:
        """Wait until no process of ``groups`` is alive; False if some still are."""
        deadline = time.monotonic() + timeout
        while self.members(groups):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True


# --- Redis and PostgreSQL -------------------------------------------------------------------


def redis_url(base: str, db: int) -> str:
    return f"{base.rstrip('/')}/{db}"


@contextlib.contextmanager
def redis_databases(base: str, first: int, count: int) -> Iterator[list[str]]:
    """``count`` Redis databases from number ``first`` on, which must be empty (they are the
    bench's own while it runs). On leaving, the keys the stacks left there (rate-limit
    counters, caches; most expire by themselves) are deleted one by one, never with FLUSHDB."""
    import redis

    urls = [redis_url(base, db) for db in range(first, first + count)]
    for url in urls:
        with redis.Redis.from_url(url, socket_timeout=5) as client:
            size = client.dbsize()
        if size:
            raise RuntimeError(
                f"Redis database {url.rsplit('/', 1)[1]} holds {size} keys: another program "
                f"uses it; choose free ones with --redis-db (needs {count} in a row)"
            )
    try:
        yield urls
    finally:
        for url in urls:
            with redis.Redis.from_url(url, socket_timeout=5) as client:
                leftover = list(client.scan_iter(count=500))
                if leftover:
                    client.delete(*leftover)


@contextlib.contextmanager
def postgres_database(url: str) -> Iterator[str]:
    """A scratch ``ffe_bench_*`` database on the server ``url`` points at (bench_journal's),
    dropped on leaving, with whatever connections are still open to it."""
    with asyncio.Runner() as runner:
        scratch = scratch_postgres(url)
        name = runner.run(scratch.__aenter__())
        try:
            yield name
        finally:
            runner.run(scratch.__aexit__(None, None, None))
