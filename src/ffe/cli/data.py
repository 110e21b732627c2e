"""``ffe data``: import bar files into the data catalog and list what it holds.

Heavy modules (pandas, numpy, arch, the settings) are imported inside the commands, so that
``ffe --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from datetime import datetime

    from rich.table import Table

    from ffe.data import CatalogEntry, DataCatalog

# Operator errors (bad data, bad settings) exit with 2, like a usage error: fix the input.
EXIT_BAD_INPUT = 2

data_app = typer.Typer(
    help="Import market data (CSV or Parquet) and list the symbols available.",
    no_args_is_help=True,
)


@data_app.command("import")
def import_bars(
    path: Annotated[Path, typer.Argument(help="CSV or Parquet file of bars.", show_default=False)],
    symbol: Annotated[
        str,
        typer.Option("--symbol", "-s", help="Name to store the bars under, like AAPL or BTC/USDT."),
    ],
    timeframe: Annotated[
        str, typer.Option("--timeframe", "-t", help="Bar length: 1d, 4h, 15m, ...")
    ] = "1d",
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite a symbol imported before.")
    ] = False,
) -> None:
    """Validate a file of bars fully, then add it to the data catalog as --symbol."""
    from ffe.domain import FfeError

    try:
        summary = _catalog().import_file(path, symbol, timeframe, replace=replace)
    except FfeError as exc:
        _fail(exc)
    typer.echo(str(summary))


@data_app.command("list")
def list_bars(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list instead of a table.")
    ] = False,
) -> None:
    """List every symbol available: the bundled datasets and your imports."""
    from ffe.domain import FfeError

    try:
        entries = _catalog().list_entries()
    except FfeError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps([_as_json(entry) for entry in entries], indent=2))
        return
    from rich.console import Console

    Console().print(_table(entries))


def _catalog() -> DataCatalog:
    from ffe.config import load_settings
    from ffe.data import DataCatalog

    return DataCatalog(load_settings().data.dir)


def _fail(exc: Exception) -> NoReturn:
    from rich.console import Console
    from rich.text import Text

    # soft_wrap keeps file:line: message on one line, whatever the terminal width.
    Console(stderr=True).print(Text(f"error: {exc}", style="red"), soft_wrap=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def _table(entries: list[CatalogEntry]) -> Table:
    from rich.table import Table

    table = Table(title="Market data")
    for header in ("symbol", "timeframe", "first bar", "last bar"):
        table.add_column(header)
    table.add_column("bars", justify="right")
    table.add_column("source")
    for entry in entries:
        table.add_row(
            entry.symbol,
            str(entry.timeframe),
            _when(entry.first),
            _when(entry.last),
            f"{entry.count:,}",
            entry.source,
        )
    return table


def _when(moment: datetime) -> str:
    midnight = moment.hour == moment.minute == moment.second == 0
    return moment.strftime("%Y-%m-%d" if midnight else "%Y-%m-%d %H:%M")


def _as_json(entry: CatalogEntry) -> dict[str, Any]:
    return {
        "symbol": entry.symbol,
        "timeframe": str(entry.timeframe),
        "first": entry.first.isoformat(),
        "last": entry.last.isoformat(),
        "count": entry.count,
        "source": entry.source,
        "source_file": entry.source_file,
        "imported_at": None if entry.imported_at is None else entry.imported_at.isoformat(),
    }
