"""A recorded backtest's trader views through the API: its round trips (open and closed,
derived from the fills the run recorded) and its returns by day, month and year."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import numpy as np
import pytest

from ffe.backtest.engine import BacktestConfig, run_backtest
from ffe.backtest.result import BacktestResult
from ffe.domain import History
from ffe.execution import FillModel

NAN = math.nan
N_BARS = 70  # daily bars from 2024-01-01: January, February and part of March


@dataclass
class Scripted:
    """Instructions by bar: long at 2, flat at 20, short at 30, long at 50 (a flip)."""

    name: ClassVar[str] = "scripted"

    def warmup(self) -> int:
        return 1

    def targets(self, history: History) -> np.ndarray:
        table = np.full((N_BARS, 1), NAN)
        table[2], table[20], table[30], table[50] = 1.0, 0.0, -1.0, 1.0
        return table[: len(history)].copy()


def _result(make_market) -> BacktestResult:
    closes = 100.0 + 4.0 * np.sin(np.arange(N_BARS) / 6.0)
    market = make_market(closes, start="2024-01-01", symbols=["SP500"])
    config = BacktestConfig(cash=10_000.0, fill=FillModel(commission=0.001), check_lookahead=False)
    return run_backtest(market, Scripted(), config)


def _record(api, result: BacktestResult) -> str:
    from ffe import bootstrap
    from ffe.runs.journal import record_backtest

    async def record() -> str:
        db = await bootstrap.open_journal(api.settings)
        try:
            return await record_backtest(db, result)
        finally:
            await db.dispose()

    return asyncio.run(record())


@pytest.fixture
def recorded(api, make_market) -> tuple[str, BacktestResult]:
    result = _result(make_market)
    return _record(api, result), result


def test_run_trades_when_recorded_then_round_trips_with_the_open_one_marked(api, recorded):
    run_id, result = recorded

    page = api.client.get(f"/api/v1/runs/{run_id}/trades", headers=api.headers("viewer")).json()

    assert page["source"] == "fills"
    assert [(t["direction"], t["status"]) for t in page["items"]] == [
        ("long", "closed"), ("short", "closed"), ("long", "open"),
    ]  # fmt: skip
    closed = [t for t in page["items"] if t["status"] == "closed"]
    assert sum(t["pnl"] for t in closed) == pytest.approx(sum(t.pnl for t in result.trades))
    still = page["items"][-1]
    assert still["exit_time"] is None
    assert still["mark_price"] == pytest.approx(result.market.close[-1, 0])
    assert still["quantity"] == pytest.approx(result.ledger.position(0))
    assert still["pnl"] == pytest.approx(
        result.equity[-1] - 10_000.0 - sum(t["pnl"] for t in closed)
    )
    first = page["items"][0]
    assert first["duration_s"] == pytest.approx(18 * 86400)  # filled at bars 3 and 21
    assert first["pnl_pct"] == pytest.approx(
        first["pnl"] / (first["entry_price"] * first["quantity"])
    )


def test_run_trades_are_paged(api, recorded):
    run_id, _ = recorded

    page = api.client.get(
        f"/api/v1/runs/{run_id}/trades", params={"limit": 1, "offset": 1}, headers=api.headers()
    ).json()

    assert (page["total"], page["limit"], page["offset"]) == (3, 1, 1)
    assert [t["direction"] for t in page["items"]] == ["short"]


def test_run_trades_when_the_run_kept_only_lot_trades_then_derived_from_them(api):
    from ffe import bootstrap
    from ffe.domain.orders import Trade
    from ffe.store.repositories import unit_of_work

    t0 = datetime(2024, 1, 2, tzinfo=UTC)

    async def seed() -> str:
        db = await bootstrap.open_journal(api.settings)
        try:
            async with unit_of_work(db) as uow:
                run = await uow.runs.add(kind="backtest", strategy="old", code_version="0")
                trades = [
                    Trade("SP500", t0, t0 + timedelta(days=2), 100.0, 110.0, 2.0, 19.0, 1.0),
                    Trade("SP500", t0, t0 + timedelta(days=3), 100.0, 95.0, 1.0, -5.5, 0.5),
                ]
                await uow.journal.add_trades(run.id, trades)
                await uow.runs.finish(run, {})
                return run.id
        finally:
            await db.dispose()

    run_id = asyncio.run(seed())
    page = api.client.get(f"/api/v1/runs/{run_id}/trades", headers=api.headers()).json()

    assert page["source"] == "trades"
    (trip,) = page["items"]
    assert (trip["pnl"], trip["quantity"], trip["status"]) == (13.5, 3.0, "closed")


def test_run_returns_by_day_month_and_year_compound_to_the_runs_return(api, recorded):
    run_id, result = recorded

    found = api.client.get(f"/api/v1/runs/{run_id}/returns", headers=api.headers()).json()

    assert found["run_id"] == run_id
    assert [m["period"] for m in found["monthly"]] == ["2024-01", "2024-02", "2024-03"]
    assert len(found["daily"]) == N_BARS
    total = result.equity[-1] / result.equity[0] - 1.0
    for name in ("daily", "monthly", "yearly"):
        grown = math.prod(1.0 + p["value"] for p in found[name])
        assert grown - 1.0 == pytest.approx(total), name


@pytest.mark.parametrize("path", ["trades", "returns"])
def test_run_views_of_an_unknown_run_then_404(api, path):
    response = api.client.get(f"/api/v1/runs/abcdef12/{path}", headers=api.headers())

    assert response.status_code == 404


def test_run_views_without_a_key_then_401(api, recorded):
    run_id, _ = recorded

    assert api.client.get(f"/api/v1/runs/{run_id}/trades").status_code == 401
    assert api.client.get(f"/api/v1/runs/{run_id}/returns").status_code == 401


def _seed_run(api, **fields) -> str:
    from ffe import bootstrap
    from ffe.store.repositories import unit_of_work

    async def seed() -> str:
        db = await bootstrap.open_journal(api.settings)
        try:
            async with unit_of_work(db) as uow:
                run = await uow.runs.add(kind="backtest", strategy="s", code_version="0", **fields)
                return run.id
        finally:
            await db.dispose()

    return asyncio.run(seed())


def test_run_bars_are_the_symbols_bars_over_the_run_only(api):
    window = {"first_bar": "2010-01-04T00:00:00+00:00", "last_bar": "2010-02-26T00:00:00+00:00"}
    run_id = _seed_run(api, symbols=["SP500"], config=window)

    found = api.client.get(f"/api/v1/runs/{run_id}/bars", headers=api.headers()).json()

    times = [b["time"] for b in found["bars"]]
    assert found["symbol"] == "SP500"
    assert times[0][:10] == "2010-01-04"
    assert times[-1][:10] == "2010-02-26"
    assert 30 < len(times) < 45


def test_run_bars_of_a_symbol_the_run_did_not_trade_then_404_naming_it(api):
    run_id = _seed_run(api, symbols=["SP500"])

    response = api.client.get(
        f"/api/v1/runs/{run_id}/bars", params={"symbol": "BTCUSD"}, headers=api.headers()
    )

    assert response.status_code == 404
    assert "BTCUSD" in response.text
    assert "SP500" in response.text  # what it did trade


def test_run_views_answers_match_the_schemas_the_spec_declares(api, recorded):
    from .test_openapi_spec import _conforms, _spec

    run_id, _ = recorded
    spec = _spec(api)

    trades = _conforms(api, spec, "/api/v1/runs/{run_id}/trades", f"/api/v1/runs/{run_id}/trades")
    returns = _conforms(
        api, spec, "/api/v1/runs/{run_id}/returns", f"/api/v1/runs/{run_id}/returns"
    )

    assert trades["items"]
    assert returns["monthly"]
