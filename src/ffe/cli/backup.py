"""``ffe backup`` and ``ffe restore``, and the work behind ``ffe db copy``.

Nothing heavy is imported at module level: ``ffe --help`` loads this file."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ffe.cli.common import URL, console, err_console, user_errors, with_database

if TYPE_CHECKING:
    from ffe.store.copy import CopyReport
    from ffe.store.database import Database

EXIT_MISMATCH = 1
JSON = typer.Option(False, "--json", help="Print JSON.")


def backup_command(
    url: str | None = URL,
    directory: Path | None = typer.Option(
        None,
        "--dir",
        help="Where backups go [config: database.backup_dir; default backups/ in data.dir].",
    ),
    keep: int | None = typer.Option(
        None, "--keep", min=1, help="Keep the newest N backups [config: database.backup_keep]."
    ),
    as_json: bool = JSON,
) -> None:
    """Back up the journal, keeping the newest N backups.

    SQLite: an online copy of the file (safe while ffe writes to it). PostgreSQL: pg_dump
    (needs the PostgreSQL client tools). Beside each backup goes a manifest with every
    table's row count and checksum, which `ffe restore` checks."""
    with user_errors():
        from ffe.config import load_settings
        from ffe.store.backup import backup, backup_stem, list_backups

        settings = load_settings()
        folder = directory or settings.database.backup_dir or settings.data.dir / "backups"
        kept = keep or settings.database.backup_keep

        async def work(db: Database) -> tuple[Path, str, list[Path]]:
            made = await backup(db, folder, kept)
            return made, str(db), list_backups(folder, backup_stem(db), made.suffix[1:])

        made, where, backups = with_database(url, work)
        manifest = json.loads(made.with_name(f"{made.name}.json").read_text(encoding="utf-8"))
        rows = sum(table["rows"] for table in manifest["tables"].values())
        if as_json:
            typer.echo(
                json.dumps({"backup": str(made), "kept": [str(p) for p in backups], **manifest})
            )
            return
        console.print(
            f"backed up {where} to {made} ({rows:,} rows in {len(manifest['tables'])} tables, "
            f"{made.stat().st_size / 1e6:,.1f} MB, schema {manifest['revision']})",
            highlight=False,
        )
        console.print(f"backups of it in {folder}: {len(backups)} (keeping the newest {kept})")


def restore_command(
    path: Path = typer.Argument(..., help="A backup made by `ffe backup` (its .json beside it)."),
    url: str | None = URL,
    force: bool = typer.Option(
        False, "--force", help="Replace a database that already holds a journal."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    as_json: bool = JSON,
) -> None:
    """Restore the journal from a backup made by `ffe backup`.

    The backup is checked against its manifest before anything changes; the restored database
    is verified (integrity, schema, rows and checksums per table) and the restore recorded in
    the audit log. Stop every ffe process using the database first."""
    with user_errors():
        from ffe.config import load_settings
        from ffe.store.backup import RestoreReport, restore
        from ffe.store.database import mask

        where = mask(url or load_settings().database_url())
        if not yes and not typer.confirm(f"Replace the journal in {where} with {path.name}?"):
            raise typer.Exit(1)

        async def work(db: Database) -> RestoreReport:
            return await restore(db, path, force=force, actor=f"cli:{_user()}")

        report = with_database(url, work)
        if as_json:
            typer.echo(json.dumps(report.as_dict()))
            return
        console.print(
            f"restored {report.backup} into {report.database}: {sum(report.rows.values()):,} rows "
            f"in {len(report.rows)} tables verified against the manifest",
            highlight=False,
        )
        if report.revision != report.head:
            console.print(
                f"schema at {report.revision}, ffe expects {report.head}: run `ffe db upgrade`"
            )


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (some containers)
        return "unknown"


# --- ffe db copy ---------------------------------------------------------------------------


def copy_journal(
    source: str | None, target: str, *, batch_size: int, overwrite: bool, as_json: bool
) -> None:
    """Copy, show progress on stderr, print the per-table summary; exit 1 on a mismatch."""
    import asyncio

    from rich.progress import Progress

    from ffe import bootstrap
    from ffe.config import load_settings
    from ffe.store.copy import VerificationError, copy_database

    settings = load_settings()
    progress = Progress(console=err_console, disable=as_json, transient=False)
    tasks: dict[str, Any] = {}

    def advance(table: str, done: int, total: int) -> None:
        if table not in tasks:
            tasks[table] = progress.add_task(table)
        # An empty table is complete at once (rich shows 0% for a total of 0).
        progress.update(tasks[table], completed=done if total else 1, total=total or 1)

    async def main() -> CopyReport:
        async with (
            bootstrap.database(settings, source) as reading,
            bootstrap.database(settings, target) as writing,
        ):
            return await copy_database(
                reading, writing, batch_size=batch_size, overwrite=overwrite, on_progress=advance
            )

    try:
        with progress:
            report = asyncio.run(main())
    except VerificationError as exc:
        _print_copy(exc.report, as_json)
        err_console.print(f"[red]verification failed:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_MISMATCH) from None
    _print_copy(report, as_json)


def _print_copy(report: CopyReport, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
        return
    from rich.table import Table

    table = Table(title=f"{report.source} -> {report.target} (schema {report.revision})")
    for column in ("table", "rows", "copied", "skipped", "overwritten"):
        table.add_column(column, justify="left" if column == "table" else "right")
    table.add_column("checksum")
    table.add_column("verified")
    for row in report.tables:
        table.add_row(
            row.table,
            f"{row.target.rows:,}",
            f"{row.copied:,}",
            f"{row.skipped:,}",
            f"{row.overwritten:,}",
            row.target.checksum[:12],
            "[green]ok[/green]"
            if row.ok
            else f"[red]differs ({row.source.rows:,} in source)[/red]",
        )
    console.print(table)
    if report.ok:
        copied = sum(row.copied for row in report.tables)
        console.print(f"copied {copied:,} rows; every table verified", highlight=False)
