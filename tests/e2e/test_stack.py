"""Issue 15's acceptance test: the whole stack as an operator runs it, through the API.

Apart: on a scratch PostgreSQL database and Redis (keys under a prefix of this test's own),
`ffe serve --workers 2`, two `ffe worker` processes (one with --concurrency 2), `ffe
precompute` and `ffe agent run` as processes of their own. Together: `ffe run` on embedded
defaults (SQLite, no Redis). The checks that make sense in both run on both:

- every job submitted through the API runs once: one result each, one run per backtest, and
  the workers' finished counts in the API's /metrics add up to the finished jobs;
- the separate (or embedded) agent's decisions reach the API's WebSocket stream, what the
  dashboard's Agent page subscribes to, and a pause sent through the API reaches it;
- the analysis endpoint answers with what the pre-compute stored in the shared cache;
- /metrics shows the queue depth and each worker's counts; every probe port answers.

Apart only: a job submitted while no worker runs waits, saying so, until a worker starts;
a worker SIGKILLed mid-job (a 600-point sweep) leaves that job to the other worker, which
runs it again (attempts 2) and records its one result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from tests.conftest import REDIS_URL, postgres_database, require_redis
from tests.support.server import ffe_process, wait_live
from tests.support.stream import live_stream, next_event, receive
from tests.support.wait import wait_for
from typer.testing import CliRunner

from ffe.cli.app import app
from ffe.service.jobs.stop import NO_WORKER

# Many processes of their own on loopback: one at a time, after the other tests.
pytestmark = [pytest.mark.slow, pytest.mark.serial]

SYMBOL = "SP500"
# About 4,000 bars at 25 a second: the agent outlives the checks that need it trading.
AGENT = ["agent", "run", "--symbol", SYMBOL, "--strategy", "sma_cross", "-p", "fast=5"]
AGENT += ["-p", "slow=10", "--start", "2003-01-01", "--speed", "25"]
SHARED = {  # the settings every process of a setup shares
    "FFE__JOBS__HEARTBEAT_S": "0.5",  # a dead worker is noticed within about two seconds
    "FFE__JOBS__STALE_S": "2",
    "FFE__PRECOMPUTE__SYMBOLS": f'["{SYMBOL}"]',
    "FFE__PRECOMPUTE__INTERVAL_S": "600",  # one analysis at the start, none competing later
    "FFE__COMPUTE__MAX_WORKERS": "1",  # a sweep's pool: one process, the machine has two cores
}
BACKTESTS = 8
# 600 points of a strategy the batch kernel leaves to the engine, ~5 s on one process
SLOW_SWEEP = {"lookback": list(range(2, 302)), "rebalance": [1, 2]}
RECENT = "2016-01-01"  # the small jobs' first bar: a job's time is mostly its interpreter's
STARTED_OK = (0, 130, -signal.SIGINT)  # Ctrl-C: a clean exit, or the re-raised SIGINT


@dataclass
class Proc:
    """A process of the stack: its base URL (API or probe port), the process and its log."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    killed: bool = False


@dataclass
class Setup:
    """What the checks reach: the API with a trade key (a read key for /metrics, as
    Prometheus has), and the probe ports apart from it."""

    api: str
    key: str
    reader: str
    agent_apart: bool  # the agent runs in a process of its own, not inside the API
    probes: dict[str, tuple[str, str]] = field(default_factory=dict)  # name: (url, a metric)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.api}{path}", params=params, headers=self.headers, timeout=30)

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = httpx.post(f"{self.api}{path}", json=body, headers=self.headers, timeout=30)
        assert answer.status_code in (200, 202), answer.text
        return dict(answer.json())

    def job(self, job_id: str) -> dict[str, Any]:
        found = self.get(f"/api/v1/jobs/{job_id}")
        assert found.status_code == 200, found.text
        return dict(found.json())

    def metrics(self) -> str:
        reader = {"Authorization": f"Bearer {self.reader}"}
        scraped = httpx.get(f"{self.api}/metrics", headers=reader, timeout=30)
        assert scraped.status_code == 200, scraped.text
        return scraped.text


# -- the checks both setups share ----------------------------------------------------------


def check_agent_streams_and_obeys_a_pause(setup: Setup) -> None:
    """The stream delivers the agent's decisions as it makes them (from its own process when
    apart), the API lists them, and a pause sent through the API turns its state paused."""
    with live_stream(setup.api, setup.headers) as ws:
        hello = receive(ws, time.monotonic() + 10)
        first = next_event(ws, "decision", lambda data: data.get("account") == "paper", 90)
        paused = setup.post("/api/v1/agent/pause")
        state = next_event(ws, "agent", lambda data: data.get("status") == "paused", 30)

    decision = first["data"]
    assert decision["symbol"] == SYMBOL
    assert decision["action"] in ("buy", "sell", "flat", "hold")
    # Published by the agent's process through Redis, or by the API it runs in.
    assert (first["source"] != hello["data"]["source"]) == setup.agent_apart
    assert paused["queued"] is True
    assert state["data"]["account"] == "paper"
    shown = wait_for(lambda: _agent(setup).get("status") == "paused" and _agent(setup), 30)
    assert shown["running"] is True  # paused, still holding its lease
    listed = setup.get("/api/v1/decisions", account="paper", limit=1).json()["items"]
    assert listed, "the API lists none of the agent's decisions"
    assert listed[0]["time"] >= decision["time"]  # journaled up to what streamed, and on


def check_analysis_is_the_cached_one(setup: Setup) -> None:
    """GET /api/v1/analysis answers with the analysis the pre-compute stored in the shared
    cache (Redis apart, the journal together), not one of its own."""

    def answered() -> dict[str, Any] | None:
        found = setup.get(f"/api/v1/analysis/{SYMBOL}")
        assert found.status_code in (200, 202), found.text  # 202: not stored yet
        return dict(found.json()) if found.status_code == 200 else None

    answer = wait_for(answered, timeout=180, every=0.5)
    stored = asyncio.run(_cached_analysis(SYMBOL))

    assert stored is not None
    assert answer == json.loads(json.dumps(stored))
    assert answer["computed_at"]


def check_jobs_run_once(setup: Setup) -> list[dict[str, Any]]:
    """Eight backtests and a small sweep submitted through the API each finish once, with one
    result; every finished backtest job has recorded one run, under its id. The jobs."""
    small = {"start": RECENT}
    bodies = [
        ("backtests", {"symbols": [SYMBOL], "params": {"fast": n}, **small})
        for n in range(2, 2 + BACKTESTS)
    ]
    grid = {"fast": [5, 10], "slow": [20, 30]}
    bodies.append(("sweeps", {"symbol": SYMBOL, "grid": grid, **small}))
    ids = [setup.post(f"/api/v1/{path}", body)["id"] for path, body in bodies]
    jobs = [_ended(setup, job_id, 180) for job_id in ids]

    assert [(j["status"], j["attempts"], j["error"]) for j in jobs] == [("finished", 1, None)] * 9
    assert all(j["result"] for j in jobs)
    assert len(jobs[-1]["result"]["rows"]) == 4
    assert [j["run_id"] for j in jobs[:-1]] == ids[:-1]  # each backtest's run takes its id
    backtests = {j["id"] for j in _all(setup, "/api/v1/jobs") if j["kind"] == "backtest"}
    runs = [r["id"] for r in _all(setup, "/api/v1/runs", kind="backtest")]
    assert sorted(runs) == sorted(backtests)  # one run per backtest job, none twice
    return jobs


def check_metrics_count_the_jobs(setup: Setup) -> dict[str, float]:
    """The API's /metrics: the queue depth (nothing queued, nothing running) and each live
    worker's finished jobs, adding up to the finished jobs. Each worker's finished count."""
    finished = sum(j["status"] == "finished" for j in _all(setup, "/api/v1/jobs"))

    def counted() -> tuple[str, dict[str, float]] | None:
        text = setup.metrics()
        counts = _worker_jobs(text, "finished")
        return (text, counts) if sum(counts.values()) == finished else None

    text, counts = wait_for(counted, timeout=30, every=0.5)  # workers beat every 0.5 s
    assert _gauge(text, "ffe_job_queue_depth") == 0
    assert _gauge(text, "ffe_jobs_running") == 0
    assert _gauge(text, "ffe_workers_alive") == len(counts)
    return counts


def check_probes_answer(setup: Setup) -> None:
    """The API's health routes, and every probe port's /health/live, /health/ready and
    /metrics (with the metric that process is there to show)."""
    for route in ("/health/live", "/health/ready"):
        assert httpx.get(f"{setup.api}{route}", timeout=30).status_code == 200, route
    for name, (url, metric) in setup.probes.items():
        live = httpx.get(f"{url}/health/live", timeout=30)
        ready = httpx.get(f"{url}/health/ready", timeout=30)
        scraped = httpx.get(f"{url}/metrics", timeout=30)
        assert (live.status_code, ready.status_code) == (200, 200), (name, ready.text)
        assert scraped.status_code == 200, name
        assert re.search(rf"^{metric}\b", scraped.text, re.M), (name, scraped.text)


# -- the checks of the processes apart -----------------------------------------------------


def check_job_waits_for_a_worker(setup: Setup, job_id: str | None = None) -> str:
    """A backtest submitted (unless ``job_id`` is one) while no worker runs stays queued and
    says why, and the queue depth counts it. Its id."""
    body = {"symbols": [SYMBOL], "start": RECENT}
    job_id = job_id or setup.post("/api/v1/backtests", body)["id"]

    waiting = setup.job(job_id)

    assert (waiting["status"], waiting["waiting"], waiting["attempts"]) == ("queued", NO_WORKER, 0)
    assert _gauge(setup.metrics(), "ffe_job_queue_depth") == 1
    return job_id


def check_killed_workers_job_is_run_again(setup: Setup, workers: list[Proc]) -> None:
    """A worker SIGKILLed mid-sweep: the other worker takes the job once its heartbeat goes
    stale, runs it from the start and records one result (attempts 2); the killed worker's
    job processes end with it, and it drops out of the API's metrics."""
    body = {"strategy": "momentum", "symbol": SYMBOL, "grid": SLOW_SWEEP}
    job_id = setup.post("/api/v1/sweeps", body)["id"]
    running = wait_for(lambda: (job := setup.job(job_id))["progress"] > 0 and job, 120, 0.2)
    owner = asyncio.run(_owner(job_id))
    [doomed] = [w for w in workers if f":{w.process.pid}:" in owner]
    [survivor] = [w for w in workers if w is not doomed]
    job_processes = psutil.Process(doomed.process.pid).children(recursive=True)

    doomed.process.kill()  # SIGKILL: no shutdown code runs
    doomed.killed = True
    doomed.process.wait(10)
    done = _ended(setup, job_id, 240)

    assert (running["status"], running["attempts"]) == ("running", 1)
    assert job_processes  # it was running the sweep in a process of its own
    _, left = psutil.wait_procs(job_processes, timeout=10)
    assert left == []
    assert (done["status"], done["attempts"], done["error"]) == ("finished", 2, None)
    assert f":{survivor.process.pid}:" in asyncio.run(_owner(job_id))
    assert len(done["result"]["rows"]) == 600
    text = wait_for(lambda: _gauge(t := setup.metrics(), "ffe_workers_alive") == 1 and t, 30)
    assert f'worker="{owner}"' not in text


# -- the two setups ------------------------------------------------------------------------


def test_stack_apart_on_postgresql_and_redis_then_every_check_holds(monkeypatch):
    require_redis()
    with contextlib.ExitStack() as stack:
        env = {**SHARED, "FFE__DATABASE__URL": stack.enter_context(postgres_database())}
        prefix = f"ffe-stack-{uuid.uuid4().hex[:8]}:"
        env |= {"FFE__REDIS__URL": REDIS_URL, "FFE__REDIS__KEY_PREFIX": prefix}
        stack.callback(_forget_redis_keys, prefix)  # after every process has stopped
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        asyncio.run(_migrate())  # before any process: several migrating at once would collide
        started = _starter(stack)
        api = started("serve", "serve", "--workers", "2", port_option="--port")
        precompute = started("precompute", "precompute")
        agent = started("agent", *AGENT)
        setup = Setup(api.url, _key("trade"), _key("read"), agent_apart=True)
        setup.probes |= {
            "precompute": (precompute.url, "ffe_analysis_refreshes_total"),
            "agent": (agent.url, "ffe_decisions_total"),
        }

        waiting = check_job_waits_for_a_worker(setup)
        check_agent_streams_and_obeys_a_pause(setup)
        check_analysis_is_the_cached_one(setup)
        check_job_waits_for_a_worker(setup, waiting)  # still, many seconds later
        workers = [started("worker-1", "worker"), started("worker-2", "worker", "-c", "2")]
        assert _ended(setup, waiting, 120)["status"] == "finished"
        check_jobs_run_once(setup)
        counts = check_metrics_count_the_jobs(setup)
        for worker in workers:
            setup.probes[worker.name] = (worker.url, "ffe_worker_jobs")
        check_probes_answer(setup)
        own = {
            w.name: _worker_jobs(httpx.get(f"{w.url}/metrics").text, "finished") for w in workers
        }
        check_killed_workers_job_is_run_again(setup, workers)

    assert len(counts) == 2
    assert all(n >= 1 for n in counts.values()), counts  # the jobs went to both workers
    for worker in workers:  # each worker's probe: its own count, as the API shows it
        [mine] = [name for name in counts if f":{worker.process.pid}:" in name]
        assert own[worker.name][mine] == counts[mine]


def test_run_on_embedded_defaults_then_the_same_checks_hold(monkeypatch):
    with contextlib.ExitStack() as stack:
        for name, value in {**SHARED, "FFE__API__MAX_JOBS": "2"}.items():
            monkeypatch.setenv(name, value)
        keys = _key("trade"), _key("read")
        run = _starter(stack)("run", "run", "--speed", "25", port_option="--port")
        setup = Setup(run.url, *keys, agent_apart=False)

        check_agent_streams_and_obeys_a_pause(setup)
        check_analysis_is_the_cached_one(setup)
        jobs = check_jobs_run_once(setup)
        counts = check_metrics_count_the_jobs(setup)
        check_probes_answer(setup)

    assert list(counts.values()) == [len(jobs)]  # the one worker: `ffe run` itself


# -- helpers ---------------------------------------------------------------------------------


def _starter(stack: contextlib.ExitStack) -> Callable[..., Proc]:
    """Start ``python -m ffe ARGS`` (its probes on --health-port unless ``port_option``)
    until ``stack`` closes, once it answers /health/live."""

    def start(name: str, *args: str, port_option: str = "--health-port") -> Proc:
        return stack.enter_context(_process(name, args, port_option))

    return start


@contextlib.contextmanager
def _process(name: str, args: tuple[str, ...], port_option: str) -> Iterator[Proc]:
    """A process of the stack. On leaving, Ctrl-C (unless the test killed it): it must stop
    within 30 s, cleanly, without leaving a process it started behind."""
    log = Path(os.environ["FFE__DATA__DIR"]) / f"{name}.log"
    family: list[psutil.Process] = []
    with ffe_process(log, *args, port_option=port_option) as (url, process):
        proc = Proc(name, url, process, log)
        try:
            wait_live(url, process, log, timeout=120)
            yield proc
        finally:
            with contextlib.suppress(psutil.NoSuchProcess):
                family = psutil.Process(process.pid).children(recursive=True)
    _, left = psutil.wait_procs(family, timeout=10)
    for straggler in left:
        straggler.kill()
    assert left == [], f"{name} left {left} behind:\n{log.read_text()}"
    text = log.read_text()
    assert process.returncode in STARTED_OK or proc.killed, f"{name} exited badly:\n{text}"
    assert "Traceback" not in text, f"{name}:\n{text}"


def _key(scope: str) -> str:
    made = CliRunner().invoke(app, ["keys", "create", f"stack-{scope}", "--scope", scope])
    assert made.exit_code == 0, made.output
    return made.stdout.strip()


async def _migrate() -> None:
    from ffe.config import load_settings
    from ffe.store import migrate
    from ffe.store.database import Database

    async with Database(load_settings().database_url()) as db:
        await migrate.upgrade(db)


async def _cached_analysis(symbol: str) -> dict[str, Any] | None:
    """The analysis of ``symbol`` as the shared cache holds it, read as the API reads it."""
    from ffe import bootstrap
    from ffe.config import load_settings
    from ffe.service.analysis import AnalysisStore

    settings = load_settings()
    db = await bootstrap.open_journal(settings)
    kv = bootstrap.kv_backends(settings)
    try:
        cache = bootstrap.analysis_cache(db, kv)
        return await AnalysisStore(cache, settings.precompute.interval_s * 3).result(symbol)
    finally:
        await kv.close()
        await db.dispose()


async def _owner(job_id: str) -> str:
    """The worker that holds a job, from the journal (the API does not show it)."""
    from ffe import bootstrap
    from ffe.config import load_settings
    from ffe.store.models import Job

    db = await bootstrap.open_journal(load_settings())
    try:
        async with db.session() as session:
            job = await session.get(Job, job_id)
    finally:
        await db.dispose()
    assert job is not None, job_id
    assert job.owner is not None, job_id
    return job.owner


def _forget_redis_keys(prefix: str) -> None:
    """Delete this test's keys (its prefix only; never a flush)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _agent(setup: Setup) -> dict[str, Any]:
    agents = setup.get("/api/v1/agent").json()["agents"]
    return next((dict(a) for a in agents if a["account"] == "paper"), {})


def _ended(setup: Setup, job_id: str, timeout: float) -> dict[str, Any]:
    return wait_for(lambda: (job := setup.job(job_id))["finished_at"] and job, timeout, 0.2)


def _all(setup: Setup, path: str, **params: Any) -> list[dict[str, Any]]:
    found = setup.get(path, limit=200, **params)
    assert found.status_code == 200, found.text
    page = found.json()
    assert len(page["items"]) < 200, "more than one page: raise the limit"
    return list(page["items"])


def _gauge(metrics: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", metrics, re.M)
    assert found is not None, f"{name} missing from:\n{metrics}"
    return float(found.group(1))


def _worker_jobs(metrics: str, state: str) -> dict[str, float]:
    """Each live worker's count of its jobs in ``state``, by worker id."""
    line = re.compile(r'^ffe_worker_jobs\{kind="[^"]+",state="(\w+)",worker="([^"]+)"\} (\S+)$')
    return {
        found.group(2): float(found.group(3))
        for found in map(line.match, metrics.splitlines())
        if found is not None and found.group(1) == state
    }
