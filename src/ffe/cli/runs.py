"""``ffe runs``: recorded backtest, paper and live runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ffe.cli.common import URL, console, format_stat, user_errors, with_database

if TYPE_CHECKING:
    from ffe.runs.journal import StoredBacktest
    from ffe.store.database import Database
    from ffe.store.models import Run

runs_app = typer.Typer(help="Recorded runs: list, inspect, compare, report.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print JSON.")


@runs_app.command("list")
def list_runs(
    kind: str | None = typer.Option(None, "--kind", help="backtest, paper or live."),
    strategy: str | None = typer.Option(None, "--strategy", help="Only this strategy."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="Newest N runs."),
    url: str | None = URL,
    as_json: bool = JSON,
) -> None:
    """List recorded runs, newest first."""
    with user_errors():
        from ffe.service.runs import list_runs

        async def work(db: Database) -> list[Run]:
            return await list_runs(db, kind=kind, strategy=strategy, limit=limit)

        runs = with_database(url, work, journal=True)
        if as_json:
            from ffe.runs.journal import run_summary

            typer.echo(json.dumps([run_summary(r) for r in runs], indent=2))
            return
        _print_runs(runs)


def _narrow() -> dict[str, Any]:
    """A table without a frame or edge padding, one space between columns: the most text an
    80-column terminal can show."""
    from rich import box

    return {"box": box.SIMPLE_HEAD, "pad_edge": False, "show_edge": False, "collapse_padding": True}


def _print_runs(runs: list[Run]) -> None:
    from rich.table import Table

    if not runs:
        console.print("no runs recorded yet: `ffe backtest run` records one")
        return
    # Fits 80 columns: the run's name and parameters wrap at spaces, the figures never do.
    table = Table(title=f"{len(runs)} newest runs", **_narrow())
    table.add_column("id", no_wrap=True)  # never cut: it is what users type next
    table.add_column("started", no_wrap=True)
    table.add_column("strategy", overflow="fold")
    table.add_column("symbols", overflow="fold")
    for name in ("return", "sharpe", "trades"):
        table.add_column(name, justify="right", no_wrap=True)
    for run in runs:
        stats = run.stats or {}
        label = run.strategy if run.kind == "backtest" else f"{run.kind} {run.strategy}"
        if run.status != "finished":
            label += f" ({run.status})"
        table.add_row(
            run.id[:8],
            f"{run.started_at:%Y-%m-%d}",
            " ".join([label, *(f"{k}={v}" for k, v in run.params.items())]),
            " ".join(run.symbols),
            format_stat("total_return", stats.get("total_return")),
            format_stat("sharpe", stats.get("sharpe")),
            format_stat("n_trades", stats.get("n_trades")),
        )
    console.print(table)


@runs_app.command("show")
def show(
    run_id: str = typer.Argument(..., help="Run id, or a unique prefix of one (>= 4 chars)."),
    trades: bool = typer.Option(False, "--trades", help="Also list the trades."),
    url: str | None = URL,
    as_json: bool = JSON,
) -> None:
    """Show one run: what ran, on which data and code, and its statistics."""
    with user_errors():
        stored = _load(url, run_id, curves=trades or as_json)
        if as_json:
            typer.echo(json.dumps(_stored_dict(stored), indent=2))
            return
        _print_run(stored, with_trades=trades)


def _load(url: str | None, run_id: str, *, curves: bool) -> StoredBacktest:
    from ffe.service.runs import load_run

    async def work(db: Database) -> StoredBacktest:
        return await load_run(db, run_id, curves=curves)

    return with_database(url, work, journal=True)


def _stored_dict(stored: StoredBacktest) -> dict[str, Any]:
    from ffe.backtest.result import trade_dict
    from ffe.runs.journal import run_summary

    return {
        **run_summary(stored.run),
        "trades": [trade_dict(t) for t in stored.trades],
        "equity": {
            "times": [str(t) + "Z" for t in stored.times.astype("datetime64[s]")],
            "values": stored.equity.tolist(),
        },
    }


def _print_run(stored: StoredBacktest, *, with_trades: bool) -> None:
    from rich.table import Table

    run = stored.run
    table = Table(title=f"run {run.id}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = {
        "kind": run.kind,
        "strategy": f"{run.strategy} {json.dumps(run.params)}",
        "symbols": f"{', '.join(run.symbols)} ({run.timeframe})",
        "status": run.status + (f": {run.error}" if run.error else ""),
        "started": f"{run.started_at:%Y-%m-%d %H:%M:%S} UTC",
        "code": run.code_version,
        "data": (run.data_fingerprint or "-")[:16],
    }
    for name, value in rows.items():
        table.add_row(name, value)
    stats = dict(run.stats or {})
    warnings = stats.pop("warnings", [])
    for name, value in stats.items():
        table.add_row(name.replace("_", " "), format_stat(name, value))
    console.print(table)
    for warning in warnings:
        console.print(f"[bold yellow]warning:[/bold yellow] {warning}")
    if with_trades:
        _print_trades(stored)


def _print_trades(stored: StoredBacktest) -> None:
    from rich.table import Table

    # Fits 80 columns: prices to the cent (4 significant digits under 1), no frame.
    table = Table(title=f"{len(stored.trades)} trades", **_narrow())
    table.add_column("symbol", overflow="fold")
    for column in ("side", "entry", "exit", "in at", "out at", "size", "P&L"):
        table.add_column(column, justify="right", no_wrap=True)
    for t in stored.trades:
        table.add_row(
            t.symbol,
            t.direction,
            f"{t.entry_time:%Y-%m-%d}",
            f"{t.exit_time:%Y-%m-%d}",
            _price(t.entry_price),
            _price(t.exit_price),
            f"{abs(t.quantity):,.4g}",
            f"{t.pnl:,.2f}",
        )
    console.print(table)


def _price(value: float) -> str:
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4g}"


@runs_app.command("compare")
def compare(
    first: str = typer.Argument(..., help="Run id (or prefix)."),
    second: str = typer.Argument(..., help="Run id (or prefix)."),
    url: str | None = URL,
    as_json: bool = JSON,
) -> None:
    """Put two runs side by side: parameters, data, code and every statistic."""
    with user_errors():
        from ffe.service.runs import compare as compare_runs

        async def work(db: Database) -> tuple[Run, Run, dict[str, Any]]:
            return await compare_runs(db, first, second)

        a, b, comparison = with_database(url, work, journal=True)
        if as_json:
            typer.echo(json.dumps(comparison, indent=2))
            return
        _print_comparison(a, b, comparison)


def _print_comparison(a: Run, b: Run, comparison: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"{a.id[:8]} vs {b.id[:8]}")
    table.add_column("")
    table.add_column(a.id[:8], justify="right")
    table.add_column(b.id[:8], justify="right")
    table.add_column("b - a", justify="right")
    table.add_row("strategy", a.strategy, b.strategy, "")
    table.add_row("params", json.dumps(a.params), json.dumps(b.params), "")
    table.add_row("symbols", ", ".join(a.symbols), ", ".join(b.symbols), "")
    for label, key in (("same data", "same_data"), ("same code", "same_code")):
        table.add_row(label, "", "", "yes" if comparison[key] else "[yellow]no[/yellow]")
    for name, row in comparison["stats"].items():
        diff = row["diff"]
        shown = "" if diff is None else format_stat(name, diff)
        table.add_row(
            name.replace("_", " "), format_stat(name, row["a"]), format_stat(name, row["b"]), shown
        )
    console.print(table)


@runs_app.command("report")
def report(
    run_id: str = typer.Argument(..., help="Run id (or prefix)."),
    output: Path = typer.Option(..., "--output", "-o", help="Write the HTML report here."),
    url: str | None = URL,
) -> None:
    """Draw a recorded backtest's HTML report again, from the journal alone."""
    with user_errors():
        from ffe.backtest.html import write_report
        from ffe.service.runs import report_html

        async def work(db: Database) -> str:
            return await report_html(db, run_id)

        write_report(output, with_database(url, work, journal=True))
        console.print(f"report written to [bold]{output}[/bold]")
