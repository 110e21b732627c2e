"""The equity curve thinned in the database gives the points the Python thinning gave (numpy's
``linspace`` picks, float rounding included, plus the worst drawdown), on SQLite and
PostgreSQL; the run's peak and worst drawdown come from the same SQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from ffe.service.runs import equity_points, journal_drawdown
from ffe.store.database import Database
from ffe.store.repositories import unit_of_work

T0 = datetime(2020, 1, 1, tzinfo=UTC)
Point = tuple[datetime, float, float | None]


async def _run_with(db: Database, equity: list[float], cash: list[float | None]) -> str:
    times = [T0 + timedelta(days=i) for i in range(len(equity))]
    async with unit_of_work(db) as uow:
        run = await uow.runs.add(kind="paper", strategy="buy_and_hold", code_version="t")
        await uow.journal.add_equity(run.id, times, equity, cash=cash)
        return run.id


def _numpy_thinning(points: list[Point], limit: int) -> list[dict[str, Any]]:
    """What ``equity_points`` answered when it read every point and thinned them in Python."""
    if not points:
        return []
    equity = np.array([e for _, e, _ in points], dtype=float)
    peak = np.fmax.accumulate(equity)
    drawdown = np.where(peak > 0, equity / peak - 1, 0.0)
    n, worst = len(points), int(np.argmin(drawdown))
    keep = set(range(n)) if n <= limit else set(np.linspace(0, n - 1, limit).astype(int).tolist())
    return [
        {
            "time": points[i][0].isoformat(),
            "equity": float(equity[i]),
            "cash": points[i][2],
            "drawdown": float(drawdown[i]),
        }
        for i in sorted(keep | {worst})
    ]


def _walk(n: int, crash_at: int) -> tuple[list[float], list[float | None]]:
    """A random equity walk whose worst drawdown is a one-bar crash at ``crash_at``."""
    rng = np.random.default_rng(7)
    equity = 10_000.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.01, n)))
    equity[crash_at] = 0.3 * equity[:crash_at].max()
    cash = [None if i % 7 == 0 else float(e) / 3 for i, e in enumerate(equity)]
    return equity.tolist(), cash


# 36, 58, 71, 115, 141: limits at which exact integer steps over 3001 points pick another
# point than numpy's float steps do.
LIMITS = [2, 3, 36, 58, 71, 100, 115, 141, 1000, 2999, 3000, 3001, 100_000]


async def test_equity_points_when_thinned_in_sql_then_same_points_as_the_numpy_thinning(db):
    n, crash_at = 3001, 1777
    equity, cash = _walk(n, crash_at)
    run_id = await _run_with(db, equity, cash)
    points = [(T0 + timedelta(days=i), equity[i], cash[i]) for i in range(n)]

    for limit in LIMITS:
        found = await equity_points(db, run_id, limit)

        assert found == _numpy_thinning(points, limit), limit
        assert len(found) <= limit + 1
    thinned = await equity_points(db, run_id, 100)
    worst = min(thinned, key=lambda p: p["drawdown"])
    assert worst["time"] == points[crash_at][0].isoformat()  # not on the even grid, kept
    assert crash_at not in np.linspace(0, n - 1, 100).astype(int)


async def test_equity_points_when_the_worst_drawdown_lasts_then_its_first_bar_is_kept(db):
    equity = [100.0, 120.0, 60.0, 60.0, 60.0, 90.0, 80.0, 100.0]
    run_id = await _run_with(db, equity, [None] * len(equity))
    points = [(T0 + timedelta(days=i), e, None) for i, e in enumerate(equity)]

    found = await equity_points(db, run_id, 2)

    assert found == _numpy_thinning(points, 2)
    assert [p["equity"] for p in found] == [100.0, 60.0, 100.0]
    assert found[1]["time"] == (T0 + timedelta(days=2)).isoformat()


async def test_equity_points_when_few_or_no_points_then_all_or_none(db):
    one = await _run_with(db, [10_000.0], [10_000.0])
    empty = await _run_with(db, [], [])

    assert await equity_points(db, one, 2) == _numpy_thinning([(T0, 10_000.0, 10_000.0)], 2)
    assert await equity_points(db, empty, 100) == []


async def test_journal_drawdown_is_the_peak_and_the_worst_drawdown_of_every_point(db):
    equity, cash = _walk(3001, 1777)
    run_id = await _run_with(db, equity, cash)
    empty = await _run_with(db, [], [])

    peak, worst = await journal_drawdown(db, run_id)

    curve = np.array(equity)
    assert peak == curve.max()
    assert worst == (curve / np.maximum.accumulate(curve) - 1).min()
    assert worst == pytest.approx(-0.7, abs=1e-9)
    assert await journal_drawdown(db, empty) == (0.0, 0.0)
