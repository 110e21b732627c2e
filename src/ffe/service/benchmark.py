"""A run's equity curve with its buy-and-hold benchmark beside it, for every equity chart: the
API's live equity (``GET /api/v1/equity``) and a recorded run's (``GET /api/v1/runs/{id}/
equity``). The benchmark is ``ffe.backtest.benchmark.buy_and_hold`` of the run's symbols from
its first equity point, with the run's starting cash and fill costs, read from the bars the
catalog holds; a run whose bars it does not hold (a live feed's) gets none, and says why."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from ffe.backtest.benchmark import Costs, buy_and_hold
from ffe.domain.errors import FfeError
from ffe.service import runs
from ffe.store.database import Database
from ffe.store.models import Run

if TYPE_CHECKING:
    from ffe.data.source import BarSource

log = logging.getLogger(__name__)


async def equity_curve(db: Database, bars: BarSource, run_id: str, limit: int) -> dict[str, Any]:
    """``{run_id, points, benchmark}``: the run's equity points (``runs.equity_points``), each
    with the benchmark's value at its time, and what the benchmark is (None: none drawn)."""
    points = await runs.equity_points(db, run_id, limit)
    async with db.session() as session:
        run = await session.get(Run, run_id)
    about: dict[str, Any] | None = None
    if run is not None and points:
        about = await _attach(bars, run, points)
    for point in points:
        point.setdefault("benchmark", None)
    return {"run_id": run_id, "points": points, "benchmark": about}


async def _attach(bars: BarSource, run: Run, points: list[dict[str, Any]]) -> dict[str, Any]:
    config = run.config or {}
    fill = config.get("fill") or {}
    costs = Costs(
        commission=float(fill.get("commission") or 0.0),
        slippage_bps=float(fill.get("slippage_bps") or 0.0),
        fixed_commission=float(fill.get("fixed_commission") or 0.0),
    )
    cash = float(config.get("cash") or points[0]["equity"] or 0.0)
    symbols = list(run.symbols)
    label = f"Buy & hold {', '.join(symbols)}"
    try:
        values = await asyncio.to_thread(_values, bars, symbols, points, cash, costs)
    except FfeError as exc:  # no stored bars of a symbol, a bad cash: the curve alone
        log.info("no benchmark for run %s: %s", run.id[:8], exc)
        return {"label": label, "note": f"no benchmark: {exc}", "drawn": False}
    for point, value in zip(points, values, strict=True):
        point["benchmark"] = value
    note = (
        f"{label}: equal weight, bought at the run's first close with the same cash "
        f"({cash:,.0f}) and costs ({costs.describe()}), held to the end"
    )
    return {"label": label, "note": note, "drawn": True}


def _values(
    bars: BarSource, symbols: list[str], points: list[dict[str, Any]], cash: float, costs: Costs
) -> list[float | None]:
    """The benchmark at each point's time: its value at the last bar at or before it."""
    from ffe.data import load_market

    first, last = points[0]["time"], points[-1]["time"]
    market = load_market(bars, symbols, start=first, end=last)
    value = buy_and_hold(market.mark, cash, costs)
    times = np.array([_naive(p["time"]) for p in points], dtype="datetime64[ns]")
    at = np.searchsorted(market.times, times, side="right") - 1
    return [None if i < 0 else float(value[i]) for i in at]


def _naive(iso: str) -> np.datetime64:
    """An ISO time as a naive UTC datetime64, as the bars' times are."""
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return np.datetime64(moment, "ns")
