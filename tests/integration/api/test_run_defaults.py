"""The API answers the defaults a backtest uses, and the dashboard's form starts from them."""

from __future__ import annotations

from ffe.domain.defaults import DEFAULTS


def test_run_defaults_when_nothing_configured_then_the_one_set_of_defaults(api) -> None:
    response = api.client.get("/api/v1/backtests/defaults", headers=api.headers("viewer"))

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer.pop("fill_at") == "next_open"
    assert answer == DEFAULTS.as_dict()


def test_run_defaults_when_configured_then_the_server_settings(api_with) -> None:
    with api_with(FFE__BACKTEST__COMMISSION="0.0005", FFE__RISK__MAX_DRAWDOWN="0.2") as api:
        answer = api.client.get("/api/v1/backtests/defaults", headers=api.headers()).json()

    assert (answer["commission"], answer["max_drawdown"]) == (0.0005, 0.2)
    assert answer["cash"] == DEFAULTS.cash


def test_run_defaults_when_no_credential_then_refused(api) -> None:
    assert api.client.get("/api/v1/backtests/defaults").status_code == 401


def test_backtest_request_when_slippage_out_of_range_then_422_naming_it(api) -> None:
    body = {"strategy": "sma_cross", "symbols": ["SP500"], "slippage_bps": -1}

    response = api.client.post("/api/v1/backtests", json=body, headers=api.headers("trader"))

    assert response.status_code == 422
    assert "slippage_bps" in response.text
