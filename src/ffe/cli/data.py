"""``ffe data``: import bar files into the data catalog, fetch bars from a venue into it, and
list what it holds.

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

    import pandas as pd
    from rich.table import Table

    from ffe.config import Settings
    from ffe.data import CatalogEntry, DataCatalog
    from ffe.data.fetching import FetchSummary
    from ffe.data.kalshi import RecordedMarket
    from ffe.domain import Timeframe

# Operator errors (bad data, bad settings) exit with 2, like a usage error: fix the input.
EXIT_BAD_INPUT = 2
# The venue is down or limiting requests: the same command may work later.
EXIT_UNAVAILABLE = 1

data_app = typer.Typer(
    help="Import market data (CSV or Parquet), fetch it from a venue, and list the symbols "
    "available.",
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


@data_app.command("fetch")
def fetch_bars(
    source: Annotated[
        str,
        typer.Option(
            "--source",
            help="Where from: ccxt:<exchange> (ccxt:binance), alphavantage, oanda or kalshi "
            "(a market's bars and its settlement).",
        ),
    ],
    symbol: Annotated[
        str, typer.Option("--symbol", "-s", help="The venue's symbol: BTC/USDT, AAPL, EUR_USD.")
    ],
    since: Annotated[str, typer.Option("--since", help="First bar time (UTC), like 2024-01-01.")],
    timeframe: Annotated[
        str, typer.Option("--timeframe", "-t", help="Bar length: 1d, 1h, 15m, ...")
    ] = "1d",
    until: Annotated[
        str | None,
        typer.Option("--until", help="Fetch bars that start before this time (default: now)."),
    ] = None,
    api_url: Annotated[
        str | None,
        typer.Option(
            "--api-url",
            help="The source's public REST base URL [config: data.ccxt_urls, "
            "data.alpha_vantage_url, data.oanda_url].",
        ),
    ] = None,
    store_as: Annotated[
        str | None,
        typer.Option("--as", help="Name to store the bars under (default: --symbol)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Fetch closed bars from a venue into the data catalog: only the ones it lacks, so
    running it again carries on where the last run stopped."""
    from ffe.data.feed import FeedUnavailableError
    from ffe.domain import FfeError

    try:
        summary = _fetch(source, symbol, timeframe, since, until, api_url, store_as, quiet)
    except FeedUnavailableError as exc:
        _fail(exc, EXIT_UNAVAILABLE)
    except FfeError as exc:
        _fail(exc)
    typer.echo(str(summary))


def _fetch(
    source: str,
    symbol: str,
    timeframe: str,
    since: str,
    until: str | None,
    api_url: str | None,
    store_as: str | None,
    quiet: bool,
) -> FetchSummary | RecordedMarket:
    import asyncio

    from ffe import bootstrap
    from ffe.bootstrap.feeds import open_feed
    from ffe.cli.common import ProgressBar
    from ffe.config import load_settings
    from ffe.data.fetching import fetch_into_catalog, parse_time
    from ffe.domain import Timeframe

    settings = load_settings()
    frame = Timeframe.parse(timeframe)
    start = parse_time(since, "--since")
    end = None if until is None else parse_time(until, "--until")
    catalog = bootstrap.data_catalog(settings)
    if source.strip().lower() == "kalshi":
        return _record_kalshi(settings, catalog, symbol, frame, start, api_url)

    async def run() -> FetchSummary:
        feed = open_feed(settings, source, api_url)
        try:
            with ProgressBar(quiet=quiet, description=f"{symbol} {frame} bars") as progress:
                return await fetch_into_catalog(
                    catalog, feed, symbol, frame, start, end, store_as=store_as, progress=progress
                )
        finally:
            await feed.close()

    return asyncio.run(run())


def _record_kalshi(
    settings: Settings,
    catalog: DataCatalog,
    ticker: str,
    frame: Timeframe,
    start: pd.Timestamp,
    api_url: str | None,
) -> RecordedMarket:
    """A Kalshi market's bars from ``start`` and its contract (event, close, result), which
    backtests and the paper agent settle at."""
    import asyncio

    from ffe.bootstrap.venues import kalshi_feed
    from ffe.data.kalshi import record_market

    async def run() -> RecordedMarket:
        feed = kalshi_feed(settings, api_url)
        try:
            return await record_market(catalog, feed, ticker, frame, since=start, replace=True)
        finally:
            await feed.close()

    return asyncio.run(run())


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


def _fail(exc: Exception, code: int = EXIT_BAD_INPUT) -> NoReturn:
    from rich.console import Console
    from rich.text import Text

    # soft_wrap keeps file:line: message on one line, whatever the terminal width.
    Console(stderr=True).print(Text(f"error: {exc}", style="red"), soft_wrap=True)
    raise typer.Exit(code)


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
