"""``ffe db``: the journal's schema (migrations) and health."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

from ffe.cli.backup import copy_journal
from ffe.cli.common import URL, console, err_console, user_errors, with_database

if TYPE_CHECKING:
    from ffe.store.database import Database

db_app = typer.Typer(help="The journal database: migrations and checks.", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade(
    revision: str = typer.Argument("head", help="Target revision."), url: str | None = URL
) -> None:
    """Migrate the schema up to REVISION (default: the newest)."""
    with user_errors():
        from ffe.store import migrate

        async def work(db: Database) -> tuple[str | None, str | None]:
            return await migrate.current(db), await migrate.upgrade(db, revision)

        before, after = with_database(url, work)
        where = _where(url)
        if before == after:
            console.print(f"{where}: already at {after}, nothing to do")
        else:
            console.print(f"{where}: upgraded from {before or 'empty'} to {after}")


@db_app.command("downgrade")
def downgrade(
    revision: str = typer.Argument(..., help="Target revision, or 'base' to drop every table."),
    url: str | None = URL,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before dropping data."),
) -> None:
    """Migrate the schema down to REVISION. Downgrades can drop tables and their rows."""
    with user_errors():
        from ffe.store import migrate

        where = _where(url)
        if not yes and not typer.confirm(
            f"Downgrade {where} to {revision}? Tables (and their rows) may be dropped."
        ):
            raise typer.Exit(1)

        async def work(db: Database) -> str | None:
            return await migrate.downgrade(db, revision)

        console.print(f"{where}: now at {with_database(url, work) or 'base (empty)'}")


@db_app.command("current")
def current(
    url: str | None = URL, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """Print the revision the database is at, and whether that is the newest."""
    with user_errors():
        from ffe.store import migrate

        async def work(db: Database) -> str | None:
            return await migrate.current(db)

        at, head = with_database(url, work), migrate.head()
        if as_json:
            typer.echo(json.dumps({"database": _where(url), "current": at, "head": head}))
            return
        state = "up to date" if at == head else "behind: run `ffe db upgrade`"
        console.print(f"{_where(url)}: {at or 'empty (no revision)'} (head {head}, {state})")


@db_app.command("history")
def history(url: str | None = URL) -> None:
    """List every migration, newest first, marking the database's current one."""
    with user_errors():
        from rich.table import Table

        from ffe.store import migrate

        revisions = with_database(url, migrate.history)
        table = Table(title="migrations, newest first")
        for column in ("revision", "down from", "", "description"):
            table.add_column(column)
        for rev in revisions:
            marks = " ".join(
                m for m, on in (("head", rev.is_head), ("current", rev.is_current)) if on
            )
            table.add_row(rev.id, rev.down or "-", marks, rev.message.splitlines()[0])
        console.print(table)


@db_app.command("check")
def check(url: str | None = URL) -> None:
    """Check the database: reachable, migrated, and its own integrity checks clean."""
    with user_errors():
        from ffe.store import migrate

        async def work(db: Database) -> tuple[list[str], str | None]:
            return await db.integrity_problems(), await migrate.current(db)

        problems, at = with_database(url, work)
        head = migrate.head()
        if at != head:
            problems.append(f"schema at {at or 'none'}, expected {head}: run `ffe db upgrade`")
        if problems:
            for problem in problems:
                err_console.print(f"[red]problem:[/red] {problem}", highlight=False)
            raise typer.Exit(1)
        console.print(f"{_where(url)}: ok (schema {head}, integrity check clean)")


@db_app.command("copy")
def copy(
    source: str | None = typer.Option(
        None, "--from", help="Database to copy from [default: the configured one]."
    ),
    target: str = typer.Option(..., "--to", help="Database to copy into (migrated if empty)."),
    batch_size: int = typer.Option(5000, "--batch-size", min=1, help="Rows per batch."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace target rows that differ from the source's."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Copy the journal into another database (SQLite or PostgreSQL) and verify it.

    Every table is copied with its ids, then each table's row count and checksum compared on
    both sides. Running it again copies only what is missing."""
    with user_errors():
        copy_journal(source, target, batch_size=batch_size, overwrite=overwrite, as_json=as_json)


def _where(url: str | None) -> str:
    from ffe.config import load_settings
    from ffe.store.database import mask

    return mask(url or load_settings().database_url())
