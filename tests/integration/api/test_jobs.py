"""Jobs with several workers on one journal: a job whose process stopped beating is given up,
one whose process is alive is left alone, and each job runs once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from ffe.api import jobs
from ffe.api.jobs import STALE_S, JobService
from ffe.domain.errors import StoreError
from ffe.store.models import Job


def _job(job_id: str, heartbeat: datetime | None) -> Job:
    return Job(
        id=job_id,
        kind="backtest",
        status="running",
        payload={},
        progress=0.3,
        owner="elsewhere:1:abc",
        started_at=datetime.now(UTC) - timedelta(minutes=5),
        heartbeat_at=heartbeat,
    )


def test_recover_when_heartbeat_stale_then_failed_and_fresh_one_left_running(api):
    services = api.services
    now = datetime.now(UTC)

    async def scenario() -> dict[str, str]:
        async with services.db.session() as session:
            session.add(_job("a" * 32, now - timedelta(seconds=STALE_S * 3)))  # died
            session.add(_job("b" * 32, now))  # alive in another worker
        lost = await services.jobs.recover()
        async with services.db.session() as session:
            rows = (await session.execute(select(Job.id, Job.status, Job.error))).all()
        assert lost == 1
        return {row.id: row.status for row in rows}

    found = api.client.portal.call(scenario)  # type: ignore[union-attr]

    assert found == {"a" * 32: "failed", "b" * 32: "running"}
    lost = api.client.get(f"/api/v1/jobs/{'a' * 32}", headers=api.headers()).json()
    assert "stopped" in lost["error"]
    assert lost["finished_at"] is not None


def test_two_workers_when_one_job_queued_then_it_runs_once(api, tmp_path, monkeypatch):
    from tests.support import jobwork

    services = api.services
    tally = tmp_path / "tally"
    jobwork.use(monkeypatch, "backtest", "tally")

    async def scenario() -> None:
        other = JobService(services.settings, services.db, services.kv, services.metrics)
        async with services.db.session() as session:
            session.add(
                Job(id="c" * 32, kind="backtest", status="queued", payload={"tally": str(tally)})
            )
        await asyncio.gather(services.jobs._run("c" * 32), other._run("c" * 32))

    api.client.portal.call(scenario)  # type: ignore[union-attr]

    assert tally.read_text().splitlines() == ["ran"]
    done = api.client.get(f"/api/v1/jobs/{'c' * 32}", headers=api.headers()).json()
    assert done["status"] == "finished"


class _FlakyJournal:
    """The journal, except that its sessions fail while ``failing`` is set."""

    def __init__(self, db: Any) -> None:
        self.db, self.failing = db, False

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


def test_heartbeat_when_journal_fails_briefly_then_job_kept_and_finished(api, monkeypatch):
    from tests.support import jobwork

    services = api.services
    flaky = _FlakyJournal(services.db)
    monkeypatch.setattr(services.jobs, "db", flaky)
    monkeypatch.setattr(jobs, "HEARTBEAT_S", 0.2)
    jobwork.use(monkeypatch, "backtest", "stubborn")
    job = api.client.portal.call(services.jobs.submit, "backtest", {"sleep_s": 4})
    deadline = time.monotonic() + 30
    while (
        api.client.get(f"/api/v1/jobs/{job['id']}", headers=api.headers()).json()["progress"] < 0.5
    ):
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.1)

    flaky.failing = True
    time.sleep(0.7)  # a few beats fail
    stale = datetime.now(UTC) - timedelta(seconds=STALE_S * 3)

    async def outage_ends() -> int:
        async with services.db.session() as session:  # as if the outage outlasted STALE_S
            await session.execute(update(Job).where(Job.id == job["id"]).values(heartbeat_at=stale))
        flaky.failing = False
        return await services.jobs.recover()

    lost = api.client.portal.call(outage_ends)

    assert lost == 0  # this process still runs it
    time.sleep(0.7)
    assert _heartbeat(api, job["id"]) > stale + timedelta(seconds=STALE_S)  # beating again
    while (done := api.client.get(f"/api/v1/jobs/{job['id']}", headers=api.headers()).json())[
        "finished_at"
    ] is None:
        assert time.monotonic() < deadline + 30, "the job did not end"
        time.sleep(0.1)
    assert (done["status"], done["result"]) == ("finished", {"ok": True})
