"""Backtests in the journal: record a finished run, and read one back for a report.

The backtest engine itself knows nothing of databases; this module turns a
``BacktestResult`` into journal rows (the run with its config, code version, data
fingerprint and stats; its trades; its equity curve) in one transaction, so a run is either
recorded whole or not at all.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

import ffe
from ffe.domain.orders import Decision, Trade
from ffe.portfolio.stats import Stats

if TYPE_CHECKING:
    from ffe.backtest.result import BacktestResult
    from ffe.store.database import Database
    from ffe.store.models import Run

FloatArray = npt.NDArray[np.float64]


@cache
def code_version() -> str:
    """ffe's version, plus the git commit (and ``.dirty``) when running from a checkout."""
    root = Path(ffe.__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return ffe.__version__
    try:
        commit = _git(root, "rev-parse", "--short=12", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return ffe.__version__
    return f"{ffe.__version__}+g{commit}{'.dirty' if dirty else ''}"


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5, check=True
    )
    return done.stdout.strip()


def run_config(result: BacktestResult) -> dict[str, Any]:
    """How the run was configured, as JSON-ready data."""
    config = result.config
    fill = config.fill
    return {
        "cash": config.cash,
        "lot_size": config.lot_size,
        "mode": config.mode,
        "fill": {
            "at": fill.at,
            "commission": fill.commission,
            "fixed_commission": fill.fixed_commission,
            "slippage_bps": fill.slippage_bps,
        },
        "first_bar": result.market.time_of(0).isoformat(),
        "last_bar": result.market.time_of(result.market.n_bars - 1).isoformat(),
        "bars": result.market.n_bars,
        **_strategy_file(result),
    }


def _strategy_file(result: BacktestResult) -> dict[str, Any]:
    from ffe.decide.plugins import recorded

    return recorded(result.strategy)


async def record_backtest(
    db: Database,
    result: BacktestResult,
    *,
    extra_config: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> str:
    """Store the run, its trades and its equity curve in one transaction; return the run id.

    With ``run_id`` (a job's id: a job redone after its worker died records the same run) the
    run is stored under it once: when a run with that id is already there, nothing is written
    and the id is returned."""
    from ffe.domain.errors import StoreError

    if run_id is not None and await _run_exists(db, run_id):
        return run_id
    try:
        return await _record(db, result, extra_config, run_id)
    except StoreError:
        if run_id is not None and await _run_exists(db, run_id):  # another try just did
            return run_id
        raise


async def _run_exists(db: Database, run_id: str) -> bool:
    from ffe.store.models import Run

    async with db.session() as session:
        return await session.get(Run, run_id) is not None


async def _record(
    db: Database,
    result: BacktestResult,
    extra_config: Mapping[str, Any] | None,
    run_id: str | None,
) -> str:
    from ffe.store.repositories import unit_of_work

    market = result.market
    times = [market.time_of(bar) for bar in range(market.n_bars)]
    benchmark = [None if np.isnan(v) else float(v) for v in result.benchmark]
    async with unit_of_work(db) as uow:
        run = await uow.runs.add(
            run_id=run_id,
            kind="backtest",
            strategy=result.strategy.name,
            params=result.params,
            symbols=market.symbols,
            timeframe=str(market.timeframe),
            config={**run_config(result), **(extra_config or {})},
            code_version=code_version(),
            data_fingerprint=market.fingerprint(),
            started_at=None,
        )
        await uow.journal.add_trades(run.id, result.trades)
        await uow.journal.add_fills(run.id, fill_rows(result, times))
        await uow.journal.add_positions(run.id, closing_positions(result, times))
        await uow.journal.add_equity(run.id, times, result.equity.tolist(), benchmark=benchmark)
        if result.decisions:
            await uow.journal.add_decisions(run.id, [decision_row(d) for d in result.decisions])
            ids = await uow.journal.decision_ids(run.id)
            await uow.journal.add_outcomes(decision_outcomes(result, ids))
        stats: dict[str, Any] = result.run_stats()
        if result.warnings:  # too good to be true: the record says so too
            stats["warnings"] = list(result.warnings)
        await uow.runs.finish(run, stats)
        return run.id


def fill_rows(result: BacktestResult, times: Sequence[datetime]) -> list[dict[str, Any]]:
    """Every fill the run's ledger booked, as journal rows (its round trips are read from
    them, ``ffe.portfolio.trades``)."""
    symbols = result.market.symbols
    return [
        {"time": times[bar], "symbol": symbols[column], "quantity": quantity, "price": price,
         "commission": commission}
        for bar, column, quantity, price, commission in result.ledger.fills()
    ]  # fmt: skip


def closing_positions(result: BacktestResult, times: Sequence[datetime]) -> list[dict[str, Any]]:
    """The positions still open at the end, each with the last price it was marked at:
    what values a round trip still open."""
    market, rows = result.market, []
    for column, quantity in sorted(result.ledger.held.items()):
        known = np.flatnonzero(~np.isnan(market.mark[:, column]))
        last = int(known[-1]) if known.size else None
        rows.append(
            {
                "time": times[-1] if last is None else times[last],
                "symbol": market.symbols[column],
                "quantity": quantity,
                "mark_price": None if last is None else float(market.mark[last, column]),
            }
        )
    return rows


def decision_row(decision: Decision) -> dict[str, Any]:
    """A decision as a journal row: the numbers behind it go in ``votes`` (JSON)."""
    votes = {
        "weights": dict(decision.votes),
        "horizon": decision.horizon,
        **{k: _json_number(v) for k, v in decision.details.items()},
    }
    target = decision.target
    if math.isnan(target):  # the column holds a number: the row says it keeps the position
        votes.update(action="hold", keep=True)
    elif votes.get("action") == "hold":  # the ensemble's hold="flat": it goes flat
        votes["keep"] = False
    return {
        "time": decision.time,
        "symbol": decision.symbol,
        "target": 0.0 if math.isnan(target) else target,  # a hold: votes["keep"] says so
        "confidence": decision.confidence,
        "rationale": decision.rationale,
        "votes": votes,
    }


def journaled_target(
    target: float, votes: Mapping[str, Any] | None, params: Mapping[str, Any] | None
) -> float:
    """A journaled decision's target as the engine made it: NaN for a hold that kept the
    position (the row's ``target`` column says 0.0 for it), from the run's ``params``.

    Rows written since holds were marked say so in ``votes["keep"]``; older rows of an
    ensemble's hold kept the position unless the run set ``hold="flat"``."""
    votes = votes or {}
    if votes.get("action") != "hold":
        return target
    keep = votes.get("keep")
    if not isinstance(keep, bool):
        keep = (params or {}).get("hold", "keep") != "flat"
    return math.nan if keep else target


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_number(v) for k, v in value.items()}
    return value


def decision_outcomes(result: BacktestResult, ids: Sequence[int]) -> list[dict[str, Any]]:
    """What came of each decision once its horizon had passed: the log return of the symbol
    over the horizon and whether the side it considered beat its costs. Decisions whose
    horizon runs past the data have no outcome yet."""
    market = result.market
    bar_of = {int(t): i for i, t in enumerate(market.times.view(np.int64))}
    rows = []
    for decision_id, decision in zip(ids, result.decisions, strict=True):
        bar = bar_of.get(_nanoseconds(decision.time))
        later = None if bar is None else bar + decision.horizon
        if later is None or later >= market.n_bars:
            continue
        column = market.index_of(decision.symbol)
        start, end = market.mark[bar, column], market.mark[later, column]
        if not (start > 0 and end > 0):
            continue
        realized = math.log(end / start)
        side = decision.details.get("side", 1 if decision.target > 0 else -1)
        cost = float(decision.details.get("cost", 0.0))
        hit = realized > math.log1p(cost) if side > 0 else realized < math.log1p(-cost)
        rows.append(
            {
                "decision_id": decision_id,
                "horizon": decision.horizon,
                "realized_return": realized,
                "hit": bool(hit),
                "resolved_at": market.time_of(later),
            }
        )
    return rows


def _nanoseconds(time: datetime) -> int:
    return int(np.datetime64(time.replace(tzinfo=None), "ns").view(np.int64))


@dataclass(frozen=True)
class StoredBacktest:
    """A recorded backtest as read back: enough to print it, compare it, or redraw its report."""

    run: Run
    trades: list[Trade]
    times: npt.NDArray[np.datetime64]
    equity: FloatArray
    benchmark: FloatArray | None

    @property
    def stats(self) -> Stats | None:
        return Stats.from_dict(self.run.stats) if self.run.stats else None


async def load_backtest(db: Database, ref: str, *, with_curves: bool = True) -> StoredBacktest:
    """The run ``ref`` (an id or a unique prefix of one) with its trades and equity curve."""
    from ffe.store.repositories import unit_of_work

    async with unit_of_work(db) as uow:
        run = await uow.runs.get(ref)
        trades = await uow.journal.trades(run.id) if with_curves else []
        points = await uow.journal.equity(run.id) if with_curves else []
    times = np.array([p.time.replace(tzinfo=None) for p in points], dtype="datetime64[ns]")
    equity = np.array([p.equity for p in points], dtype=np.float64)
    marks = [p.benchmark for p in points]
    benchmark = (
        np.array([np.nan if m is None else m for m in marks], dtype=np.float64)
        if any(m is not None for m in marks)
        else None
    )
    return StoredBacktest(run, trades, times, equity, benchmark)


def run_summary(run: Run) -> dict[str, Any]:
    """A run's own row as JSON-ready data (no trades or curve)."""
    return {
        "id": run.id,
        "kind": run.kind,
        "strategy": run.strategy,
        "params": run.params,
        "symbols": run.symbols,
        "timeframe": run.timeframe,
        "status": run.status,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "code_version": run.code_version,
        "data_fingerprint": run.data_fingerprint,
        "config": run.config,
        "stats": run.stats,
        "error": run.error,
    }


def compare_runs(a: Run, b: Run) -> dict[str, Any]:
    """Both runs' settings and stats, each stat's difference (b - a), and what they share."""
    stats_a, stats_b = a.stats or {}, b.stats or {}
    stats = {}
    for name in dict.fromkeys([*stats_a, *stats_b]):
        va, vb = stats_a.get(name), stats_b.get(name)
        both_numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (va, vb))
        stats[name] = {"a": va, "b": vb, "diff": vb - va if both_numbers else None}  # type: ignore[operator]
    return {
        "a": run_summary(a) | {"stats": None},
        "b": run_summary(b) | {"stats": None},
        "same_data": a.data_fingerprint is not None and a.data_fingerprint == b.data_fingerprint,
        "same_code": a.code_version == b.code_version,
        "same_config": a.config == b.config,
        "stats": stats,
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def render_result_report(result: BacktestResult) -> str:
    """The HTML report of a backtest just run."""
    stats = result.stats
    return _render(
        result.strategy.name,
        result.market.symbols,
        result.params,
        run_config(result),
        subtitle=f"{stats.start:%Y-%m-%d} to {stats.end:%Y-%m-%d}, "
        f"{result.market.n_bars:,} bars of {result.market.timeframe}",
        curves=(result.market.times, result.equity, result.benchmark),
        trades=result.trades,
        stats=stats,
        warnings=result.warnings,
    )


def render_stored_report(stored: StoredBacktest) -> str:
    """The HTML report of a recorded run, drawn from the journal alone (no re-run)."""
    run, stats = stored.run, stored.stats
    if stats is None or not stored.equity.size:
        from ffe.domain.errors import ConflictError, NotFoundError

        if run.status == "running":
            raise ConflictError(
                f"run {run.id[:8]} is still running: its report is drawn once it finishes"
            )
        raise NotFoundError(
            f"run {run.id[:8]} has no report: no stats or equity recorded (status {run.status})"
        )
    return _render(
        run.strategy,
        run.symbols,
        run.params,
        run.config,
        subtitle=f"{stats.start:%Y-%m-%d} to {stats.end:%Y-%m-%d}, "
        f"{len(stored.equity):,} bars of {run.timeframe} (run {run.id[:8]}, {run.code_version})",
        curves=(stored.times, stored.equity, stored.benchmark),
        trades=stored.trades,
        stats=stats,
        warnings=list((run.stats or {}).get("warnings", [])),
    )


def _render(
    strategy: str,
    symbols: Sequence[str],
    params: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    subtitle: str,
    curves: tuple[npt.NDArray[np.datetime64], FloatArray, FloatArray | None],
    trades: Sequence[Trade],
    stats: Stats,
    warnings: Sequence[str] = (),
) -> str:
    """One report layout for runs just made and runs read back: the same title and the same
    parameter list, taken from the config ``run_config`` records."""
    from ffe.backtest.report import render_backtest_report

    times, equity, benchmark = curves
    fill = config.get("fill", {})
    shown = ", ".join(symbols[:5]) + ("…" if len(symbols) > 5 else "")
    return render_backtest_report(
        title=f"{strategy} on {shown}",
        subtitle=subtitle,
        times=times,
        equity=equity,
        benchmark_equity=benchmark,
        trades=trades,
        stats=stats,
        warnings=warnings,
        params={
            **params,
            "cash": config.get("cash"),
            "fill": fill.get("at"),
            "commission": fill.get("commission"),
        },
    )
