"""``ffe decisions``: what a run decided, why, and how well calibrated it was."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ffe.cli.common import URL, console, err_console, user_errors, with_database

if TYPE_CHECKING:
    from ffe.decide.calibration import ReliabilityTable
    from ffe.runs.calibration import Calibration
    from ffe.store.database import Database

decisions_app = typer.Typer(
    help="Decisions of recorded runs: rationale, outcomes, calibration.", no_args_is_help=True
)


@decisions_app.command("list")
def list_decisions(
    run_id: str = typer.Argument(..., help="Run id (or a unique prefix)."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="Newest N decisions."),
    url: str | None = URL,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The newest decisions of a run with their rationale and outcome."""
    with user_errors():
        from ffe.domain.orders import action_of
        from ffe.runs.journal import journaled_target
        from ffe.store.repositories import unit_of_work

        async def work(db: Database) -> tuple[list[Any], dict[str, Any]]:
            async with unit_of_work(db) as uow:
                run = await uow.runs.get(run_id)
                rows = await uow.journal.decisions_with_outcomes(run.id)
            return list(rows[-limit:]), dict(run.params or {})

        rows, params = with_database(url, work, journal=True)
        if as_json:
            keys = ("time", "symbol", "confidence", "rationale", "votes")
            targets = [journaled_target(r.target, r.votes, params) for r in rows]
            out = [
                {
                    **{k: getattr(r, k) for k in keys},
                    "time": r.time.isoformat(),
                    "target": None if math.isnan(target) else target,
                    "action": action_of(target),
                    "outcome": None
                    if r.hit is None
                    else {"realized_return": r.realized_return, "hit": r.hit},
                }
                for r, target in zip(rows, targets, strict=True)
            ]
            typer.echo(json.dumps(out, indent=2))
            return
        if not rows:
            console.print("this run has no decisions")
        for r in rows:
            outcome = (
                "pending"
                if r.hit is None
                else f"{'hit' if r.hit else 'miss'} ({r.realized_return:+.2%} log)"
            )
            console.print(f"[bold]{r.time:%Y-%m-%d}[/bold] {outcome}: {r.rationale}", markup=True)


@decisions_app.command("calibration")
def calibration(
    run_id: str = typer.Argument(..., help="Run id (or a unique prefix)."),
    bins: int = typer.Option(10, "--bins", min=2, max=50, help="Confidence bins."),
    url: str | None = URL,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    report: Path | None = typer.Option(None, "--report", help="Write a reliability chart here."),
) -> None:
    """Reliability table of a run's decisions: confidence bins against the realized hit rate,
    with the expected calibration error (ECE), before and after recalibration, and whether
    the confidence has skill (AUC, Brier skill against the base rate, the ECE of chance)."""
    with user_errors():
        from ffe.runs.calibration import load_calibration

        async def work(db: Database) -> Calibration:
            return await load_calibration(db, run_id, bins)

        result = with_database(url, work, journal=True)
        if as_json:
            typer.echo(json.dumps(result.to_dict(), indent=2))
        else:
            _print(result)
        if report is not None:
            from ffe.backtest.html import write_report
            from ffe.runs.calibration_report import render_calibration_report

            path = write_report(report, render_calibration_report(result))
            err_console.print(f"report written to {path}")


def _print(result: Calibration) -> None:
    console.print(
        f"run {result.run_id} ({result.strategy}): {result.resolved:,} of "
        f"{result.decisions:,} decisions resolved"
    )
    _table("confidence used by the decisions (recalibrated on past outcomes)", result.stated)
    console.print(f"skill: {result.stated_skill.verdict()}", markup=False)
    if result.raw is not None and result.raw_skill is not None:
        _table("the models' own probability (before recalibration)", result.raw)
        console.print(f"skill: {result.raw_skill.verdict()}", markup=False)


def _table(title: str, table: ReliabilityTable) -> None:
    from rich.table import Table

    out = Table(
        title=f"{title}: ECE {table.ece:.3f}, Brier {table.brier:.3f}", title_justify="left"
    )
    for column in ("confidence", "decisions", "mean confidence", "hit rate", "gap"):
        out.add_column(column, justify="right")
    for row in table.rows:
        if row.count == 0:
            continue
        gap = row.hit_rate - row.mean_confidence
        out.add_row(
            f"{row.low:.0%}-{row.high:.0%}",
            f"{row.count:,}",
            f"{row.mean_confidence:.1%}",
            f"{row.hit_rate:.1%}",
            f"{gap:+.1%}",
        )
    console.print(out)
