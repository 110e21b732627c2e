"""``ffe jobs``: the background jobs (backtests, sweeps, forecast benchmarks) in the journal:
list, show, cancel. ``ffe worker`` runs them."""

from __future__ import annotations

import getpass
import json
from typing import TYPE_CHECKING, Any

import typer

from ffe.cli.common import URL, console, user_errors, with_database

if TYPE_CHECKING:
    from ffe.service.jobs.queue import JobQueue
    from ffe.store.database import Database
    from ffe.store.models import Job

jobs_app = typer.Typer(
    help="Background jobs (run by `ffe worker`): list, show, cancel.", no_args_is_help=True
)
JSON = typer.Option(False, "--json", help="Print JSON.")
JOB_ID = typer.Argument(..., help="Job id (or a unique prefix of it), from `ffe jobs list`.")


@jobs_app.command("list")
def list_jobs(
    kind: str | None = typer.Option(
        None, "--kind", help="backtest, sweep, forecast_bench or tune."
    ),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="Newest N jobs."),
    url: str | None = URL,
    as_json: bool = JSON,
) -> None:
    """List jobs, newest first."""
    with user_errors():

        async def work(db: Database) -> list[dict[str, Any]]:
            queue = _queue(db)
            jobs, _ = await queue.list(kind, limit, 0)
            return await queue.describe(jobs)

        jobs = with_database(url, work, journal=True)
        if as_json:
            typer.echo(json.dumps(jobs, indent=2, default=str))
            return
        _print_jobs(jobs)


def _queue(db: Database) -> JobQueue:
    from ffe import bootstrap
    from ffe.config import load_settings
    from ffe.service.jobs.queue import JobQueue

    return JobQueue(db, bootstrap.queue_policy(load_settings()))


def _print_jobs(jobs: list[dict[str, Any]]) -> None:
    from rich import box
    from rich.table import Table

    if not jobs:
        console.print("no jobs yet: submit them through the API (POST /api/v1/backtests, /sweeps)")
        return
    table = Table(title=f"{len(jobs)} newest jobs", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", no_wrap=True, min_width=32)  # never cut: it is what users type next
    for column in ("kind", "status", "progress", "created"):
        table.add_column(column, no_wrap=True)
    table.add_column("error", overflow="fold", ratio=1)
    for job in jobs:
        table.add_row(
            job["id"],
            job["kind"],
            job["status"],
            f"{job['progress']:.0%}",
            job["created_at"][:19].replace("T", " "),
            job["waiting"] or job["error"] or "",
        )
    console.print(table)
    if any(job["waiting"] for job in jobs):
        console.print("queued jobs wait for a worker: start one with `ffe worker`")


@jobs_app.command("show")
def show(job_id: str = JOB_ID, url: str | None = URL) -> None:
    """Print a job as JSON: status, progress, error and result."""
    with user_errors():

        async def work(db: Database) -> dict[str, Any]:
            queue = _queue(db)
            found = await queue.describe([await queue.get(await _resolve(db, job_id))])
            return found[0]

        typer.echo(json.dumps(with_database(url, work, journal=True), indent=2))


@jobs_app.command("cancel")
def cancel(job_id: str = JOB_ID, url: str | None = URL) -> None:
    """Cancel a queued or running job. A queued one never runs; a running one is ended, with
    its processes, by the server running it within a few seconds (its next heartbeat)."""
    with user_errors():
        from ffe.service.jobs.stop import cancel_job

        async def work(db: Database) -> Job:
            return await cancel_job(db, await _resolve(db, job_id), f"cancelled by cli:{_user()}")

        job = with_database(url, work, journal=True)
        console.print(f"job {job.id} ({job.kind}) cancelled")


async def _resolve(db: Database, prefix: str) -> str:
    """The id of the one job whose id starts with ``prefix``."""
    from sqlalchemy import select

    from ffe.domain.errors import ConfigError
    from ffe.service.jobs.stop import JobNotFoundError
    from ffe.store.models import Job

    query = select(Job.id).where(Job.id.startswith(prefix.lower(), autoescape=True)).limit(2)
    async with db.session() as session:
        found = list((await session.scalars(query)).all())
    if not found:
        raise JobNotFoundError(f"no job {prefix!r}: `ffe jobs list` shows them")
    if len(found) > 1:
        raise ConfigError(f"more than one job starts with {prefix!r}: give more of the id")
    return found[0]


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return "unknown"
