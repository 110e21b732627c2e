"""Closing the API while a job runs: the job is asked to stop, the close is prompt, and the
journal says the job was stopped by the shutdown; jobs not yet started stay queued."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from sqlalchemy import select

from ffe.config import Settings
from ffe.service.jobs.stop import STOPPED
from ffe.store.models import Job

# 2,000 backtests of SP500's 5,000 bars, each on the engine (the batch kernel runs sma_cross
# sweeps in about a second, in one process): several seconds on two cores, in a pool of two.
LONG_SWEEP = {
    "strategy": "momentum",
    "symbol": "SP500",
    "grid": {"lookback": list(range(2, 1002)), "rebalance": [1, 2]},
}


def _wait_running(api: Any, job_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
    """Wait until the job runs and has finished a point or more (its worker processes work)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = api.client.get(f"/api/v1/jobs/{job_id}", headers=api.headers()).json()
        assert job["status"] in ("queued", "running"), job
        if job["status"] == "running" and job["progress"] > 0:
            return dict(job)
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not get going in {timeout_s}s")


def _stored(settings: Settings) -> dict[str, Job]:
    from ffe import bootstrap

    async def read() -> dict[str, Job]:
        db = await bootstrap.open_journal(settings)
        try:
            async with db.session() as session:
                return {job.id: job for job in (await session.scalars(select(Job))).all()}
        finally:
            await db.dispose()

    return asyncio.run(read())


def test_close_when_sweep_running_then_prompt_and_job_stopped_by_shutdown(api_with):
    with contextlib.ExitStack() as app:
        api = app.enter_context(api_with(FFE__JOBS__IN_API="true"))
        trader = api.headers("trader")
        submit = api.client.post("/api/v1/sweeps", json=LONG_SWEEP, headers=trader)
        later = api.client.post("/api/v1/sweeps", json=LONG_SWEEP, headers=trader)
        assert submit.status_code == later.status_code == 202, submit.text
        running = _wait_running(api, submit.json()["id"])

        started = time.monotonic()
        app.close()  # the app's shutdown: Services.close
        took = time.monotonic() - started

    assert took < 8.0, f"closing took {took:.1f}s"
    stored = _stored(api.settings)
    stopped = stored[running["id"]]
    assert stopped.status == "cancelled"
    assert stopped.error == STOPPED
    assert stopped.finished_at is not None
    assert stopped.result is None
    waiting = stored[later.json()["id"]]  # max_jobs is 1: it never started
    assert (waiting.status, waiting.owner, waiting.started_at) == ("queued", None, None)
    assert waiting.attempts == 0


def test_stop_when_work_ignores_the_flag_then_recorded_stopped_and_not_overwritten(
    jobs_api, monkeypatch
):
    from tests.support import jobwork

    services = jobs_api.services
    jobwork.use(monkeypatch, "backtest", "stubborn")

    async def scenario() -> tuple[str, str | None, str, str | None]:
        job = await services.submit_job("backtest", {"sleep_s": 1.5})
        while (services.worker.progress(job["id"]) or 0.0) < 0.5:  # in its sleep
            await asyncio.sleep(0.05)
        await services.worker.stop(ending=("cancelled", STOPPED), wait_s=0.2)
        at_stop = await services.jobs.get(job["id"])
        await asyncio.sleep(2.0)  # the sleep would have ended, and "finished" been recorded
        after = await services.jobs.get(job["id"])
        return at_stop.status, at_stop.error, after.status, after.error

    found = jobs_api.client.portal.call(scenario)  # type: ignore[union-attr]

    assert found == ("cancelled", STOPPED, "cancelled", STOPPED)
