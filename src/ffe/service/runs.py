"""Reading recorded runs (backtests, paper and live sessions), once for ``ffe runs`` and the
API's run routes: list them, show one, compare two, draw a report again, and a run's equity
curve and drawdown as the journal has them (which an agent restarted on its run carries
over, ``ffe.service.agents``).

Answers are the journal's rows or JSON-ready data; the callers present them.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Double,
    Integer,
    Select,
    and_,
    case,
    cast,
    false,
    func,
    or_,
    select,
    true,
)

from ffe.store.database import Database
from ffe.store.models import EquityPoint, Run
from ffe.store.repositories import unit_of_work

if TYPE_CHECKING:
    from ffe.portfolio.trades import RoundTrip
    from ffe.runs.calendar import CalendarReturns
    from ffe.runs.journal import StoredBacktest


async def list_runs(
    db: Database,
    *,
    kind: str | None = None,
    strategy: str | None = None,
    limit: int = 20,
    offset: int = 0,
) -> list[Run]:
    """Runs newest first, of ``kind`` and ``strategy`` when given."""
    async with unit_of_work(db) as uow:
        return list(await uow.runs.list(kind=kind, strategy=strategy, limit=limit, offset=offset))


async def get_run(db: Database, ref: str) -> Run:
    """The run ``ref`` (an id or a unique prefix of one); NotFoundError when none is."""
    async with unit_of_work(db) as uow:
        return await uow.runs.get(ref)


async def load_run(db: Database, ref: str, *, curves: bool = True) -> StoredBacktest:
    """The run ``ref`` with its trades and equity curve (``curves``), or without them."""
    from ffe.runs.journal import load_backtest  # numpy: not for `ffe runs list`

    return await load_backtest(db, ref, with_curves=curves)


async def compare(db: Database, a: str, b: str) -> tuple[Run, Run, dict[str, Any]]:
    """Runs ``a`` and ``b`` and their comparison: settings, data, code and every statistic."""
    from ffe.runs.journal import compare_runs

    first, second = await get_run(db, a), await get_run(db, b)
    return first, second, compare_runs(first, second)


async def report_html(db: Database, ref: str, *, standalone: bool = False) -> str:
    """The HTML report of a finished run, drawn from the journal alone (on a thread: a long
    run's report takes a while to draw). It loads plotly.js from beside it, as
    ``write_report`` writes it, or with ``standalone`` carries it (a page that loads
    nothing else, as the API serves it)."""
    from ffe.backtest.html import with_inline_library
    from ffe.runs.journal import load_backtest, render_stored_report

    stored = await load_backtest(db, ref)
    html = await asyncio.to_thread(render_stored_report, stored)
    return with_inline_library(html) if standalone else html


# -- trades and returns --------------------------------------------------------------------


async def round_trips(db: Database, ref: str) -> tuple[Run, list[RoundTrip], str]:
    """The run's round trips, oldest entry first, and what they were derived from:
    ``"fills"`` (those still open valued at their last mark), or ``"trades"`` for a backtest
    recorded before its fills were (closed lots only: what was open is not known)."""
    from ffe.portfolio.trades import Execution, Mark, executions_of_trades
    from ffe.portfolio.trades import round_trips as derive

    async with unit_of_work(db) as uow:
        run = await uow.runs.get(ref)
        fills = await uow.journal.fills(run.id)
        trades = [] if fills else await uow.journal.trades(run.id)
        snapshots = await uow.journal.positions(run.id) if fills else []
    if not fills:
        return run, await asyncio.to_thread(derive, executions_of_trades(trades)), "trades"
    executions = [Execution(f.time, f.symbol, f.quantity, f.price, f.commission) for f in fills]
    marks = {
        p.symbol: Mark(p.time, p.mark_price) for p in snapshots if p.mark_price is not None
    }  # the newest snapshot of a symbol wins
    return run, await asyncio.to_thread(derive, executions, marks), "fills"


async def calendar(db: Database, ref: str) -> tuple[Run, CalendarReturns]:
    """The run's returns by UTC day, month and year, from its whole equity curve."""
    from ffe.runs.calendar import calendar_returns

    async with unit_of_work(db) as uow:
        run = await uow.runs.get(ref)
    query = (
        select(EquityPoint.time, EquityPoint.equity)
        .where(EquityPoint.run_id == run.id)
        .order_by(EquityPoint.time)
    )
    async with db.session() as session:
        rows = (await session.execute(query)).all()
    times = [r.time for r in rows if _finite(r.equity) is not None]
    equity = [float(r.equity) for r in rows if _finite(r.equity) is not None]
    return run, await asyncio.to_thread(calendar_returns, times, equity)


# -- curves ---------------------------------------------------------------------------------


async def equity_points(db: Database, run_id: str, limit: int) -> list[dict[str, Any]]:
    """The run's equity with its drawdown, thinned evenly to at most ``limit`` points (the
    drawdown is computed on every point first, so thinning never hides the worst one).

    Thinned in the database, in one statement: a long run's curve (a live agent's, 10^6
    points) is neither sent nor held in memory here, and the event loop stays free."""
    curve = _drawdowns(run_id).cte("curve")
    size = select(func.count().label("n")).where(EquityPoint.run_id == run_id).subquery("size")
    # the point of the worst drawdown (the first of equals), kept whatever the thinning
    worst = select(curve.c.i).order_by(curve.c.drawdown, curve.c.i).limit(1).scalar_subquery()
    query = (
        select(curve.c.time, curve.c.equity, curve.c.cash, curve.c.drawdown)
        .select_from(curve.join(size, true()))
        .where(or_(curve.c.i == worst, _evenly(curve.c.i, size.c.n, limit)))
        .order_by(curve.c.i)
    )
    async with db.session() as session:
        rows = (await session.execute(query)).all()
    return [
        {
            "time": r.time.isoformat(),
            "equity": _finite(r.equity),
            "cash": _finite(r.cash),
            "drawdown": _finite(r.drawdown),
        }
        for r in rows
    ]


async def journal_drawdown(db: Database, run_id: str) -> tuple[float, float]:
    """The run's highest equity and its worst drawdown (a fraction ``<= 0``) over the points
    it has journaled, in one query; zeros for a run with none yet."""
    curve = _drawdowns(run_id).subquery()
    query = select(func.max(curve.c.equity), func.min(curve.c.drawdown))
    async with db.session() as session:
        peak, worst = (await session.execute(query)).one()
    return float(peak or 0.0), min(0.0, float(worst or 0.0))


def _drawdowns(run_id: str) -> Select[Any]:
    """The run's equity points (time, equity, cash) with their index ``i`` in time order and
    their drawdown from the running peak: ``equity / peak - 1``, 0 while the peak is not
    positive. One pass over the run's points, in the order of its primary key."""
    point = EquityPoint
    running = func.max(point.equity).over(order_by=point.time, rows=(None, 0))
    peaks = (
        select(
            point.time,
            point.equity,
            point.cash,
            running.label("peak"),
            (func.row_number().over(order_by=point.time) - 1).label("i"),
        )
        .where(point.run_id == run_id)
        .subquery()
    )
    drawdown = case((peaks.c.peak > 0, peaks.c.equity / peaks.c.peak - 1.0), else_=0.0)
    return select(peaks.c.time, peaks.c.equity, peaks.c.cash, peaks.c.i, drawdown.label("drawdown"))


def _evenly(i: Any, n: Any, limit: int) -> ColumnElement[bool]:
    """Whether point ``i`` (from 0) of ``n`` is one of ``limit`` spread evenly from the first
    to the last: all of them when ``n <= limit``, else the ones
    ``numpy.linspace(0, n - 1, limit).astype(int)`` picks, float rounding included (the
    thinning was done so in Python; the curve keeps its points).

    Step ``k`` lands at ``k * step``, ``step = (n - 1) / (limit - 1)``, more than 1 apart, so
    the only step that can land on ``i`` is the first at or after it, found in integers; the
    point is kept when that step, multiplied in doubles as numpy does, truncates to ``i``.
    The last step is ``n - 1`` exactly."""
    if limit < 2:
        return i == 0 if limit == 1 else false()
    last, gaps = n - 1, limit - 1
    divisor = func.nullif(last, 0, type_=Integer)  # n == 1: NULL, not a division by 0
    k = (i * gaps + last - 1) // divisor  # integers: exact on both engines
    step = cast(last, Double) / float(gaps)
    at = cast(k, Double) * step
    return or_(n <= limit, i == last, and_(k < gaps, at >= i, at < i + 1))


def _finite(value: Any) -> float | None:
    """A float for JSON: None for NaN and infinities (JSON has neither)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
