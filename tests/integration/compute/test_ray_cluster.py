"""The Ray executor on a real cluster: a head and a second node on 127.0.0.1, each a raylet
with its own object store and worker processes. Sweeps, walk-forward runs and forecast
benchmarks give exactly the local executor's results, from Python, the CLI and an `ffe
worker`'s jobs, and a tuning study the same trials; tasks reach both nodes; a cancel stops the
work; and a node killed mid-sweep costs nothing but time.

Serial (never beside other xdist workers): the cluster takes both cores and about 1 GB. Under
CI a missing Ray fails these tests rather than skipping them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ffe import bootstrap
from ffe.backtest.sweep import combinations, run_sweep
from ffe.backtest.walkforward import run_walk_forward
from ffe.compute import LocalExecutor, in_order
from ffe.config import Settings, load_settings
from ffe.domain import MarketData
from ffe.service.markets import MarketSpec, load_bars
from ffe.store.models import Job

if os.environ.get("CI") != "true":
    pytest.importorskip("ray")

from ffe.compute.ray_executor import RayExecutor
from ffe.compute.ray_local import LocalRayCluster

pytestmark = [pytest.mark.serial, pytest.mark.slow]

BASE_PORT = 46000  # this suite's ports: 46000-46399 (four nodes' ranges at most)
SUPPORT = Path(__file__).parents[2] / "support"
GRID = combinations({"fast": list(range(5, 30, 2)), "slow": list(range(30, 90, 6))})  # 130


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalRayCluster]:
    path = os.pathsep.join(filter(None, [str(SUPPORT), os.environ.get("PYTHONPATH")]))
    with LocalRayCluster(BASE_PORT, nodes=2, env={"PYTHONPATH": path}) as started:
        sys.path.insert(0, str(SUPPORT))
        try:
            yield started
        finally:
            sys.path.remove(str(SUPPORT))


@pytest.fixture(scope="module")
def ray_executor(cluster: LocalRayCluster) -> RayExecutor:
    return RayExecutor(cluster.address).connect()


@pytest.fixture(scope="module")
def market() -> MarketData:
    return load_bars(bootstrap.components(Settings()), MarketSpec(("SP500",)))


def sweep_rows(market: MarketData, executor: Any, **kwargs: Any) -> list[dict[str, Any]]:
    settings = Settings()
    config, risk = bootstrap.backtest_config(settings), bootstrap.risk_engine(settings)
    rows = run_sweep(market, "sma_cross", GRID, config, risk, executor=executor, **kwargs)
    return [row.flat() for row in rows]


@pytest.fixture(scope="module")
def local_rows(market: MarketData) -> list[dict[str, Any]]:
    return sweep_rows(market, LocalExecutor(1))


def test_sweep_when_on_cluster_then_rows_identical_to_local(
    ray_executor: RayExecutor, market: MarketData, local_rows: list[dict[str, Any]]
) -> None:
    rows = sweep_rows(market, ray_executor)

    assert ray_executor.workers == 2
    assert rows == local_rows  # every float, bit for bit


def test_map_when_on_cluster_then_tasks_ran_on_both_nodes(ray_executor: RayExecutor) -> None:
    import ray

    alive = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
    import raywork

    results = in_order(ray_executor.map(raywork.node, range(8), 0.2), 8)

    assert [item for item, _ in results] == list(range(8))
    assert {node for _, node in results} == alive
    assert len(alive) == 2


def test_walk_forward_when_on_cluster_then_identical_to_local(ray_executor: RayExecutor) -> None:
    settings = Settings()
    four_segments = MarketSpec(("SP500",), "2013-01-01")
    market = load_bars(bootstrap.components(settings), four_segments)
    config, risk = bootstrap.backtest_config(settings), bootstrap.risk_engine(settings)
    params = {"models": "naive,drift", "window": 150, "refit_every": 40}
    done: list[int] = []

    def walk(executor: Any) -> dict[str, Any]:
        walked = run_walk_forward(
            market, "ensemble", params, 400, 300, config, risk,
            progress=lambda: done.append(1), executor=executor,
        )  # fmt: skip
        return {"walked": walked.to_dict(), "backtest": walked.backtest.to_dict()}

    remote = walk(ray_executor)
    segments = len(done)

    assert remote == walk(LocalExecutor(1))
    assert segments == len(remote["walked"]["segments"]) > 2


def test_tune_when_on_cluster_then_the_same_study_as_in_process(
    ray_executor: RayExecutor, tmp_path: Path
) -> None:
    from ffe.backtest.walkforward import WalkForwardSpec
    from ffe.data import SyntheticMarket
    from ffe.tune.space import parse_space
    from ffe.tune.storage import load_study
    from ffe.tune.study import TuneSpec, run_study

    url = f"sqlite:///{(tmp_path / 'tune.db').as_posix()}"
    spec = TuneSpec(
        "sma_cross", parse_space(["fast=2..10", "slow=12..40"]), WalkForwardSpec(200, 100),
        trials=12, batch_size=4, seed=3,
    )  # fmt: skip
    market = SyntheticMarket(1, 700, seed=11).to_market()

    remote = run_study(market, spec, ray_executor, url, "ray")
    local = run_study(market, spec, LocalExecutor(1), url, "local")

    def trials(name: str) -> list[tuple[str, dict[str, Any], float | None]]:
        study = load_study(url, name)
        return [(t.state.name, t.params, t.value) for t in study.get_trials(deepcopy=False)]

    assert trials("ray") == trials("local")
    assert remote.best == local.best
    assert remote.best is not None


def test_forecast_bench_when_configured_for_ray_then_scores_identical_to_local(
    cluster: LocalRayCluster,
) -> None:
    from ffe.service.forecasts import BenchRequest, bench

    request = BenchRequest(
        "SP500", (1, 5), "naive,drift,auto_ets", window=200, refit_every=50, start="2016-01-01"
    )
    ray_compute = {"executor": "ray", "ray_address": cluster.address}
    on_ray = bootstrap.components(Settings(compute=ray_compute))  # type: ignore[arg-type]
    local = bootstrap.components(Settings(compute={"max_workers": 1}))  # type: ignore[arg-type]

    remote = bench(on_ray, request).to_dict()

    assert remote == bench(local, request).to_dict()
    assert remote["scores"]


def test_sweep_json_when_cli_on_ray_then_rows_equal_a_local_run(
    cluster: LocalRayCluster, tmp_path: Path
) -> None:
    sweep = ["backtest", "sweep", "-p", "fast=5..25:5", "-p", "slow=30..90:20", "--json"]

    def run(*extra: str) -> Any:
        env = {**os.environ, "FFE__DATA__DIR": str(tmp_path / "data")}
        command = [sys.executable, "-m", "ffe", *sweep, *extra]
        done = subprocess.run(
            command, check=False, capture_output=True, text=True, env=env, timeout=300
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)  # nothing but the rows on stdout, Ray's logs included

    on_ray = run("--executor", "ray", "--ray-address", cluster.address)

    assert on_ray == run("--executor", "local", "--jobs", "1")
    assert len(on_ray) == 20


def test_map_when_fn_raises_on_cluster_then_its_own_exception_here(
    ray_executor: RayExecutor,
) -> None:
    import raywork

    with pytest.raises(ValueError, match="item 3 is refused"):
        list(ray_executor.map(raywork.fails_at_three, range(6), None))


def test_map_when_cancelled_on_cluster_then_rest_dropped_and_cluster_free_again(
    ray_executor: RayExecutor,
) -> None:
    import raywork

    cancel = threading.Event()
    started = time.monotonic()
    # 40 items of 0.5 s on two CPUs: 10 s to the end, well under that when the rest is dropped
    got = list(
        ray_executor.map(
            raywork.slow, range(40), 0.5, cancel=cancel, progress=lambda *_: cancel.set()
        )
    )
    stopped = time.monotonic() - started
    after = in_order(ray_executor.map(raywork.slow, range(4), 0.0), 4)

    assert len(got) == 1  # nothing reported after the flag
    assert stopped < 5
    assert after == [0, 1, 2, 3]  # the cancelled tasks hold no CPU


def test_session_when_cancelled_then_waiting_items_dropped_and_running_ones_finish(
    ray_executor: RayExecutor,
) -> None:
    import raywork

    with ray_executor.open(raywork.slow, 0.5) as session:
        futures = [session.submit(item) for item in range(8)]
        time.sleep(0.2)  # the first two are running, the rest wait in the session
        session.cancel()
        with pytest.raises(RuntimeError, match="cancelled or closed"):
            session.submit(9)

    finished = [f.result() for f in futures if not f.cancelled()]

    assert finished == [0, 1]  # two CPUs: the items running when cancelled
    assert all(f.cancelled() for f in futures[2:])


def test_session_when_items_submitted_then_each_result_in_its_future(
    ray_executor: RayExecutor,
) -> None:
    import raywork

    with ray_executor.open(raywork.node, 0.0) as session:
        futures = [session.submit(item) for item in range(5)]

    assert [f.result()[0] for f in futures] == list(range(5))


# Last: it leaves the cluster with a fresh second node.
# 16 momentum points: through the engine, so over the executor (sma_cross grids this small
# run on the batch kernel in the job's own process, whatever the executor).
JOB = {
    "strategy": "momentum",
    "grid": {"lookback": [20, 40, 60, 80], "rebalance": [5, 10, 20, 40]},
    "symbol": "SP500",
    "end": "2006-12-31",
}


def _journal_env(tmp_path: Path, address: str) -> dict[str, str]:
    """A worker's environment: its own SQLite journal, migrated, and Ray at ``address``."""
    from ffe.store import migrate
    from ffe.store.database import Database

    env = {
        "FFE__DATA__DIR": str(tmp_path / "data"),
        "FFE__COMPUTE__EXECUTOR": "ray",
        "FFE__COMPUTE__RAY_ADDRESS": address,
        "FFE__JOBS__POLL_S": "0.2",
    }

    async def upgrade() -> None:
        async with Database(_settings(env).database_url()) as db:
            await migrate.upgrade(db)

    asyncio.run(upgrade())
    return env


def _settings(env: dict[str, str]) -> Settings:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _job_ended(env: dict[str, str], kind: str, payload: dict[str, Any]) -> Job:
    """Submit a job to the journal of ``env`` and wait (at most two minutes) for its end."""
    from ffe.service.jobs.queue import JobQueue
    from ffe.store.database import Database

    settings = _settings(env)

    async def call(action: Any) -> Any:
        async with Database(settings.database_url()) as db:
            return await action(JobQueue(db, bootstrap.queue_policy(settings)))

    job: Job = asyncio.run(call(lambda queue: queue.submit(kind, payload)))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found: Job = asyncio.run(call(lambda queue: queue.get(job.id)))
        if found.finished_at is not None:
            return found
        time.sleep(0.3)
    raise AssertionError(f"job {job.id} did not end within 120 s")


def _job_on_worker(env: dict[str, str], payload: dict[str, Any], log: Path) -> Job:
    """A sweep job run by an `ffe worker` started with ``env`` (its settings: the executor is
    the worker's, never the submitter's), which must then stop cleanly on SIGTERM."""
    command = [sys.executable, "-m", "ffe", "worker", "--concurrency", "1", "--health-port", "0"]
    with log.open("wb") as sink:
        worker = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )
    try:
        return _job_ended(env, "sweep", payload)
    finally:
        worker.terminate()
        assert worker.wait(timeout=60) == 0, log.read_text()


def test_sweep_job_when_worker_configured_for_ray_then_runs_there_and_rows_equal_local(
    cluster: LocalRayCluster, tmp_path: Path
) -> None:
    from ffe.service.jobs.work import WORK, Progress

    env = _journal_env(tmp_path, cluster.address)
    done = _job_on_worker(env, JOB, tmp_path / "worker.log")
    # A worker whose settings name a cluster that is not there: the job fails naming it, so
    # the worker above did run its job on the cluster it was given.
    dead = f"127.0.0.1:{BASE_PORT + 399}"
    dead_env = {**env, "FFE__COMPUTE__RAY_ADDRESS": dead}
    refused = _job_on_worker(dead_env, JOB, tmp_path / "dead.log")
    local = bootstrap.components(Settings(compute={"max_workers": 1}))  # type: ignore[arg-type]
    expected, _ = WORK["sweep"](local, dict(JOB), Progress("local", lambda fraction: None))

    assert done.status == "finished", done.error
    assert done.result == json.loads(json.dumps(expected))
    assert len(done.result["rows"]) == 16
    assert refused.status == "failed"
    assert refused.error is not None
    assert dead in refused.error


def test_sweep_when_a_node_dies_mid_sweep_then_completes_with_identical_rows(
    cluster: LocalRayCluster,
    ray_executor: RayExecutor,
    market: MarketData,
    local_rows: list[dict[str, Any]],
) -> None:
    doomed = cluster.workers[0]
    killed: list[int] = []

    def kill_after_first(row: Any) -> None:
        if not killed:
            cluster.remove_node(doomed)  # its running and queued batches are lost
            killed.append(1)

    try:
        # On the engine, in many small tasks: on the batch kernel these 130 points are one
        # task, done before its first row is reported and so before the node dies.
        rows = sweep_rows(market, ray_executor, on_done=kill_after_first, batch=False)
    finally:
        cluster.add_node()

    assert killed
    assert rows == local_rows
