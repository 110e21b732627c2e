"""The live account's round trips, derived from its fills (GET /api/v1/trades)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from tests.support.wait import wait_for


def test_trades_when_agent_ran_then_realised_and_unrealised_pnl_add_up_to_the_account_pnl(api):
    started = api.client.post(
        "/api/v1/agent/start",
        json={"strategy": "sma_cross", "params": {"fast": 5, "slow": 10}, "speed": 0},
        headers=api.headers("trader"),
    )
    assert started.status_code == 202
    wait_for(
        lambda: (
            not api.client.get("/api/v1/agent", headers=api.headers()).json()["supervised"][
                "running"
            ]
        )
    )

    found = api.client.get("/api/v1/trades?limit=1000", headers=api.headers()).json()
    newest = api.client.get("/api/v1/trades?limit=2", headers=api.headers()).json()
    portfolio = api.client.get("/api/v1/portfolio", headers=api.headers()).json()

    assert found["closed"] > 5
    assert found["wins"] <= found["closed"]
    items = found["items"]
    assert all(t["duration_s"] is not None and t["duration_s"] >= 0 for t in items)
    closed = [t for t in items if t["status"] == "closed"]
    assert all(t["pnl"] == t["realized_pnl"] for t in closed)
    assert sum(t["realized_pnl"] for t in items) == pytest.approx(found["realized_pnl"])
    # the run route's round trips, with the names this route used before kept beside them
    assert all(
        (t["side"], t["fees"], t["return_pct"]) == (t["direction"], t["commission"], t["pnl_pct"])
        for t in items
    )
    unrealized = found["unrealized_pnl"] or 0.0
    assert found["realized_pnl"] + unrealized == pytest.approx(portfolio["pnl"], abs=1e-6)
    assert found["total"] == len(items) == found["closed"] + found["open"]
    assert newest["items"] == items[:2]
    assert newest["realized_pnl"] == found["realized_pnl"]
    times = [t["exit_time"] or t["entry_time"] for t in items]
    assert times == sorted(times, reverse=True)


def test_trades_when_no_run_then_empty(api):
    found = api.client.get("/api/v1/trades", headers=api.headers("viewer")).json()

    assert (found["items"], found["closed"], found["realized_pnl"]) == ([], 0, 0.0)


def test_trades_of_a_run_are_the_same_round_trips_as_the_run_routes(api):
    """One definition of a trade: the overview's (this route) and a backtest page's
    (/runs/{id}/trades) agree, partial exit and flip included."""
    from ffe import bootstrap
    from ffe.store.repositories import unit_of_work

    t0 = datetime(2024, 1, 2, tzinfo=UTC)
    booked = [(0, 10, 100.0, 1.0), (1, -4, 110.0, 0.4), (2, -16, 105.0, 1.6), (3, 10, 95.0, 1.0)]

    async def seed() -> str:
        db = await bootstrap.open_journal(api.settings)
        try:
            async with unit_of_work(db) as uow:
                run = await uow.runs.add(kind="paper", strategy="s", code_version="0")
                rows = [
                    {"time": t0 + timedelta(days=d), "symbol": "SP500", "quantity": q,
                     "price": p, "commission": c}
                    for d, q, p, c in booked
                ]  # fmt: skip
                await uow.journal.add_fills(run.id, rows)
                return run.id
        finally:
            await db.dispose()

    run_id = asyncio.run(seed())
    live = api.client.get(f"/api/v1/trades?run_id={run_id}", headers=api.headers()).json()
    page = api.client.get(f"/api/v1/runs/{run_id}/trades", headers=api.headers()).json()

    assert [t["direction"] for t in page["items"]] == ["long", "short"]
    long = page["items"][0]
    assert (long["quantity"], long["entry_price"]) == (10.0, 100.0)
    assert long["exit_price"] == pytest.approx((4 * 110.0 + 6 * 105.0) / 10)
    assert long["pnl"] == pytest.approx(40.0 + 30.0 - 1.0 - 0.4 - 0.6)
    shared = [{k: t[k] for k in page["items"][0]} for t in reversed(live["items"])]
    assert shared == page["items"]
    assert live["realized_pnl"] == pytest.approx(sum(t["pnl"] for t in page["items"]))
