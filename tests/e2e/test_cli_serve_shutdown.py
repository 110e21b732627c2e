"""Ctrl-C on `ffe serve --jobs` while a long sweep runs: the server exits within seconds, not when
the sweep would have ended, and the sweep is recorded as stopped by the shutdown (not as
failed by its worker processes dying of the same Ctrl-C)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from tests.support.server import free_port, wait_live
from typer.testing import CliRunner

from ffe.cli.app import app
from ffe.config import load_settings
from ffe.service.jobs.stop import STOPPED
from ffe.store.models import Job

pytestmark = pytest.mark.slow

# 2,000 backtests of SP500's 5,000 bars, each on the engine (the batch kernel runs sma_cross
# sweeps in about a second, in one process): several seconds on two cores, in a pool of two.
LONG_SWEEP = {
    "strategy": "momentum",
    "symbol": "SP500",
    "grid": {"lookback": list(range(2, 1002)), "rebalance": [1, 2]},
}


@contextmanager
def _serving_long_sweep() -> Iterator[tuple[subprocess.Popen[bytes], Path, str]]:
    """``ffe serve --jobs`` in a process group of its own (as a terminal starts it), running a
    long sweep with every worker process up; yield the server's process, its log and the sweep's
    job id. On leaving, the server is killed if the test left it running."""
    made = CliRunner().invoke(app, ["keys", "create", "sweeper", "--scope", "trade"])
    assert made.exit_code == 0, made.output
    headers = {"Authorization": f"Bearer {made.stdout.strip()}"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(os.environ["FFE__DATA__DIR"]) / f"server-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "ffe", "serve", "--jobs", "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            # no model fitting; a pool of two, whatever the cores
            env={
                **os.environ,
                "FFE__API__ANALYSIS_SYMBOLS": "[]",
                "FFE__COMPUTE__MAX_WORKERS": "2",
            },
            start_new_session=True,  # a process group of its own, as a terminal gives it
        )
    try:
        wait_live(url, process, log)
        submitted = httpx.post(f"{url}/api/v1/sweeps", json=LONG_SWEEP, headers=headers)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        _wait_working(f"{url}/api/v1/jobs/{job_id}", headers, process, log)
        yield process, log, job_id
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _wait_working(
    job: str, headers: dict[str, str], process: subprocess.Popen[bytes], log: Path
) -> None:
    """Until the sweep has done a few dozen points: every worker process is up (and ignores
    Ctrl-C), not only the first; one still starting would print a KeyboardInterrupt
    traceback."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"server exited:\n{log.read_text()}"
        found = httpx.get(job, headers=headers).json()
        if found["status"] == "running" and found["progress"] >= 0.02:
            return
        time.sleep(0.2)
    raise AssertionError(f"the sweep's first points did not happen in 60s:\n{log.read_text()}")


def _stored_job(job_id: str) -> Job | None:
    from ffe import bootstrap

    async def read() -> Job | None:
        db = await bootstrap.open_journal(load_settings())
        try:
            async with db.session() as session:
                return await session.scalar(select(Job).where(Job.id == job_id))
        finally:
            await db.dispose()

    return asyncio.run(read())


def test_serve_when_ctrl_c_during_long_sweep_then_exits_within_seconds():
    with _serving_long_sweep() as (process, log, job_id):
        # Ctrl-C in a terminal: to the whole group, the sweep's worker processes included
        os.killpg(process.pid, signal.SIGINT)
        started = time.monotonic()
        process.wait(20)  # a hang fails here, not at the timing assertion below
        took = time.monotonic() - started

    printed = log.read_text()
    assert took < 10.0, f"exit took {took:.1f}s:\n{printed}"
    # uvicorn re-raises the SIGINT it handled, after a clean shutdown: 130 like any Ctrl-C
    assert process.returncode in (0, 130, -signal.SIGINT), printed
    assert "Traceback" not in printed
    stored = _stored_job(job_id)
    assert stored is not None
    assert (stored.status, stored.error) == ("cancelled", STOPPED)


def test_serve_when_killed_during_long_sweep_then_the_sweeps_processes_end_too():
    import psutil

    with _serving_long_sweep() as (process, _, _):
        sweep = psutil.Process(process.pid).children(recursive=True)

        process.kill()  # SIGKILL: no shutdown code of the server runs
        process.wait(10)
        _, alive = psutil.wait_procs(sweep, timeout=5.0)

    assert len(sweep) >= 3, sweep  # the job's process and its pool's workers
    assert alive == [], f"left running after the server was killed: {alive}"
