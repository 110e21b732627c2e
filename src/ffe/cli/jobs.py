"""``ffe jobs``: the API's background jobs (backtests, sweeps, forecast benchmarks) in the
journal: list, show, cancel."""

from __future__ import annotations

import getpass
import json
from typing import TYPE_CHECKING

import typer

from ffe.cli.common import URL, console, user_errors, with_database

if TYPE_CHECKING:
    from ffe.store.database import Database
    from ffe.store.models import Job

jobs_app = typer.Typer(
    help="Background jobs run by the API: list, show, cancel.", no_args_is_help=True
)
JSON = typer.Option(False, "--json", help="Print JSON.")
JOB_ID = typer.Argument(..., help="Job id (or a unique prefix of it), from `ffe jobs list`.")


@jobs_app.command("list")
def list_jobs(
    kind: str | None = typer.Option(None, "--kind", help="backtest, sweep or forecast_bench."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="Newest N jobs."),
    url: str | None = URL,
    as_json: bool = JSON,
) -> None:
    """List jobs, newest first."""
    with user_errors():
        from sqlalchemy import select

        from ffe.api.jobs import job_dict
        from ffe.store.models import Job

        async def work(db: Database) -> list[Job]:
            query = select(Job).order_by(Job.created_at.desc(), Job.id).limit(limit)
            if kind is not None:
                query = query.where(Job.kind == kind)
            async with db.session() as session:
                return list((await session.scalars(query)).all())

        jobs = with_database(url, work, journal=True)
        if as_json:
            typer.echo(json.dumps([job_dict(job) for job in jobs], indent=2, default=str))
            return
        _print_jobs(jobs)


def _print_jobs(jobs: list[Job]) -> None:
    from rich import box
    from rich.table import Table

    if not jobs:
        console.print("no jobs yet: the API runs them (POST /api/v1/backtests, /sweeps)")
        return
    table = Table(title=f"{len(jobs)} newest jobs", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", no_wrap=True, min_width=32)  # never cut: it is what users type next
    for column in ("kind", "status", "progress", "created"):
        table.add_column(column, no_wrap=True)
    table.add_column("error", overflow="fold", ratio=1)
    for job in jobs:
        table.add_row(
            job.id,
            job.kind,
            job.status,
            f"{job.progress:.0%}",
            f"{job.created_at:%Y-%m-%d %H:%M:%S}",
            job.error or "",
        )
    console.print(table)


@jobs_app.command("show")
def show(job_id: str = JOB_ID, url: str | None = URL) -> None:
    """Print a job as JSON: status, progress, error and result."""
    with user_errors():
        from ffe.api.jobs import job_dict
        from ffe.store.models import Job

        async def work(db: Database) -> Job:
            job_id_found = await _resolve(db, job_id)
            async with db.session() as session:
                return await session.get_one(Job, job_id_found)

        typer.echo(json.dumps(job_dict(with_database(url, work, journal=True)), indent=2))


@jobs_app.command("cancel")
def cancel(job_id: str = JOB_ID, url: str | None = URL) -> None:
    """Cancel a queued or running job. A queued one never runs; a running one is ended, with
    its processes, by the server running it within a few seconds (its next heartbeat)."""
    with user_errors():
        from ffe.api.jobstop import cancel_job

        async def work(db: Database) -> Job:
            return await cancel_job(db, await _resolve(db, job_id), f"cancelled by cli:{_user()}")

        job = with_database(url, work, journal=True)
        console.print(f"job {job.id} ({job.kind}) cancelled")


async def _resolve(db: Database, prefix: str) -> str:
    """The id of the one job whose id starts with ``prefix``."""
    from sqlalchemy import select

    from ffe.api.jobstop import JobNotFoundError
    from ffe.domain.errors import ConfigError
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
