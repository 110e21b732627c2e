"""`ffe worker` as processes of their own, on one SQLite journal (WAL) and on PostgreSQL with
Redis: every job runs exactly once; a worker SIGKILLed mid-job leaves its job to another
worker (attempts 2), or failed when jobs.max_attempts is 1; SIGTERM drains; `ffe serve` alone
leaves a job queued saying no worker is running, and a worker started later runs it; a
submitted job is picked up well under a second after submission when Redis or PostgreSQL can
wake the worker, though it polls only every 30 s.

The workers run stand-in work (tests/support/jobwork.py) through tests/support/standin_ffe.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from tests.support.server import free_port
from tests.support.wait import wait_for

from ffe import bootstrap
from ffe.config import load_settings
from ffe.service.jobs.queue import JobQueue
from ffe.service.jobs.stop import NO_WORKER
from ffe.store.database import Database
from ffe.store.models import Job

# Workers, their job processes and servers of their own: one at a time, after the other tests.
pytestmark = [pytest.mark.slow, pytest.mark.serial]

STANDIN = Path(__file__).resolve().parents[1] / "support" / "standin_ffe.py"
FAST = {  # a dead worker is noticed within about two seconds
    "FFE__JOBS__HEARTBEAT_S": "0.5",
    "FFE__JOBS__STALE_S": "2",
    "FFE_TEST_WORK": "backtest=mark,sweep=slow_first,forecast_bench=instant",
}


@dataclass
class Setup:
    """Where the journal is, and the environment every process of a test shares."""

    env: dict[str, str] = field(default_factory=dict)

    def queue_call(self, call: Any) -> Any:
        """``call(queue)`` on this journal, from the test (another process, as the API is)."""

        async def run() -> Any:
            settings = load_settings()
            bus = None
            kv = None
            if settings.redis.url is not None:
                from ffe.kv import make_backends

                kv = make_backends(settings.redis.url.get_secret_value())
                bus = kv.bus
            db = Database(settings.database_url())
            try:
                return await call(JobQueue(db, bootstrap.queue_policy(settings), bus))
            finally:
                await db.dispose()
                if kv is not None:
                    await kv.close()

        with _environment(self.env):
            return asyncio.run(run())

    def submit(self, kind: str, payload: dict[str, Any]) -> str:
        job: Job = self.queue_call(lambda queue: queue.submit(kind, payload))
        return job.id

    def job(self, job_id: str) -> Job:
        found: Job = self.queue_call(lambda queue: queue.get(job_id))
        return found

    def alive(self) -> int:
        found: int = self.queue_call(lambda queue: queue.registry.count_alive())
        return found


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(params=["sqlite", "postgresql+redis"])
def setup(request: pytest.FixtureRequest) -> Setup:
    """The same tests on one SQLite file (no Redis: the workers poll) and on a scratch
    PostgreSQL database with Redis."""
    if request.param == "sqlite":
        return _journal(FAST)
    redis_url = request.getfixturevalue("redis_url")
    return _journal({**FAST, **_postgres(request), "FFE__REDIS__URL": redis_url})


def _postgres(request: pytest.FixtureRequest) -> dict[str, str]:
    """A scratch PostgreSQL database for the journal."""
    return {"FFE__DATABASE__URL": request.getfixturevalue("new_postgres_database")()}


def _journal(env: dict[str, str]) -> Setup:
    """A setup whose journal is migrated before any process uses it (several migrating at
    once would trip over each other)."""
    from ffe.store import migrate

    setup = Setup(dict(env))

    async def upgrade() -> None:
        async with Database(load_settings().database_url()) as db:
            await migrate.upgrade(db)

    with _environment(setup.env):
        asyncio.run(upgrade())
    return setup


@contextlib.contextmanager
def worker(setup: Setup, *args: str, env: dict[str, str] | None = None) -> Iterator[Any]:
    """An `ffe worker` process with stand-in work; on leaving, SIGTERM (if still running):
    it must exit 0 within 30 s (or have been SIGKILLed by the test), without a traceback."""
    log = Path(os.environ["FFE__DATA__DIR"]) / f"worker-{free_port()}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, str(STANDIN), "worker", *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **setup.env, **(env or {})},
        )
    process.log = log  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        stopped = _stop(process)
    assert stopped, f"worker did not stop:\n{log.read_text()}"
    assert process.returncode in (0, -signal.SIGKILL), log.read_text()
    assert "Traceback" not in log.read_text(), log.read_text()


def _stop(process: subprocess.Popen[bytes]) -> bool:
    """SIGTERM, then SIGKILL after 30 s; whether it stopped before that."""
    if process.poll() is not None:
        return True
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False
    return True


def _until_alive(setup: Setup, count: int, processes: list[Any]) -> None:
    def alive() -> bool:
        for process in processes:
            assert process.poll() is None, process.log.read_text()
        return setup.alive() >= count

    wait_for(alive, timeout=60, every=0.2)


def _ended(setup: Setup, job_id: str, timeout: float = 60) -> Job:
    return wait_for(lambda: (job := setup.job(job_id)).finished_at and job, timeout=timeout)


def _pid_of(owner: str | None) -> int:
    assert owner is not None
    return int(owner.split(":")[-2])


def test_two_workers_when_jobs_submitted_then_each_runs_exactly_once(setup, tmp_path):
    tally = tmp_path / "tally"
    with worker(setup, "--concurrency", "2") as first, worker(setup, "--concurrency", "2") as other:
        _until_alive(setup, 2, [first, other])
        ids = [
            setup.submit("backtest", {"tally": str(tally), "mark": n, "sleep_s": 0.2})
            for n in range(16)
        ]
        jobs = [_ended(setup, job_id) for job_id in ids]

    marks = [line.split()[0] for line in tally.read_text().splitlines()]
    assert sorted(marks, key=int) == [str(n) for n in range(16)]  # each once, none twice
    assert {(job.status, job.attempts) for job in jobs} == {("finished", 1)}
    assert {_pid_of(job.owner) for job in jobs} <= {first.pid, other.pid}


def test_worker_killed_mid_job_then_another_worker_runs_it_again(setup, tmp_path):
    marker = tmp_path / "marker"
    with worker(setup) as doomed:
        _until_alive(setup, 1, [doomed])
        job_id = setup.submit("sweep", {"marker": str(marker)})
        wait_for(lambda: setup.job(job_id).progress >= 0.5 or None, timeout=30)
        job_processes = psutil.Process(doomed.pid).children(recursive=True)
        with worker(setup) as survivor:
            _until_alive(setup, 2, [doomed, survivor])

            doomed.kill()  # SIGKILL: no shutdown code runs
            done = _ended(setup, job_id, timeout=30)

    assert (done.status, done.attempts, done.result) == ("finished", 2, {"first": False})
    assert _pid_of(done.owner) == survivor.pid
    _, left = psutil.wait_procs(job_processes, timeout=5)
    assert left == []  # the killed worker's job process ended with it


def test_worker_killed_mid_job_when_max_attempts_1_then_failed_saying_so(setup, tmp_path):
    marker = tmp_path / "marker"
    once = {"FFE__JOBS__MAX_ATTEMPTS": "1"}
    with worker(setup, env=once) as doomed, worker(setup, env=once) as survivor:
        _until_alive(setup, 2, [doomed, survivor])
        job_id = setup.submit("sweep", {"marker": str(marker)})
        running = wait_for(lambda: (job := setup.job(job_id)).progress >= 0.5 and job)
        victim = doomed if _pid_of(running.owner) == doomed.pid else survivor

        victim.kill()
        done = _ended(setup, job_id, timeout=30)

    assert (done.status, done.attempts) == ("failed", 1)
    assert done.error is not None
    assert done.error.startswith("interrupted: the process running it stopped once")


def test_sigterm_when_job_ends_within_drain_then_it_finishes_and_worker_exits_0(tmp_path):
    setup, tally = _journal(FAST), tmp_path / "tally"
    with worker(setup) as draining:
        _until_alive(setup, 1, [draining])
        job_id = setup.submit("backtest", {"tally": str(tally), "mark": 1, "sleep_s": 2})
        wait_for(lambda: setup.job(job_id).status == "running", timeout=30)

        draining.send_signal(signal.SIGTERM)
        draining.wait(30)

    assert draining.returncode == 0
    assert (setup.job(job_id).status, tally.read_text().split()[0]) == ("finished", "1")
    assert setup.alive() == 0  # it marked itself stopped


def test_sigterm_when_job_outlasts_drain_then_handed_back_unspent_and_processes_gone(tmp_path):
    setup = _journal({**FAST, "FFE__JOBS__DRAIN_S": "0.5"})
    with worker(setup) as draining:
        _until_alive(setup, 1, [draining])
        job_id = setup.submit("sweep", {"marker": str(tmp_path / "marker")})
        wait_for(lambda: setup.job(job_id).progress >= 0.5 or None, timeout=30)
        job_processes = psutil.Process(draining.pid).children(recursive=True)
        started = time.monotonic()

        draining.send_signal(signal.SIGTERM)
        draining.wait(30)
        took = time.monotonic() - started

    back = setup.job(job_id)
    assert draining.returncode == 0
    assert took < 10, f"the drain took {took:.1f} s"
    assert (back.status, back.attempts, back.owner, back.finished_at) == ("queued", 0, None, None)
    _, left = psutil.wait_procs(job_processes, timeout=5)
    assert left == []


def test_serve_alone_leaves_job_queued_saying_so_until_a_worker_starts(tmp_path):
    from tests.support.server import ffe_server
    from typer.testing import CliRunner

    from ffe.cli.app import app

    setup = _journal(FAST)
    made = CliRunner().invoke(app, ["keys", "create", "submitter", "--scope", "trade"])
    assert made.exit_code == 0, made.output
    headers = {"Authorization": f"Bearer {made.stdout.strip()}"}
    body = {"strategy": "sma_cross", "symbols": ["SP500"]}
    with ffe_server("serve", env={"FFE__API__ANALYSIS_SYMBOLS": "[]", **FAST}) as (url, _):
        submitted = httpx.post(f"{url}/api/v1/backtests", json=body, headers=headers)
        assert submitted.status_code == 202, submitted.text
        job = f"{url}/api/v1/jobs/{submitted.json()['id']}"
        time.sleep(1.0)  # long enough for an API that ran jobs to have started this one
        waiting = httpx.get(job, headers=headers).json()

        with worker(setup, env={"FFE_TEST_WORK": "backtest=instant"}):
            done = wait_for(
                lambda: (found := httpx.get(job, headers=headers).json())["finished_at"] and found
            )
            metrics = wait_for(lambda: FINISHED_ONE.search(text := _metrics(url, headers)) and text)

    assert (waiting["status"], waiting["waiting"]) == ("queued", NO_WORKER)
    assert (done["status"], done["waiting"], done["result"]) == (
        "finished",
        None,
        {"instant": True},
    )
    assert "ffe_workers_alive 1.0" in metrics
    assert "ffe_job_queue_depth 0.0" in metrics


FINISHED_ONE = re.compile(r'ffe_worker_jobs\{kind="worker",state="finished",worker="[^"]+"\} 1\.0')


def _metrics(url: str, headers: dict[str, str]) -> str:
    return httpx.get(f"{url}/metrics", headers=headers).text


@pytest.mark.parametrize("carrier", ["redis", "postgresql"])
def test_submit_when_worker_idle_then_picked_up_well_under_a_second(carrier, request, tmp_path):
    env = {**FAST, "FFE__JOBS__POLL_S": "30"}  # only a wake-up explains a prompt pick-up
    if carrier == "redis":
        env["FFE__REDIS__URL"] = request.getfixturevalue("redis_url")
    else:
        env.update(_postgres(request))
    setup, port = _journal(env), free_port()
    with worker(setup, "--health-port", str(port)) as idle:
        _until_alive(setup, 1, [idle])
        wait_for(lambda: _listening(port, carrier), timeout=30)
        took = [_pick_up(setup, {"n": n}) for n in range(3)]
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        [registered] = setup.queue_call(lambda queue: queue.registry.alive())

    assert max(took) < 1.0, took
    own = f'ffe_worker_jobs{{kind="worker",state="finished",worker="{registered.id}"}} 3.0'
    assert own in metrics  # the worker's own counts, as of the scrape
    assert "ffe_job_queue_depth 0.0" in metrics


def _pick_up(setup: Setup, payload: dict[str, Any]) -> float:
    """Seconds from a job's submission (committed) until the idle worker has claimed it; then
    wait for it to end, so that the worker is idle again for the next."""
    job_id = setup.submit("forecast_bench", payload)
    started = time.monotonic()
    wait_for(lambda: setup.job(job_id).status != "queued", timeout=30, every=0.02)
    took = time.monotonic() - started
    _ended(setup, job_id, timeout=30)
    return took


def _listening(port: int, carrier: str) -> bool:
    with contextlib.suppress(httpx.TransportError):
        ready = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).json()
        wakeup = ready["checks"]["wakeup"]
        return bool(wakeup["ok"]) and carrier in wakeup["detail"]
    return False
