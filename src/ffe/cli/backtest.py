"""``ffe backtest``: run one backtest, or sweep a parameter grid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ffe.cli.common import (
    JOBS,
    Progress,
    console,
    err_console,
    format_stat,
    parse_params,
    user_errors,
)

if TYPE_CHECKING:
    from ffe.backtest.engine import BacktestConfig
    from ffe.backtest.objective import Direction
    from ffe.backtest.result import BacktestResult
    from ffe.backtest.walkforward import WalkForwardResult, WalkForwardSpec
    from ffe.compute import Executor
    from ffe.config import Settings
    from ffe.domain.market import MarketData
    from ffe.risk.engine import RiskEngine

backtest_app = typer.Typer(
    help="Backtest strategies on bundled, imported or synthetic bars.", no_args_is_help=True
)

STRATEGY = typer.Option("sma_cross", "--strategy", "-s", help="Strategy name.")
SYMBOLS = typer.Option(["SP500"], "--symbol", help="Symbol to trade; repeat for several.")
SYNTHETIC = typer.Option(0, "--synthetic", help="Trade N synthetic symbols instead.", min=0)
BARS = typer.Option(2520, "--bars", help="Bars per synthetic symbol.", min=2)
SEED = typer.Option(0, "--seed", help="Seed of the synthetic market.")
START = typer.Option(None, "--start", help="First date to use (YYYY-MM-DD).")
END = typer.Option(None, "--end", help="Last date to use (YYYY-MM-DD).")
CASH = typer.Option(None, "--cash", help="Starting cash [config: backtest.cash].")
COMMISSION = typer.Option(None, "--commission", help="Commission, fraction of notional.")
SLIPPAGE = typer.Option(None, "--slippage-bps", help="Slippage in basis points.")
FILL = typer.Option(None, "--fill", help="Fill at next_open (default) or close.")


def load_market_for(
    settings: Settings,
    symbols: list[str],
    synthetic: int,
    bars: int,
    seed: int,
    start: str | None,
    end: str | None,
) -> MarketData:
    from ffe import bootstrap
    from ffe.data import SyntheticMarket, load_market

    if synthetic:
        source: Any = SyntheticMarket(synthetic, bars, seed=seed)
        if start is None and end is None:
            return source.to_market()  # type: ignore[no-any-return]
        symbols = source.symbols()
    else:
        source = bootstrap.data_catalog(settings)
    return load_market(source, symbols, start=start, end=end)


def _setup(
    symbols: list[str],
    synthetic: int,
    bars: int,
    seed: int,
    start: str | None,
    end: str | None,
    cash: float | None,
    commission: float | None,
    slippage_bps: float | None,
    fill: str | None,
) -> tuple[MarketData, BacktestConfig, RiskEngine]:
    """Market, run configuration and risk limits from settings and command-line overrides."""
    from ffe import bootstrap
    from ffe.config import load_settings

    settings = load_settings()
    market = load_market_for(settings, symbols, synthetic, bars, seed, start, end)
    config = bootstrap.backtest_config(
        settings, cash=cash, commission=commission, slippage_bps=slippage_bps, at=fill
    )
    return market, config, bootstrap.risk_engine(settings)


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
        from ffe.backtest.engine import run_backtest
        from ffe.backtest.walkforward import WalkForwardSpec
        from ffe.config import load_settings
        from ffe.decide.strategy import make_strategy

        settings = load_settings()
        # -p workers=N is the operator's to give here, but still at most compute.max_workers.
        params = bootstrap.strategy_params(settings, strategy, parse_params(param))
        chosen = make_strategy(strategy, params)
        executor = bootstrap.executor(settings, jobs)
        spec = WalkForwardSpec.parse(walk_forward) if walk_forward is not None else None
        market, config, risk = _setup(
            symbol, synthetic, bars, seed, start, end, cash, commission, slippage_bps, fill
        )
        if spec is None:
            result, walked = run_backtest(market, chosen, config, risk), None
        else:
            walked = _walk_forward(
                market, strategy, params, spec, (config, risk), executor, as_json
            )
            result = walked.backtest
        _show(result, walked, report=report, record=record, as_json=as_json)


def _walk_forward(
    market: MarketData,
    strategy: str,
    params: dict[str, Any],
    spec: WalkForwardSpec,
    setup: tuple[BacktestConfig, RiskEngine],
    executor: Executor,
    quiet: bool,
) -> WalkForwardResult:
    from ffe.backtest.walkforward import run_walk_forward

    config, risk = setup
    total = len(spec.windows(market.n_bars))  # too few bars fail here, before the bar shows
    with Progress(total, quiet=quiet, description="segments") as advance:
        return run_walk_forward(
            market, strategy, params, spec.train, spec.test, config, risk,
            progress=advance, executor=executor,
        )  # fmt: skip


def _show(
    result: BacktestResult,
    walked: WalkForwardResult | None,
    *,
    report: Path | None,
    record: bool,
    as_json: bool,
) -> None:
    """Write the report, record the run, and print it (as a table or JSON)."""
    if report is not None:
        _write_report(result, report, walked)
    extra = None if walked is None else {"walk_forward": _spec_config(walked)}
    # A journal that cannot be written must not cost the user the result: show it first.
    run_id, failure = _record(result, extra) if record else (None, None)
    if as_json:
        data = {"run_id": run_id, **result.to_dict()}
        if walked is not None:
            data["walk_forward"] = walked.to_dict()
        typer.echo(json.dumps(data, indent=2))
    else:
        _print_result(result)
        if walked is not None:
            _print_segments(walked)
        if report is not None:
            console.print(f"report written to [bold]{report}[/bold]")
        if run_id is not None:
            console.print(
                f"recorded as run [bold]{run_id[:8]}[/bold] (`ffe runs show {run_id[:8]}`)"
            )
    if failure is not None:
        raise failure


def _spec_config(walked: WalkForwardResult) -> dict[str, Any]:
    """The walk-forward part of a recorded run's config."""
    return {
        "train": walked.spec.train,
        "test": walked.spec.test,
        "segments": len(walked.segments),
        "first_test_bar": walked.segments[0].test_start_time.isoformat(),
    }


def _record(
    result: BacktestResult, extra_config: dict[str, Any] | None = None
) -> tuple[str | None, Exception | None]:
    """Record ``result`` in the journal: (run id, None), or (None, the StoreError)."""
    from ffe.cli.common import with_database
    from ffe.domain.errors import StoreError
    from ffe.runs.journal import record_backtest

    try:
        run_id = with_database(
            None,
            lambda db: record_backtest(db, result, extra_config=extra_config),
            journal=True,
        )
    except StoreError as exc:
        return None, StoreError(f"the run was not recorded: {exc}")
    return run_id, None


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
    for name, value in result.stats.as_dict().items():
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
    """Backtest every combination of a parameter grid on all local cores."""
    with user_errors():
        from ffe import bootstrap
        from ffe.backtest.objective import direction_of, rank_key
        from ffe.backtest.sweep import combinations, parse_grid, run_sweep
        from ffe.config import load_settings

        settings = load_settings()
        direction = direction_of(metric)
        names = list(parse_grid(param))
        points = combinations(parse_grid(param))  # workers=N below: at most the cap
        grid = [bootstrap.strategy_params(settings, strategy, p, fill=False) for p in points]
        executor = bootstrap.executor(settings, jobs)
        market, config, risk = _setup(
            symbol, synthetic, bars, seed, start, end, cash, commission, slippage_bps, fill
        )
        with Progress(len(grid), quiet=as_json) as advance:
            rows = run_sweep(
                market,
                strategy,
                grid,
                config,
                risk,
                executor=executor,
                on_done=lambda _: advance(),
            )
        flat = sorted(
            (row.flat() for row in rows), key=lambda r: rank_key(r.get(metric), direction)
        )
        if report is not None:
            _write_sweep_report(strategy, names, flat, metric, direction, report)
        if as_json:
            typer.echo(json.dumps(flat, indent=2))
            return
        _print_sweep(flat, names, metric, direction, top)
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
) -> None:
    from ffe.backtest.html import write_report
    from ffe.backtest.sweep_report import render_sweep_report

    html = render_sweep_report(
        title=f"{strategy} sweep",
        param_names=names,
        rows=rows,
        metric=metric,
        direction=direction,
    )
    write_report(path, html)
