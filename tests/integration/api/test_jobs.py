"""Jobs through the API: queued without a worker (and saying so), run by the API's own worker
when it has one, kept running through a brief journal outage, and counted in /metrics."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update
from tests.support import jobwork
from tests.support.wait import wait_for

from ffe.domain.errors import StoreError
from ffe.service.jobs.stop import NO_WORKER
from ffe.store.models import Job

BACKTEST = {"strategy": "sma_cross", "symbols": ["SP500"], "params": {"fast": 10, "slow": 30}}


def _job(api: Any, job_id: str) -> dict[str, Any]:
    found: dict[str, Any] = api.client.get(f"/api/v1/jobs/{job_id}", headers=api.headers()).json()
    return found


def test_submit_when_no_worker_alive_then_queued_saying_so(api):
    job = api.client.post("/api/v1/backtests", json=BACKTEST, headers=api.headers("trader"))

    assert job.status_code == 202, job.text
    assert (job.json()["status"], job.json()["waiting"]) == ("queued", NO_WORKER)
    time.sleep(0.5)  # nothing in this process runs it
    again = _job(api, job.json()["id"])
    assert (again["status"], again["waiting"], again["attempts"]) == ("queued", NO_WORKER, 0)
    listed = api.client.get("/api/v1/jobs", headers=api.headers()).json()["items"]
    assert listed[0]["waiting"] == NO_WORKER
    status = api.client.get("/api/v1/status", headers=api.headers()).json()
    assert status["jobs"] == {"queued": 1, "running": 0, "workers": 0}


def test_submit_when_api_runs_jobs_then_run_at_once_without_waiting_note(jobs_api, monkeypatch):
    jobwork.use(monkeypatch, "backtest", "instant")
    api = jobs_api

    job = api.client.post("/api/v1/backtests", json=BACKTEST, headers=api.headers("trader"))

    assert job.json()["waiting"] is None  # the API's own worker is alive
    done = wait_for(lambda: (found := _job(api, job.json()["id"]))["finished_at"] and found)
    assert (done["status"], done["attempts"], done["result"]) == ("finished", 1, {"instant": True})


def test_metrics_when_jobs_queued_then_depth_and_workers_read_from_the_journal(
    jobs_api, monkeypatch
):
    jobwork.use(monkeypatch, "backtest", "stubborn")
    api = jobs_api
    submit = api.services.submit_job
    running = api.client.portal.call(submit, "backtest", {"sleep_s": 30})  # type: ignore[union-attr]
    wait_for(lambda: _job(api, running["id"])["status"] == "running")
    for _ in range(3):  # max_jobs is 1: these wait
        api.client.portal.call(submit, "backtest", {"sleep_s": 30})  # type: ignore[union-attr]

    body = api.client.get("/metrics", headers=api.headers()).text

    assert "ffe_job_queue_depth 3.0" in body
    assert "ffe_jobs_running 1.0" in body
    assert "ffe_workers_alive 1.0" in body
    owner = api.services.worker.owner
    assert f'ffe_worker_jobs{{kind="api",state="running",worker="{owner}"}} 1.0' in body


class _FlakyJournal:
    """The journal, except that its sessions fail while ``failing`` is set."""

    def __init__(self, db: Any) -> None:
        self.db, self.failing = db, False
        self.is_sqlite = db.is_sqlite

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Any]:
        if self.failing:
            raise StoreError("the journal is unreachable (a test's outage)")
        async with self.db.session() as session:
            yield session


def _heartbeat(api: Any, job_id: str) -> datetime:
    async def read() -> datetime:
        async with api.services.db.session() as session:
            job = await session.get(Job, job_id)
            assert job is not None
            assert job.heartbeat_at is not None
            return job.heartbeat_at.replace(tzinfo=UTC)

    stamp: datetime = api.client.portal.call(read)
    return stamp


def test_heartbeat_when_journal_fails_briefly_then_job_kept_and_finished(api_with, monkeypatch):
    jobwork.use(monkeypatch, "backtest", "stubborn")
    with api_with(FFE__JOBS__IN_API="true", FFE__JOBS__HEARTBEAT_S="0.2") as api:
        services = api.services
        flaky = _FlakyJournal(services.db)
        monkeypatch.setattr(services.jobs, "db", flaky)
        job = api.client.portal.call(services.submit_job, "backtest", {"sleep_s": 4})
        wait_for(lambda: _job(api, job["id"])["progress"] >= 0.5, timeout=30)

        flaky.failing = True
        time.sleep(0.7)  # a few beats fail
        stale = datetime.now(UTC) - timedelta(seconds=services.components.queue.stale_s * 3)

        async def outage_ends() -> Any:
            async with services.db.session() as session:  # as if the outage outlasted stale_s
                await session.execute(
                    update(Job).where(Job.id == job["id"]).values(heartbeat_at=stale)
                )
            flaky.failing = False
            return await services.worker.recover()

        recovered = api.client.portal.call(outage_ends)

        assert (recovered.requeued, recovered.failed) == ((), ())  # this process still runs it
        wait_for(lambda: _heartbeat(api, job["id"]) > stale + timedelta(seconds=60), timeout=10)
        done = wait_for(lambda: (found := _job(api, job["id"]))["finished_at"] and found)
    assert (done["status"], done["result"], done["attempts"]) == ("finished", {"ok": True}, 1)
