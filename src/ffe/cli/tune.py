"""``ffe tune``: search a strategy's parameters with Optuna (``ffe tune --strategy ...``), and
the stored studies (``ffe tune list|show|delete``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ffe.cli.backtest import (
    BARS,
    CASH,
    COMMISSION,
    END,
    FILL,
    SEED,
    SLIPPAGE,
    START,
    STRATEGY,
    SYMBOLS,
    SYNTHETIC,
)
from ffe.cli.common import (
    EXECUTOR,
    JOBS,
    RAY_ADDRESS,
    ProgressBar,
    compute_overrides,
    console,
    err_console,
    format_stat,
    user_errors,
)

if TYPE_CHECKING:
    from ffe.tune.outcome import TuneOutcome

tune_app = typer.Typer(
    help="Tune a strategy's parameters with Optuna on walk-forward out-of-sample bars "
    "(`ffe tune --strategy sma_cross --param fast=5..60 --param slow=20..250`), and list, show "
    "or delete stored studies.",
    invoke_without_command=True,
    no_args_is_help=True,
)
JSON = typer.Option(False, "--json", help="Print JSON.")
STUDY = typer.Argument(..., help="The study's name (from `ffe tune list`).")
REPORT = typer.Option(None, "--report", help="Write the study's HTML report here.")


PARAM = typer.Option(
    [], "--param", "-p", help="Search range: name=5..60, name=5..60:5 or name=1,2,3."
)
TRIALS = typer.Option(
    100, "--trials", "-n", min=1,
    help="Finished trials the study ends with (a resumed study counts those it has).",
)  # fmt: skip
METRIC = typer.Option("sharpe", "--metric", help="Statistic to optimise, out of sample.")
WALK_FORWARD = typer.Option(
    "train=750,test=250", "--walk-forward", help="Bars each segment trains on, then tests."
)
HOLDOUT = typer.Option(
    0.2, "--holdout", min=0, help="Kept back from every trial, scored once with the best: "
    "a fraction of the bars (0.2) or a number of bars (500); 0 for none.",
)  # fmt: skip
SAMPLER = typer.Option("tpe", "--sampler", help="tpe, random or grid.")
PRUNER = typer.Option("median", "--pruner", help="median, asha or none.")
SAMPLER_SEED = typer.Option(0, "--sampler-seed", help="Seed of the sampler.")
BATCH_SIZE = typer.Option(
    None, "--batch-size", min=1, help="Trials scored at a time; with the seed it makes a "
    "study repeatable [config: tune.batch_size].",
)  # fmt: skip
STUDY_NAME = typer.Option(
    None, "--study", help="Name the study; an existing one is resumed (default: a new one)."
)


@tune_app.callback()
def tune(
    ctx: typer.Context,
    strategy: str = STRATEGY,
    symbol: list[str] = SYMBOLS,
    param: list[str] = PARAM,
    trials: int = TRIALS,
    metric: str = METRIC,
    walk_forward: str = WALK_FORWARD,
    holdout: float = HOLDOUT,
    sampler: str = SAMPLER,
    pruner: str = PRUNER,
    sampler_seed: int = SAMPLER_SEED,
    batch_size: int | None = BATCH_SIZE,
    study: str | None = STUDY_NAME,
    jobs: int = JOBS,
    executor: str | None = EXECUTOR,
    ray_address: str | None = RAY_ADDRESS,
    synthetic: int = SYNTHETIC,
    bars: int = BARS,
    seed: int = SEED,
    start: str | None = START,
    end: str | None = END,
    cash: float | None = CASH,
    commission: float | None = COMMISSION,
    slippage_bps: float | None = SLIPPAGE,
    fill: str | None = FILL,
    as_json: bool = JSON,
    report: Path | None = REPORT,
) -> None:
    """Run a study (or resume one with --study), print the best parameters with their
    out-of-sample and holdout values."""
    if ctx.invoked_subcommand is not None:
        return
    with user_errors():
        from ffe import bootstrap
        from ffe.backtest.walkforward import WalkForwardSpec
        from ffe.cli.backtest import _market
        from ffe.config import load_settings
        from ffe.domain.errors import ConfigError
        from ffe.service import backtests, tuning

        if not param:
            raise ConfigError("give the search space: --param fast=5..60 --param slow=20..250")
        request = tuning.TuneRequest(
            strategy, tuple(param), metric,
            _market(symbol, synthetic, bars, seed, start, end),
            backtests.Costs(cash, commission, slippage_bps, fill),
            WalkForwardSpec.parse(walk_forward), trials, sampler,  # type: ignore[arg-type]
            pruner, sampler_seed, batch_size, holdout, study, jobs,  # type: ignore[arg-type]
        )  # fmt: skip
        _quiet_optuna()
        settings = load_settings(**compute_overrides(executor, ray_address))
        components = bootstrap.components(settings)
        with ProgressBar(quiet=as_json, description="trials") as advance:
            outcome = tuning.run(components, request, advance)
        if report is not None:
            _write_report(tuning.report(components, outcome.study), report)
        _show_outcome(outcome, as_json=as_json, report=report)


def _quiet_optuna() -> None:
    """Optuna logs a line per trial; the progress bar and the summary say what matters."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _write_report(html: str, path: Path) -> None:
    from ffe.backtest.html import write_report

    write_report(path, html)


def _show_outcome(outcome: TuneOutcome, *, as_json: bool, report: Path | None) -> None:
    from ffe.tune.report import caveats

    data = outcome.to_dict()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    if outcome.resumed:
        console.print(
            f"resumed study [bold]{outcome.study}[/bold]: {outcome.resumed} trials were done "
            f"already, {outcome.requeued} interrupted ones ran again"
        )
    _print_best(data)
    for note in caveats(data):
        style = "yellow" if note.startswith("warning") else "dim"
        err_console.print(f"[{style}]{note}[/{style}]", highlight=False)
    if report is not None:
        console.print(f"report written to [bold]{report}[/bold]")
    console.print(f"stored as study [bold]{outcome.study}[/bold] (`ffe tune show {outcome.study}`)")


def _print_best(data: dict[str, Any]) -> None:
    from rich.table import Table

    best, metric = data["best"], data["metric"]
    counts = ", ".join(f"{n} {state}" for state, n in data["counts"].items())
    table = Table(title=f"study {data['study']}: {data['trials']} trials ({counts})")
    table.add_column("best", style="bold")
    table.add_column("value", justify="right")
    if best is None:
        console.print(table)
        err_console.print("no trial finished with a value: see `ffe tune show` for errors")
        return
    for name, value in best["params"].items():
        table.add_row(name, str(value))
    table.add_row(f"{metric} out of sample", format_stat(metric, best["value"]))
    holdout = data["holdout"]
    shown = "no holdout" if holdout is None else format_stat(metric, holdout["value"])
    table.add_row(f"{metric} on the holdout", shown)
    console.print(table)


@tune_app.command("list")
def list_command(as_json: bool = JSON) -> None:
    """List stored studies, newest first."""
    with user_errors():
        from ffe import bootstrap
        from ffe.config import load_settings
        from ffe.service import tuning

        found = tuning.studies(bootstrap.components(load_settings()))
        if as_json:
            typer.echo(json.dumps([s.to_dict() for s in found], indent=2))
            return
        _print_studies(found)


def _print_studies(found: list[Any]) -> None:
    from rich.table import Table

    if not found:
        console.print("no studies yet: run `ffe tune --param fast=5..60 --param slow=20..250`")
        return
    table = Table(title="studies")
    for column in ("name", "created", "strategy", "metric", "trials", "best", "parameters"):
        table.add_column(column)
    for s in found:
        table.add_row(
            s.name,
            (s.created or "")[:19],
            str(s.setup.get("strategy", "")),
            str(s.setup.get("metric", "")),
            str(sum(s.trials.values())),
            format_stat("value", s.best_value),
            ", ".join(f"{k}={v}" for k, v in s.best_params.items()),
        )
    console.print(table)


@tune_app.command("show")
def show_command(name: str = STUDY, as_json: bool = JSON, report: Path | None = REPORT) -> None:
    """Show a study: its setup, best trial, holdout score, caveats and trials."""
    with user_errors():
        from ffe import bootstrap
        from ffe.config import load_settings
        from ffe.service import tuning

        components = bootstrap.components(load_settings())
        summary, trials = tuning.show(components, name)
        if report is not None:
            _write_report(tuning.report(components, name), report)
        if as_json:
            typer.echo(json.dumps({**summary.to_dict(), "trial_list": trials}, indent=2))
            return
        console.print(f"study [bold]{summary.name}[/bold]")
        for key, value in summary.setup.items():
            console.print(f"  {key}: {json.dumps(value)}", markup=False, highlight=False)
        if summary.result:
            _print_best(summary.result)
            from ffe.tune.report import caveats

            for note in caveats(summary.result):
                err_console.print(note, highlight=False)
        if report is not None:
            console.print(f"report written to [bold]{report}[/bold]")


@tune_app.command("delete")
def delete_command(
    name: str = STUDY,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask first."),
) -> None:
    """Delete a study and its trials."""
    with user_errors():
        from ffe import bootstrap
        from ffe.config import load_settings
        from ffe.service import tuning

        if not yes:
            typer.confirm(f"delete study {name!r} and all its trials?", abort=True)
        tuning.delete(bootstrap.components(load_settings()), name)
        console.print(f"deleted study [bold]{name}[/bold]")
