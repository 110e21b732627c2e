"""The account through the API: the paper agent started, watched live, steered, its
approvals decided, its portfolio read; backtest jobs run and reported."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from tests.support.wait import wait_for


def _start(api, **body: Any) -> dict[str, Any]:
    response = api.client.post("/api/v1/agent/start", json=body, headers=api.headers("trader"))
    assert response.status_code == 202, response.text
    return response.json()


def _finished(api) -> bool:
    return not api.client.get("/api/v1/agent", headers=api.headers()).json()["supervised"][
        "running"
    ]


def test_agent_started_through_the_api_trades_and_the_portfolio_matches_the_journal(api):
    _start(api, strategy="sma_cross", params={"fast": 10, "slow": 20}, speed=0)
    wait_for(lambda: _finished(api))
    portfolio = api.client.get("/api/v1/portfolio", headers=api.headers()).json()
    fills = api.client.get("/api/v1/fills?limit=1000", headers=api.headers()).json()
    assert fills["total"] > 10
    held = sum(f["quantity"] for f in fills["items"])
    assert [p["quantity"] for p in portfolio["positions"]] == ([held] if held else [])
    equity = api.client.get("/api/v1/equity?limit=100", headers=api.headers()).json()
    assert len(equity["points"]) <= 101
    assert abs(equity["points"][-1]["equity"] - portfolio["equity"]) < 1e-6
    assert min(p["drawdown"] for p in equity["points"]) <= 0
    assert equity["benchmark"]["drawn"] is True  # buy and hold beside the curve
    assert all(p["benchmark"] > 0 for p in equity["points"])
    assert equity["points"][0]["benchmark"] < 10_000  # the purchase paid its costs
    decisions = api.client.get("/api/v1/decisions?limit=5", headers=api.headers()).json()
    assert decisions["total"] > 0
    assert len(decisions["items"]) == 5
    assert {d["action"] for d in decisions["items"]} <= {"buy", "sell", "flat", "hold"}
    metrics = api.client.get("/metrics", headers=api.headers()).text
    assert 'ffe_decisions_total{action="buy",symbol="SP500"}' in metrics
    latency = re.search(r"^ffe_decision_latency_seconds_count (\S+)$", metrics, re.M)
    assert latency is not None
    assert float(latency.group(1)) > 0
    assert re.search(r'^ffe_portfolio_value\{account="paper"\} \S+$', metrics, re.M)


def test_stream_pushes_decisions_fills_and_equity_of_the_running_agent(api):
    with api.client.websocket_connect(
        "/api/v1/stream", headers={"Authorization": f"Bearer {api.keys['viewer']}"}
    ) as ws:
        assert ws.receive_json()["type"] == "hello"
        _start(api, strategy="sma_cross", params={"fast": 5, "slow": 10}, speed=0)
        seen: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 60
        while len(seen.keys() & {"decision", "fill", "equity"}) < 3:
            assert time.monotonic() < deadline, seen.keys()
            message = ws.receive_json()
            seen.setdefault(message["type"], message["data"])
        # Leave first: the test client cancels the server at once when its block ends, which
        # can land mid-unsubscribe; a real server lets the handler finish.
        ws.close()
        time.sleep(0.3)
    assert seen["fill"]["symbol"] == "SP500"
    assert seen["fill"]["price"] > 0
    assert seen["equity"]["account"] == "paper"
    assert seen["equity"]["equity"] > 0
    assert seen["decision"]["action"] in ("buy", "sell", "flat")


def test_manual_approval_through_the_api_sends_the_order(api):
    _start(api, strategy="buy_and_hold", speed=0, approval="manual")
    pending = wait_for(
        lambda: api.client.get("/api/v1/approvals", headers=api.headers()).json()["items"]
    )
    first = pending[0]
    assert first["status"] == "pending"
    assert first["symbol"] == "SP500"
    viewer = api.client.post(
        f"/api/v1/approvals/{first['id']}/approve", headers=api.headers("viewer")
    )
    assert viewer.status_code == 403
    approved = api.client.post(
        f"/api/v1/approvals/{first['id']}/approve", headers=api.headers("trader")
    )
    assert approved.status_code == 200
    assert approved.json()["decided_by"] == "key:trader-key"
    wait_for(lambda: _finished(api))
    fills = api.client.get("/api/v1/fills", headers=api.headers()).json()["items"]
    assert fills
    assert fills[-1]["quantity"] > 0
    audit = api.client.get("/api/v1/audit", headers=api.headers()).json()["items"]
    assert any(e["action"] == "approval.approved" for e in audit)


def test_emergency_stop_through_the_api_flattens_and_halts(api):
    _start(api, strategy="buy_and_hold", speed=200)
    wait_for(lambda: api.client.get("/api/v1/portfolio", headers=api.headers()).json()["positions"])
    stopped = api.client.post("/api/v1/agent/emergency-stop", headers=api.headers("trader"))
    assert stopped.status_code == 200
    assert stopped.json()["command"] == "emergency_stop"

    def halted() -> bool:
        agents = api.client.get("/api/v1/agent", headers=api.headers()).json()["agents"]
        return bool(agents) and agents[0]["status"] == "halted"

    wait_for(halted)
    assert api.client.get("/api/v1/portfolio", headers=api.headers()).json()["positions"] == []
    api.client.post("/api/v1/agent/stop", headers=api.headers("trader"))
    wait_for(lambda: _finished(api))


def test_backtest_job_runs_and_its_report_and_run_are_served(jobs_api):
    api = jobs_api
    body = {"strategy": "sma_cross", "symbols": ["SP500"], "params": {"fast": 10, "slow": 30}}
    job = api.client.post("/api/v1/backtests", json=body, headers=api.headers("trader")).json()
    assert job["status"] == "queued"

    def done() -> dict[str, Any] | None:
        found = api.client.get(f"/api/v1/jobs/{job['id']}", headers=api.headers()).json()
        return found if found["status"] in ("finished", "failed") else None

    finished = wait_for(done)
    assert finished["status"] == "finished", finished["error"]
    assert finished["result"]["trades"] > 0
    assert finished["progress"] == 1.0
    run = api.client.get(f"/api/v1/runs/{finished['run_id']}", headers=api.headers()).json()
    assert run["params"] == {"fast": 10, "slow": 30}
    report = api.client.get(f"/api/v1/runs/{finished['run_id']}/report", headers=api.headers())
    assert report.status_code == 200
    assert "<html" in report.text.lower()
    assert report.text.count("plotly.js v") == 1  # served with the library, once
    listed = api.client.get("/api/v1/backtests", headers=api.headers()).json()
    assert listed["items"][0]["id"] == job["id"]


def _sweep(api, **body: Any) -> dict[str, Any]:
    """Submit a sweep of SP500 and wait for it to end; return the finished job."""
    body = {"strategy": "sma_cross", "symbol": "SP500", **body}
    response = api.client.post("/api/v1/sweeps", json=body, headers=api.headers("trader"))
    assert response.status_code == 202, response.text
    path = f"/api/v1/jobs/{response.json()['id']}"
    done = wait_for(
        lambda: (
            found
            if (found := api.client.get(path, headers=api.headers()).json())["status"]
            in ("finished", "failed")
            else None
        )
    )
    assert done["status"] == "finished", done["error"]
    return done


def test_sweep_job_ranks_its_grid(jobs_api):
    api = jobs_api
    done = _sweep(api, grid={"fast": [5, 10], "slow": [30, 60]})

    rows = done["result"]["rows"]
    assert len(rows) == 4
    best = max(r["value"] for r in rows if r["value"] is not None)
    assert done["result"]["best"]["value"] == best
    assert done["result"]["direction"] == "maximize"


def test_sweep_job_by_a_lower_is_better_metric_picks_the_smallest(jobs_api):
    api = jobs_api
    done = _sweep(api, grid={"fast": [5, 10, 20], "slow": [60]}, metric="annual_volatility")

    values = [r["value"] for r in done["result"]["rows"] if r["value"] is not None]
    assert len(set(values)) > 1
    assert done["result"]["direction"] == "minimize"
    assert done["result"]["best"]["value"] == min(values)


def test_metrics_count_requests_by_route_template(api):
    api.client.get("/api/v1/runs/abcd", headers=api.headers())
    body = api.client.get("/metrics", headers=api.headers()).text
    assert 'route="/api/v1/runs/{run_id}"' in body
    assert "ffe_http_request_duration_seconds_bucket" in body


def test_health_ready_reports_each_check_without_auth(api):
    response = api.client.get("/health/ready")
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert checks["database"]["ok"]
    assert checks["disk"]["ok"]
    assert "redis" not in checks  # not configured: in-process cache, nothing to check


def test_stream_when_its_key_is_revoked_then_closed(api, monkeypatch):
    from starlette.websockets import WebSocketDisconnect

    from ffe.api.routes import stream

    monkeypatch.setattr(stream, "RECHECK_S", 0.2)
    made = api.client.post(
        "/api/v1/keys", json={"name": "watcher", "scopes": ["read"]}, headers=api.headers()
    ).json()
    with api.client.websocket_connect(
        "/api/v1/stream", headers={"Authorization": f"Bearer {made['key']}"}
    ) as ws:
        assert ws.receive_json()["type"] == "hello"
        revoked = api.client.delete(f"/api/v1/keys/{made['prefix']}", headers=api.headers())
        assert revoked.status_code == 200
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 1008
