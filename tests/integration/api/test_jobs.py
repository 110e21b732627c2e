"""Jobs with several workers on one journal: a job whose process stopped beating is given up,
one whose process is alive is left alone, and each job runs once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from ffe.api.jobs import STALE_S, JobService
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
