"""``ffe forecast``: honest, rolling-origin benchmarks of the forecasting models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ffe.cli.common import (
    EXECUTOR,
    JOBS,
    RAY_ADDRESS,
    ProgressBar,
    compute_overrides,
    console,
    err_console,
    user_errors,
)

if TYPE_CHECKING:
    from ffe.forecast.evaluate import BenchResult

forecast_app = typer.Typer(help="Forecasting models and their benchmarks.", no_args_is_help=True)


@forecast_app.command("bench")
def bench(
    symbol: str = typer.Option("SP500", "--symbol", help="Symbol to forecast."),
    horizon: list[int] = typer.Option(
        [1, 5], "--horizon", "-h", help="Bars ahead to score; repeat for several.", min=1
    ),
    models: str | None = typer.Option(
        None, "--models", help="Comma-separated models (default: all; naive is always added)."
    ),
    window: int = typer.Option(500, "--window", help="Training window in bars.", min=30),
    refit_every: int = typer.Option(21, "--refit-every", help="Refit every N bars.", min=1),
    start: str | None = typer.Option(None, "--start", help="First date to use (YYYY-MM-DD)."),
    end: str | None = typer.Option(None, "--end", help="Last date to use (YYYY-MM-DD)."),
    eta: float = typer.Option(0.5, "--eta", help="Ensemble: learning rate of the weights."),
    discount: float = typer.Option(
        1.0, "--discount", help="Ensemble: decay of old losses (1: none)."
    ),
    jobs: int = JOBS,
    executor: str | None = EXECUTOR,
    ray_address: str | None = RAY_ADDRESS,
    as_json: bool = typer.Option(False, "--json", help="Print the scores as JSON."),
    report: Path | None = typer.Option(None, "--report", help="Write an HTML report here."),
) -> None:
    """Rolling-origin walk-forward of every model (no window sees its future), scored with
    MASE, CRPS, interval coverage and a Diebold-Mariano test against the random walk."""
    with user_errors():
        from ffe import bootstrap
        from ffe.config import load_settings
        from ffe.forecast.ensemble import HedgeConfig
        from ffe.service.forecasts import BenchRequest, bench

        request = BenchRequest(
            symbol,
            tuple(horizon),
            models,
            window,
            refit_every,
            start,
            end,
            hedge=HedgeConfig(eta=eta, discount=discount),
            workers=jobs,
        )
        with ProgressBar(quiet=as_json, description="forecasts") as advance:
            settings = load_settings(**compute_overrides(executor, ray_address))
            result = bench(bootstrap.components(settings), request, advance)
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2))
        else:
            _print(result)
        if report is not None:
            from ffe.backtest.forecast_report import render_forecast_report
            from ffe.backtest.html import write_report

            path = write_report(report, render_forecast_report(result))
            err_console.print(f"report written to {path}")


def _print(result: BenchResult) -> None:
    from rich.table import Table

    table = Table(
        title=f"{result.symbol}: {result.first_origin} to {result.last_origin}, "
        f"window {result.window}, refit every {result.refit_every} bars",
        title_justify="left",
    )
    columns = ("h", "model", "n", "MASE", "CRPS (bp)", "cov 80%", "cov 95%", "DM", "p")
    for column in (*columns, "CRPS vs ens", "p", "SE vs ens", "p"):
        left = column == "model"
        table.add_column(column, justify="left" if left else "right", no_wrap=left)
    notes = []
    for score in result.scores:
        name = score.model
        if score.note:
            notes.append(f"h={score.horizon}: {name} is {score.note}")
        style = "bold green" if score.beats_random_walk else None
        table.add_row(
            str(score.horizon),
            name,
            f"{score.n:,}",
            f"{score.mase:.3f}",
            f"{score.crps * 1e4:.2f}",
            f"{score.coverage_80:.1%}",
            f"{score.coverage_95:.1%}",
            "" if score.dm_statistic is None else f"{score.dm_statistic:+.2f}",
            "" if score.dm_p_value is None else f"{score.dm_p_value:.3f}",
            *_signed(score.dm_crps_vs_ensemble, score.dm_crps_vs_ensemble_p),
            *_signed(score.dm_se_vs_ensemble, score.dm_se_vs_ensemble_p),
            style=style,
        )
    console.print(table)
    for note in notes:
        console.print(note)
    console.print(
        "DM: Diebold-Mariano on squared error against the random walk (naive); negative means "
        "smaller errors. Green: better than the random walk at the 5% level. CRPS/SE vs ens: "
        "DM of CRPS and of squared error against the ensemble (Hedge); negative: smaller "
        "losses than the ensemble's."
    )


def _signed(statistic: float | None, p: float | None) -> tuple[str, str]:
    return (
        "" if statistic is None else f"{statistic:+.2f}",
        "" if p is None else f"{p:.3f}",
    )
