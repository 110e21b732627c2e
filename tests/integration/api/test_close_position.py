"""Closing one position through the API: the agent orders it closed through its risk engine
and approval policy, the request is audited, and refusals say why."""

from __future__ import annotations

from typing import Any

from tests.support.wait import wait_for

from ffe.domain.orders import Denied


def _start(api, **body: Any) -> None:
    response = api.client.post("/api/v1/agent/start", json=body, headers=api.headers("trader"))
    assert response.status_code == 202, response.text


def _positions(api) -> list[dict[str, Any]]:
    return api.client.get("/api/v1/portfolio", headers=api.headers()).json()["positions"]


def _stop(api) -> None:
    api.client.post("/api/v1/agent/stop", headers=api.headers("trader"))
    wait_for(
        lambda: (
            not api.client.get("/api/v1/agent", headers=api.headers()).json()["supervised"][
                "running"
            ]
        )
    )


def _close(api, role: str = "trader", **body: Any):  # type: ignore[no-untyped-def]
    return api.client.post(
        "/api/v1/positions/SP500/close", json=body or None, headers=api.headers(role)
    )


def test_close_when_trader_confirms_then_order_sent_audited_and_position_gone(api):
    _start(api, strategy="buy_and_hold", speed=20)
    (held,) = wait_for(lambda: _positions(api))

    refused = _close(api, "viewer", quantity=held["quantity"])
    closed = _close(api, quantity=held["quantity"])

    assert refused.status_code == 403
    assert closed.status_code == 200, closed.text
    answer = closed.json()
    assert answer["status"] == "sent"
    assert answer["quantity"] == -held["quantity"]
    assert answer["client_order_id"]
    wait_for(lambda: not _positions(api))
    audit = api.client.get("/api/v1/audit", headers=api.headers()).json()["items"]
    entry = next(e for e in audit if e["action"] == "position.close")
    assert entry["target"] == "paper/SP500"
    assert entry["details"]["command_id"] == answer["command_id"]
    _stop(api)
    again = _close(api)
    assert again.status_code == 409
    assert "no agent is running on account 'paper'" in again.json()["detail"]


def test_close_when_quantity_changed_since_confirmed_then_409_saying_so(api):
    _start(api, strategy="buy_and_hold", speed=20)
    (held,) = wait_for(lambda: _positions(api))

    answer = _close(api, quantity=held["quantity"] * 2)

    assert answer.status_code == 409
    assert "not the" in answer.json()["detail"]
    assert "confirmed" in answer.json()["detail"]
    assert _positions(api)
    _stop(api)


def test_close_when_risk_engine_denies_then_409_naming_the_reason(api, monkeypatch):
    from ffe.risk.engine import RiskEngine

    real = RiskEngine.evaluate

    def deny_closes(self, intents, account):  # type: ignore[no-untyped-def]
        if any("-x" in i.client_id for i in intents):
            return [Denied(i, "test_check", "closing is not allowed today") for i in intents]
        return real(self, intents, account)

    monkeypatch.setattr(RiskEngine, "evaluate", deny_closes)
    _start(api, strategy="buy_and_hold", speed=20)
    wait_for(lambda: _positions(api))

    answer = _close(api)

    assert answer.status_code == 409
    assert answer.json()["detail"] == (
        "the risk engine denied closing SP500: closing is not allowed today"
    )
    assert _positions(api)
    _stop(api)


def test_close_when_approval_policy_is_manual_then_202_with_the_approval(api):
    _start(api, strategy="buy_and_hold", speed=20, approval="manual")
    first = wait_for(
        lambda: api.client.get("/api/v1/approvals", headers=api.headers()).json()["items"]
    )[0]
    api.client.post(f"/api/v1/approvals/{first['id']}/approve", headers=api.headers("trader"))
    (held,) = wait_for(lambda: _positions(api))

    answer = _close(api)

    assert answer.status_code == 202, answer.text
    found = answer.json()
    assert found["status"] == "waiting"
    assert found["approval"]["status"] == "pending"
    assert found["approval"]["quantity"] == -held["quantity"]
    assert _positions(api)  # nothing sent until a person approves
    _stop(api)


def test_close_when_no_agent_ever_ran_on_the_account_then_404(api):
    answer = _close(api)

    assert answer.status_code == 404
    assert answer.json()["detail"].startswith("no agent has run on account 'paper'")


def test_close_when_body_quantity_not_a_number_then_422(api):
    answer = api.client.post(
        "/api/v1/positions/SP500/close",
        content=b'{"quantity": "all"}',
        headers={**api.headers("trader"), "Content-Type": "application/json"},
    )

    assert answer.status_code == 422


def test_close_from_cli_when_agent_runs_in_the_api_then_same_outcomes(api):
    from typer.testing import CliRunner

    from ffe.cli.app import app

    _start(api, strategy="buy_and_hold", speed=20)
    wait_for(lambda: _positions(api))

    wrong = CliRunner().invoke(app, ["agent", "close", "SP500", "--quantity", "999"])
    closed = CliRunner().invoke(app, ["agent", "close", "SP500"])

    assert wrong.exit_code == 2
    assert "not the 999 confirmed" in wrong.output
    assert closed.exit_code == 0, closed.output
    assert closed.output.startswith("order ")
    assert "sent: SP500" in closed.output
    wait_for(lambda: not _positions(api))
    audit = api.client.get("/api/v1/audit", headers=api.headers()).json()["items"]
    assert [e["actor"] for e in audit if e["action"] == "position.close"] == ["cli", "cli"]
    _stop(api)
