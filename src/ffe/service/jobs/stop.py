"""How jobs end early: cancelled by a person, stopped at the time limit of their kind, given up
after their workers died too often, or handed back to the queue by a worker that stops."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import update

from ffe.domain.errors import ConflictError, NotFoundError
from ffe.store.database import Database
from ffe.store.models import Job

ACTIVE = ("queued", "running")  # the states a job can be cancelled in
STOPPED = "stopped: the server shut down"  # the error of a job ended by the API's shutdown
HANDED_BACK = "handed back: its worker stopped"  # why a job went back to the queue (logs)
NO_WORKER = "queued: no worker is running"  # what a queued job says while no worker is alive


class JobNotFoundError(NotFoundError):
    """No job has the id given."""


class JobEndedError(ConflictError):
    """The job has already ended, so it cannot be cancelled."""


def time_limit_error(kind: str, limit_s: float) -> str:
    """What a job stopped at its kind's time limit records as its error."""
    setting = f"jobs.time_limit_s.{kind}"
    variable = "FFE__" + setting.upper().replace(".", "__")
    return (
        f"time limit: the {kind} job ran for {limit_s:g} s, its limit, and was stopped; "
        f"to allow longer, raise {setting} (environment: {variable})"
    )


def interrupted_error(attempts: int, max_attempts: int) -> str:
    """What a job records when its workers died under it ``attempts`` times, as many as
    ``jobs.max_attempts`` (``max_attempts``) allows."""
    times = "once" if attempts == 1 else f"{attempts} times"
    return (
        f"interrupted: the process running it stopped {times} (jobs.max_attempts is "
        f"{max_attempts}); the job may need more memory or time than its workers have: submit "
        "it again, smaller, or raise jobs.max_attempts (environment: FFE__JOBS__MAX_ATTEMPTS)"
    )


async def cancel_job(db: Database, job_id: str, error: str) -> Job:
    """Record a queued or running job cancelled with ``error`` (the process running it ends
    it when it next beats); ``JobNotFoundError``, or ``JobEndedError`` if it had ended."""
    async with db.session() as session:
        ended = await session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.in_(ACTIVE))
            .values(status="cancelled", error=error, finished_at=datetime.now(UTC))
        )
        job = await session.get(Job, job_id)
    if job is None:
        raise JobNotFoundError(f"no job {job_id!r}: list the jobs with GET /api/v1/jobs")
    if ended.rowcount != 1:  # type: ignore[attr-defined]
        raise JobEndedError(
            f"job {job_id} has already ended ({job.status}); only queued or running jobs "
            "can be cancelled"
        )
    return job
