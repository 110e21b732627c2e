"""``ffe backtest``: run one backtest, or sweep a parameter grid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ffe.cli.common import (
    EXECUTOR,
    JOBS,
    RAY_ADDRESS,
    STRATEGY_HELP,
    ProgressBar,
    compute_overrides,
    console,
    err_console,
    format_stat,
    parse_params,
    user_errors,
)
from ffe.domain.defaults import DEFAULTS

if TYPE_CHECKING:
    from ffe.backtest.objective import Direction
    from ffe.backtest.result import BacktestResult
    from ffe.backtest.walkforward import WalkForwardResult
    from ffe.service.backtests import BacktestOutcome
    from ffe.service.markets import MarketSpec

backtest_app = typer.Typer(
    help="Backtest strategies on bundled, imported or synthetic bars.", no_args_is_help=True
)

STRATEGY = typer.Option("sma_cross", "--strategy", "-s", help=STRATEGY_HELP)
SYMBOLS = typer.Option(["SP500"], "--symbol", help="Symbol to trade; repeat for several.")
SYNTHETIC = typer.Option(0, "--synthetic", help="Trade N synthetic symbols instead.", min=0)
BARS = typer.Option(2520, "--bars", help="Bars per synthetic symbol.", min=2)
SEED = typer.Option(0, "--seed", help="Seed of the synthetic market.")
START = typer.Option(None, "--start", help="First date to use (YYYY-MM-DD).")
END = typer.Option(None, "--end", help="Last date to use (YYYY-MM-DD).")
# None: the setting, whose default is ffe.domain.defaults' (the help says both).
CASH = typer.Option(
    None, "--cash", help=f"Starting cash [config: backtest.cash; default {DEFAULTS.cash:g}]."
)
COMMISSION = typer.Option(
    None,
    "--commission",
    help="Commission, fraction of notional "
    f"[config: backtest.commission; default {DEFAULTS.commission:g}].",
)
SLIPPAGE = typer.Option(
    None,
    "--slippage-bps",
    help="Slippage in basis points "
    f"[config: backtest.slippage_bps; default {DEFAULTS.slippage_bps:g}].",
)
FILL = typer.Option(None, "--fill", help="Fill at next_open (default) or close.")


def _market(
    symbols: list[str], synthetic: int, bars: int, seed: int, start: str | None, end: str | None
) -> MarketSpec:
    from ffe.service.markets import MarketSpec

    return MarketSpec(tuple(symbols), start, end, synthetic=synthetic, bars=bars, seed=seed)


@backtest_app.command("run")
def run(
    strategy: str = STRATEGY,
    symbol: list[str] = SYMBOLS,
    param: list[str] = typer.Option([], "--param", "-p", help="Strategy parameter name=value."),
    synthetic: int = SYNTHETIC,
    bars: int = BARS,
    seed: int = SEED,
    start: str | None = START,
    end: str | None = END,
    cash: float | None = CASH,
    commission: float | None = COMMISSION,
    slippage_bps: float | None = SLIPPAGE,
    fill: str | None = FILL,
    walk_forward: str | None = typer.Option(
        None,
        "--walk-forward",
        help="Walk forward, e.g. train=750,test=250: each window of `test` bars is traded by a "
        "fresh strategy given only the `train` bars before it and the window.",
    ),
    jobs: int = typer.Option(
        0,
        "--jobs",
        "-j",
        help="Worker processes for --walk-forward; 0 = as many as allowed "
        "[config: compute.max_workers, default: all cores].",
        min=0,
    ),
    executor: str | None = EXECUTOR,
    ray_address: str | None = RAY_ADDRESS,
    as_json: bool = typer.Option(False, "--json", help="Print stats and trades as JSON."),
    report: Path | None = typer.Option(None, "--report", help="Write an HTML report here."),
    record: bool = typer.Option(
        True, "--record/--no-record", help="Record the run in the journal (see `ffe runs`)."
    ),
) -> None:
    """Run one backtest (or a walk-forward run), print its statistics and record it in the
    journal."""
    with user_errors():
        from ffe import bootstrap
        from ffe.backtest.walkforward import WalkForwardSpec
        from ffe.config import load_settings
        from ffe.service import backtests

        request = backtests.BacktestRequest(
            strategy,
            parse_params(param),
            _market(symbol, synthetic, bars, seed, start, end),
            backtests.Costs(cash, commission, slippage_bps, fill),
            walk_forward=None if walk_forward is None else WalkForwardSpec.parse(walk_forward),
            workers=jobs,
            record=record,
        )
        # A plain run shows no bar; a walk-forward run counts its segments.
        quiet = as_json or request.walk_forward is None
        done: list[int] = []
        with ProgressBar(quiet=quiet, description="segments") as bar:

            def advance(count: int, total: int) -> None:
                done[:] = [count, total]
                bar(count, total)

            settings = load_settings(**compute_overrides(executor, ray_address))
            try:
                outcome = backtests.run(bootstrap.components(settings), request, advance)
            except KeyboardInterrupt:
                _interrupted(done, request.walk_forward is not None)
        _show(outcome, report=report, as_json=as_json)


def _interrupted(done: list[int], walking: bool) -> None:
    """After Ctrl-C: how far the run got, that nothing was recorded, and how to run it again
    (a backtest starts over; only the agent resumes). Exit 130, as an interrupted command."""
    from ffe.cli.pace import resume_command

    where = f" after {done[0]} of {done[1]} segments" if walking and done else ""
    err_console.print(
        f"stopped by Ctrl-C{where}; nothing was recorded. A backtest starts over: run it "
        f"again with `{resume_command()}`",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
    raise typer.Exit(130)


def _show(outcome: BacktestOutcome, *, report: Path | None, as_json: bool) -> None:
    """Write the report and print the run (as a table or JSON); then raise why it was not
    recorded, if it was not: the result is shown first."""
    result, walked, run_id = outcome.result, outcome.walked, outcome.run_id
    if report is not None:
        _write_report(result, report, walked)
    if as_json:
        data = {"run_id": run_id, **result.to_dict()}
        if walked is not None:
            data["walk_forward"] = walked.to_dict()
        typer.echo(json.dumps(data, indent=2))
    else:
        _print_result(result)
        for warning in result.warnings:
            console.print(f"[bold yellow]warning:[/bold yellow] {warning}")
        if walked is not None:
            _print_segments(walked)
        if report is not None:
            console.print(f"report written to [bold]{report}[/bold]")
        if run_id is not None:
            console.print(
                f"recorded as run [bold]{run_id[:8]}[/bold] (`ffe runs show {run_id[:8]}`)"
            )
    if outcome.unrecorded is not None:
        raise outcome.unrecorded


def _write_report(
    result: BacktestResult, path: Path, walked: WalkForwardResult | None = None
) -> None:
    from ffe.backtest.html import write_report
    from ffe.backtest.report import render_walk_forward_report
    from ffe.runs.journal import render_result_report

    html = render_result_report(result) if walked is None else render_walk_forward_report(walked)
    write_report(path, html)


def _print_result(result: BacktestResult) -> None:
    from rich.table import Table

    table = Table(title=f"{result.strategy.name} {result.params}", show_header=False)
    table.add_column("statistic", style="bold")
    table.add_column("value", justify="right")
    for name, value in result.run_stats().items():
        table.add_row(name.replace("_", " "), format_stat(name, value))
    console.print(table)
    if result.denials:
        err_console.print(
            f"{len(result.denials)} orders were denied by risk checks (see --json for each reason)"
        )
    if result.halted_at is not None:
        err_console.print("[yellow]trading halted: the drawdown limit was reached[/yellow]")


def _print_segments(walked: WalkForwardResult) -> None:
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"walk-forward {walked.spec}: {len(walked.segments)} segments, out of sample",
        box=box.SIMPLE_HEAD,
    )
    for column in ("#", "test from", "to", "bars", "return", "sharpe", "max dd", "trades"):
        table.add_column(column, justify="right", no_wrap=True)
    for segment in walked.segments:
        table.add_row(
            str(segment.number),
            format_stat("start", segment.test_start_time.isoformat()),
            format_stat("end", segment.test_end_time.isoformat()),
            f"{segment.bars:,}",
            format_stat("total_return", segment.total_return),
            format_stat("sharpe", segment.sharpe),
            format_stat("max_drawdown", segment.max_drawdown),
            str(segment.n_trades),
        )
    console.print(table)


@backtest_app.command("sweep")
def sweep(
    strategy: str = STRATEGY,
    symbol: list[str] = SYMBOLS,
    param: list[str] = typer.Option(
        ..., "--param", "-p", help="Grid axis: name=1,2,3 or name=5..50:5 (stop included)."
    ),
    metric: str = typer.Option(
        "sharpe",
        "--metric",
        help="Statistic to rank by, best first: the lowest first where lower is better.",
    ),
    jobs: int = JOBS,
    executor: str | None = EXECUTOR,
    ray_address: str | None = RAY_ADDRESS,
    top: int = typer.Option(20, "--top", help="Rows to show.", min=1),
    synthetic: int = SYNTHETIC,
    bars: int = BARS,
    seed: int = SEED,
    start: str | None = START,
    end: str | None = END,
    cash: float | None = CASH,
    commission: float | None = COMMISSION,
    slippage_bps: float | None = SLIPPAGE,
    fill: str | None = FILL,
    as_json: bool = typer.Option(False, "--json", help="Print every row as JSON."),
    report: Path | None = typer.Option(None, "--report", help="Write an HTML report here."),
) -> None:
    """Backtest every combination of a parameter grid on all local cores (or a Ray
    cluster)."""
    with user_errors():
        from ffe import bootstrap
        from ffe.backtest.sweep import parse_grid
        from ffe.config import load_settings
        from ffe.service import backtests

        request = backtests.SweepRequest(
            strategy,
            parse_grid(param),
            metric,
            _market(symbol, synthetic, bars, seed, start, end),
            backtests.Costs(cash, commission, slippage_bps, fill),
            workers=jobs,
        )
        with ProgressBar(quiet=as_json, description="backtests") as advance:
            settings = load_settings(**compute_overrides(executor, ray_address))
            outcome = backtests.sweep(bootstrap.components(settings), request, advance)
        flat = [row.flat() for row in outcome.rows]
        names = list(outcome.names)
        source = outcome.source.get("strategy_file")
        if report is not None:
            _write_sweep_report(strategy, names, flat, metric, outcome.direction, report, source)
        if as_json:
            typer.echo(json.dumps(flat, indent=2))
            return
        _print_sweep(flat, names, metric, outcome.direction, top)
        if source:
            console.print(f"strategy file {source['path']}:{source['class']} {source['sha256']}")
        if report is not None:
            console.print(f"report written to [bold]{report}[/bold]")


def _print_sweep(
    rows: list[dict[str, Any]], names: list[str], metric: str, direction: Direction, top: int
) -> None:
    from rich.table import Table

    from ffe.backtest.objective import describe

    columns = [*names, metric, "total_return", "max_drawdown", "n_trades"]
    columns = list(dict.fromkeys(columns))
    shown = min(top, len(rows))
    table = Table(title=f"best {shown} of {len(rows)} by {metric} ({describe(direction)})")
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for row in rows[:top]:
        if "error" in row:
            table.add_row(*[str(row.get(n, "")) for n in names], f"[red]{row['error']}[/red]")
            continue
        table.add_row(*[format_stat(c, row.get(c)) for c in columns])
    console.print(table)


def _write_sweep_report(
    strategy: str,
    names: list[str],
    rows: list[dict[str, Any]],
    metric: str,
    direction: Direction,
    path: Path,
    source: dict[str, Any] | None = None,
) -> None:
    from ffe.backtest.html import write_report
    from ffe.backtest.sweep_report import render_sweep_report

    html = render_sweep_report(
        title=f"{strategy} sweep",
        param_names=names,
        rows=rows,
        metric=metric,
        direction=direction,
        source=source,
    )
    write_report(path, html)
