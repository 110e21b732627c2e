"""``ffe check``: checks that a strategy's backtests can be trusted."""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING

import typer
from rich.text import Text

from ffe.cli.backtest import END, SEED, START, STRATEGY, SYMBOLS, SYNTHETIC
from ffe.cli.common import Progress, console, err_console, parse_params, user_errors

if TYPE_CHECKING:
    from ffe.backtest.lookahead import LookaheadReport
    from ffe.domain.market import MarketData

check_app = typer.Typer(
    help="Check strategies for mistakes that flatter backtests.", no_args_is_help=True
)

EXIT_FAILED = 1
SYNTHETIC_BARS = 2520


@check_app.callback()
def _check() -> None:
    """Check strategies for mistakes that flatter backtests."""


@check_app.command("lookahead")
def lookahead(
    strategy: str = STRATEGY,
    symbol: list[str] = SYMBOLS,
    param: list[str] = typer.Option([], "--param", "-p", help="Strategy parameter name=value."),
    cuts: int = typer.Option(3, "--cuts", help="Cut points spread over the bars.", min=1),
    synthetic: int = SYNTHETIC,
    bars: int | None = typer.Option(
        None,
        "--bars",
        help=f"Use the last N bars (with --synthetic: generate N; default {SYNTHETIC_BARS}).",
        min=3,
    ),
    seed: int = SEED,
    start: str | None = START,
    end: str | None = END,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    in_process: bool = typer.Option(
        False,
        "--in-process",
        help="Run every strategy run in this process: faster, but what a strategy memoizes "
        "outside its instance carries from one run into the next and can hide look-ahead.",
    ),
) -> None:
    """Fail (exit 1) if poisoning the bars after a cut changes anything decided up to it.

    The strategy runs on the real bars, then once per cut point on a copy whose later bars
    are garbage; every instruction and decision at or before the cut must stay the same.
    Each run happens in a new process of its own, unless --in-process.
    """
    with user_errors():
        from ffe import bootstrap
        from ffe.backtest.lookahead import check_lookahead, cut_points
        from ffe.config import load_settings
        from ffe.decide.strategy import make_strategy

        params = bootstrap.strategy_params(load_settings(), strategy, parse_params(param))
        probe = make_strategy(strategy, params)  # a bad name or parameter fails before loading
        market = _market(symbol, synthetic, bars, seed, start, end)
        runs = len(cut_points(market.n_bars, probe.warmup(), cuts)) + 1
        with Progress(runs, quiet=as_json, description="strategy runs") as advance:
            report = check_lookahead(
                functools.partial(make_strategy, strategy, params),  # pickles to a process
                market,
                cuts,
                progress=advance,
                fresh_processes=not in_process,
            )
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report)
    if not report.passed:
        if not as_json:
            # The message quotes the strategy's own rationale: print it as text, not markup.
            message = Text("failed: ", style="bold red").append(report.message())
            err_console.print(message, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED)


def _market(
    symbols: list[str],
    synthetic: int,
    bars: int | None,
    seed: int,
    start: str | None,
    end: str | None,
) -> MarketData:
    from ffe import bootstrap
    from ffe.config import load_settings
    from ffe.service.markets import MarketSpec, load_bars

    generated = bars if synthetic and bars is not None else SYNTHETIC_BARS
    spec = MarketSpec(tuple(symbols), start, end, synthetic=synthetic, bars=generated, seed=seed)
    market = load_bars(bootstrap.components(load_settings()), spec)
    if bars is not None and not synthetic and market.n_bars > bars:
        market = market.select(market.n_bars - bars, market.n_bars)
    return market


def _print_report(report: LookaheadReport) -> None:
    from rich.table import Table

    from ffe.backtest.lookahead import when

    table = Table(title=f"look-ahead check of {report.strategy} ({report.n_bars:,} bars)")
    table.add_column("cut", justify="right")
    table.add_column("poisoned after")
    table.add_column("result")
    table.add_column("first change")
    for number, cut in enumerate(report.cuts, start=1):
        change = cut.change
        table.add_row(
            str(number),
            f"{when(cut.time)} (bar {cut.cut:,})",
            "[green]pass[/green]" if change is None else "[bold red]FAIL[/bold red]",
            Text("" if change is None else change.describe()),
        )
    console.print(table)
    if report.passed:
        console.print(report.message(), highlight=False)
