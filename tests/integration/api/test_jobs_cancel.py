"""Ending jobs early: a cancel, or the time limit of the job's kind. Either ends the job's
process and every process it started (a sweep's pool) within seconds; a queued job cancelled
never runs; an ended or unknown job cannot be cancelled."""

from __future__ import annotations

import time
from typing import Any

import psutil
from tests.support import jobwork

from .test_jobs_shutdown import LONG_SWEEP


def _descendants() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(pid)
        except psutil.NoSuchProcess:
            continue
    return alive


def _watch(api: Any, job_id: str, until: Any, timeout_s: float = 90.0) -> tuple[dict, set[int]]:
    """Poll the job until ``until(job, pids)``; the processes seen below this one meanwhile."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen |= _descendants()
        job = api.client.get(f"/api/v1/jobs/{job_id}", headers=api.headers()).json()
        if until(job, seen):
            return job, seen
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not get there in {timeout_s}s: {job}")


def _gone_within(pids: set[int], timeout_s: float) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _alive(pids)


def test_cancel_when_sweep_running_then_cancelled_and_its_processes_gone(api_with):
    # a pool of two, whatever the cores
    with api_with(FFE__COMPUTE__MAX_WORKERS="2", FFE__JOBS__IN_API="true") as api:
        before = _descendants()
        trader = api.headers("trader")
        job_id = api.client.post("/api/v1/sweeps", json=LONG_SWEEP, headers=trader).json()["id"]
        _, seen = _watch(api, job_id, lambda job, _: job["status"] == "running" and job["progress"])

        answer = api.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=trader)

        assert answer.status_code == 200, answer.text
        assert (answer.json()["status"], answer.json()["error"]) == (
            "cancelled",
            "cancelled by key:trader-key",
        )
        job_processes = (seen | _descendants()) - before
        assert len(job_processes) >= 3  # the job's process and its pool's two workers
        assert _gone_within(job_processes, 5.0) == set()
        stored = api.client.get(f"/api/v1/jobs/{job_id}", headers=trader).json()
        assert (stored["status"], stored["result"]) == ("cancelled", None)


def test_job_when_over_its_time_limit_then_failed_saying_so_and_its_processes_gone(
    api_with, monkeypatch
):
    # A sweep whose pool's two workers sleep a minute: over any limit, on any machine.
    jobwork.use(monkeypatch, "sweep", "pool_sleeper")
    with api_with(FFE__JOBS__TIME_LIMIT_S__SWEEP="10", FFE__JOBS__IN_API="true") as api:
        before = _descendants()
        job = api.client.portal.call(api.services.submit_job, "sweep", {})  # type: ignore[union-attr]
        ended, seen = _watch(api, job["id"], lambda job, _: job["finished_at"])

        job_processes = seen - before
        assert ended["status"] == "failed"
        assert ended["error"] == (
            "time limit: the sweep job ran for 10 s, its limit, and was stopped; to allow "
            "longer, raise jobs.time_limit_s.sweep (environment: FFE__JOBS__TIME_LIMIT_S__SWEEP)"
        )
        assert len(job_processes) >= 3  # the job's process and its pool's two workers
        assert _gone_within(job_processes, 5.0) == set()


def test_cancel_when_job_queued_then_it_never_runs(jobs_api, monkeypatch, tmp_path):
    api = jobs_api
    jobwork.use(monkeypatch, "backtest", "stubborn")
    jobwork.use(monkeypatch, "sweep", "tally")
    trader = api.headers("trader")
    services = api.services
    cancelled_tally, later_tally = tmp_path / "cancelled", tmp_path / "later"

    async def submit() -> tuple[str, str]:
        running = await services.submit_job("backtest", {"sleep_s": 3})
        queued = await services.submit_job("sweep", {"tally": str(cancelled_tally)})
        return running["id"], queued["id"]

    running, queued = api.client.portal.call(submit)  # type: ignore[union-attr]
    _watch(api, running, lambda job, _: job["status"] == "running")  # max_jobs is 1

    answer = api.client.post(f"/api/v1/jobs/{queued}/cancel", headers=trader)

    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "cancelled"
    # One worker takes jobs in order: once a job queued after it has run, the cancelled one
    # has been taken off the queue, and would have run by then if it were going to.
    later = api.client.portal.call(services.submit_job, "sweep", {"tally": str(later_tally)})  # type: ignore[union-attr]
    ended, _ = _watch(api, later["id"], lambda job, _: job["finished_at"])
    assert ended["status"] == "finished"
    assert later_tally.read_text().splitlines() == ["ran"]
    assert not cancelled_tally.exists()
    never = api.client.get(f"/api/v1/jobs/{queued}", headers=trader).json()
    assert (never["status"], never["started_at"], never["result"]) == ("cancelled", None, None)


def test_cancel_when_job_ended_then_409_and_when_unknown_then_404(jobs_api, monkeypatch):
    api = jobs_api
    jobwork.use(monkeypatch, "backtest", "instant")
    trader = api.headers("trader")
    job = api.client.portal.call(api.services.submit_job, "backtest", {})  # type: ignore[union-attr]
    _watch(api, job["id"], lambda job, _: job["status"] == "finished")

    ended = api.client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=trader)
    unknown = api.client.post(f"/api/v1/jobs/{'0' * 32}/cancel", headers=trader)
    viewer = api.client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=api.headers("viewer"))

    assert ended.status_code == 409, ended.text
    assert "has already ended (finished)" in ended.json()["detail"]
    assert unknown.status_code == 404, unknown.text
    assert viewer.status_code == 403
    again = api.client.get(f"/api/v1/jobs/{job['id']}", headers=trader).json()
    assert again["status"] == "finished"


def test_cancel_from_cli_when_job_runs_here_then_its_process_ends_at_next_heartbeat(
    jobs_api, monkeypatch
):
    from typer.testing import CliRunner

    from ffe.cli.app import app

    api = jobs_api
    heartbeat_s = api.settings.jobs.heartbeat_s
    jobwork.use(monkeypatch, "backtest", "stubborn")  # one call of a minute, never looking up
    before = _descendants()
    job = api.client.portal.call(api.services.submit_job, "backtest", {"sleep_s": 60})  # type: ignore[union-attr]
    _, seen = _watch(api, job["id"], lambda job, _: job["progress"] >= 0.5)

    cancelled = CliRunner().invoke(app, ["jobs", "cancel", job["id"][:12]])

    assert cancelled.exit_code == 0, cancelled.output
    job_processes = (seen | _descendants()) - before
    assert len(job_processes) >= 1
    assert _gone_within(job_processes, heartbeat_s + 5.0) == set()
    stored = api.client.get(f"/api/v1/jobs/{job['id']}", headers=api.headers()).json()
    assert stored["status"] == "cancelled"
    assert stored["error"].startswith("cancelled by cli:")
