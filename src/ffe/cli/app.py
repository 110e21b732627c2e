"""The ``ffe`` command. Heavy libraries are imported inside commands so ``--help`` is fast."""

from __future__ import annotations

import json

import typer

from ffe.cli.agent import agent_app
from ffe.cli.backtest import backtest_app
from ffe.cli.backup import backup_command, restore_command
from ffe.cli.check import check_app
from ffe.cli.common import console, user_errors
from ffe.cli.data import data_app
from ffe.cli.db import db_app
from ffe.cli.decisions import decisions_app
from ffe.cli.forecast import forecast_app
from ffe.cli.jobs import jobs_app
from ffe.cli.llm import llm_app
from ffe.cli.precompute import precompute_command
from ffe.cli.runs import runs_app
from ffe.cli.serve import (
    health_command,
    keys_app,
    run_command,
    serve_command,
    users_app,
)
from ffe.cli.tune import tune_app
from ffe.cli.worker import worker_command

app = typer.Typer(
    name="ffe",
    help="Finance Feedback Engine: backtest, paper-trade and run trading decisions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
app.add_typer(backtest_app, name="backtest")
app.add_typer(check_app, name="check")
app.add_typer(forecast_app, name="forecast")
app.add_typer(agent_app, name="agent")
app.add_typer(tune_app, name="tune")
app.add_typer(runs_app, name="runs")
app.add_typer(jobs_app, name="jobs")
app.add_typer(decisions_app, name="decisions")
app.add_typer(db_app, name="db")
app.add_typer(llm_app, name="llm")
app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")
app.command("run")(run_command)
app.command("serve")(serve_command)
app.command("precompute")(precompute_command)
app.command("worker")(worker_command)
app.command("health")(health_command)
app.command("backup")(backup_command)
app.command("restore")(restore_command)


def _print_version(value: bool) -> None:
    if value:
        from ffe import __version__

        console.print(f"ffe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        is_eager=True,
        callback=_print_version,
    ),
) -> None:
    """Finance Feedback Engine: backtest, paper-trade and run trading decisions."""


@config_app.command("show")
def config_show(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of YAML."),
) -> None:
    """Print the effective configuration (environment over config.local.yaml over config.yaml
    over defaults), with secrets masked."""
    with user_errors():
        import yaml

        from ffe.config import load_settings, masked

        shown = masked(load_settings())
        if as_json:
            typer.echo(json.dumps(shown, indent=2))
        else:
            typer.echo(yaml.safe_dump(shown, sort_keys=False).rstrip())


def main() -> None:
    """Entry point of the ``ffe`` console script."""
    app()
