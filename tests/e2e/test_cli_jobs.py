"""`ffe jobs list | show | cancel` on the journal, SQLite and PostgreSQL: a queued job is
cancelled by a prefix of its id; an ended or unknown one is refused with a message."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from ffe.cli.app import app
from ffe.store.models import Job

runner = CliRunner()
QUEUED, DONE = "a1" + "0" * 30, "b2" + "0" * 30


@pytest.fixture
def journal(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    from ffe import bootstrap
    from ffe.config import load_settings

    monkeypatch.setenv("FFE__DATABASE__URL", database_url)
    monkeypatch.setenv("FFE__DATABASE__AUTO_UPGRADE", "always")

    async def seed() -> None:
        db = await bootstrap.open_journal(load_settings())
        try:
            async with db.session() as session:
                session.add(Job(id=QUEUED, kind="sweep", status="queued", payload={}))
                session.add(
                    Job(
                        id=DONE,
                        kind="backtest",
                        status="finished",
                        payload={},
                        progress=1.0,
                        finished_at=datetime.now(UTC),
                    )
                )
        finally:
            await db.dispose()

    asyncio.run(seed())
    return database_url


def test_jobs_cancel_when_queued_then_cancelled_and_shown_so(journal):
    cancelled = runner.invoke(app, ["jobs", "cancel", "a1"])

    assert cancelled.exit_code == 0, cancelled.output
    assert f"job {QUEUED} (sweep) cancelled" in cancelled.output
    shown = json.loads(runner.invoke(app, ["jobs", "show", QUEUED]).stdout)
    assert shown["status"] == "cancelled"
    assert shown["error"].startswith("cancelled by cli:")
    assert shown["finished_at"] is not None
    listed = json.loads(runner.invoke(app, ["jobs", "list", "--json"]).stdout)
    assert {job["id"]: job["status"] for job in listed} == {
        QUEUED: "cancelled",
        DONE: "finished",
    }


def test_jobs_cancel_when_ended_or_unknown_then_refused_with_a_message(journal):
    ended = runner.invoke(app, ["jobs", "cancel", DONE])
    unknown = runner.invoke(app, ["jobs", "cancel", "ffff"])

    assert ended.exit_code == 2
    assert "has already ended (finished)" in ended.output
    assert unknown.exit_code == 2
    assert "no job 'ffff'" in unknown.output
    table = runner.invoke(app, ["jobs", "list", "--kind", "backtest"])
    assert table.exit_code == 0, table.output
    assert DONE in table.output
    assert QUEUED not in table.output


def test_jobs_list_when_no_worker_alive_then_queued_job_says_so_and_how_to_start_one(journal):
    from ffe.service.jobs.stop import NO_WORKER

    listed = json.loads(runner.invoke(app, ["jobs", "list", "--json"]).stdout)
    shown = json.loads(runner.invoke(app, ["jobs", "show", "a1"]).stdout)
    table = runner.invoke(app, ["jobs", "list"])

    assert {job["id"]: job["waiting"] for job in listed} == {QUEUED: NO_WORKER, DONE: None}
    assert (shown["waiting"], shown["attempts"]) == (NO_WORKER, 0)
    assert table.exit_code == 0, table.output
    assert "queued jobs wait for a worker: start one with `ffe worker`" in table.output
