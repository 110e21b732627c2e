"""A run's equity curve comes with buy and hold of its symbols: the same cash, the run's
costs paid on the one purchase, marked at the bars' closes; none, with the reason, for
symbols the catalog has no bars of."""

from __future__ import annotations

from pathlib import Path

import pytest

from ffe.data import DataCatalog, load_market
from ffe.service.benchmark import equity_curve
from ffe.store.database import Database
from ffe.store.repositories import unit_of_work

CONFIG = {"cash": 10_000.0, "fill": {"commission": 0.001, "slippage_bps": 2.0}}


async def _run(db: Database, symbols: list[str], times: list, equity: list[float]) -> str:
    async with unit_of_work(db) as uow:
        run = await uow.runs.add(
            kind="paper", strategy="sma_cross", code_version="t", symbols=symbols, config=CONFIG
        )
        await uow.journal.add_equity(run.id, times, equity, cash=[None] * len(times))
        return run.id


async def test_equity_curve_when_bars_known_then_buy_and_hold_beside_it(
    db: Database, tmp_path: Path
) -> None:
    catalog = DataCatalog(tmp_path)
    market = load_market(catalog, ["SP500"], start="2010-01-04", end="2010-01-29")
    times = [market.time_of(i) for i in range(market.n_bars)]
    run_id = await _run(db, ["SP500"], times, [10_000.0] * len(times))
    curve = await equity_curve(db, catalog, run_id, 1000)
    closes = market.mark[:, 0]
    units = 10_000.0 / (closes[0] * 1.0002 * 1.001)
    values = [p["benchmark"] for p in curve["points"]]
    assert values == pytest.approx((units * closes).tolist())
    assert curve["benchmark"]["drawn"] is True
    assert curve["benchmark"]["label"] == "Buy & hold SP500"
    assert "10 bp commission" in curve["benchmark"]["note"]


async def test_equity_curve_when_no_bars_then_no_benchmark_and_why(
    db: Database, tmp_path: Path
) -> None:
    times = [load_market(DataCatalog(tmp_path), ["SP500"], end="1999-01-05").time_of(0)]
    run_id = await _run(db, ["NOPE"], times, [10_000.0])
    curve = await equity_curve(db, DataCatalog(tmp_path), run_id, 1000)
    assert curve["points"][0]["benchmark"] is None
    assert curve["benchmark"]["drawn"] is False
    assert "NOPE" in curve["benchmark"]["note"]
