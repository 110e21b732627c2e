"""The live account's round trips, derived from its fills (GET /api/v1/trades)."""

from __future__ import annotations

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
    assert sum(t["pnl"] for t in closed) == pytest.approx(found["realized_pnl"])
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
