"""Bad input gets a 4xx whose ``detail`` says what to fix, never a 500: malformed JSON, wrong
types, unknown fields, out-of-range numbers, path-like symbols, bad dates and ids, unknown
strategies, jobs, approvals and accounts, missing auth and missing scopes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from ffe.decide.strategy import available

from .conftest import Api, make_api


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One API for the module: every request here is refused and changes nothing, and a new
    API per test costs seconds. Module-scoped, so it sets its own data directory."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FFE__DATA__DIR", str(tmp_path_factory.mktemp("bad-input")))
        mp.delenv("FFE__DATABASE__URL", raising=False)
        yield from make_api(mp, FFE__API__RATE_LIMIT="1000000")


def _post(api: Api, path: str, body: object, role: str = "admin") -> httpx.Response:
    return api.client.post(path, json=body, headers=api.headers(role))


def _get(api: Api, path: str) -> httpx.Response:
    return api.client.get(path, headers=api.headers())


def _detail(response: httpx.Response) -> str:
    detail = response.json()["detail"]
    assert isinstance(detail, str), detail
    return detail


# -- bodies ---------------------------------------------------------------------------------


def test_post_backtest_when_body_not_json_then_422_says_json(api: Api) -> None:
    headers = {**api.headers(), "Content-Type": "application/json"}

    response = api.client.post("/api/v1/backtests", content=b'{"strategy": ', headers=headers)

    assert response.status_code == 422
    assert "the body is not valid JSON (at character" in _detail(response)


def test_post_backtest_when_body_not_utf8_then_400(api: Api) -> None:
    headers = {**api.headers(), "Content-Type": "application/json"}

    response = api.client.post(
        "/api/v1/backtests", content=b'{"strategy": "\xe9"}', headers=headers
    )

    assert response.status_code == 400
    assert "body" in _detail(response)


def test_post_backtest_when_body_is_a_list_then_422_says_object(api: Api) -> None:
    response = _post(api, "/api/v1/backtests", ["sma_cross"])

    assert response.status_code == 422
    assert "object" in _detail(response)


def test_post_backtest_when_field_has_wrong_type_then_422_names_field(api: Api) -> None:
    response = _post(api, "/api/v1/backtests", {"strategy": 5})

    assert response.status_code == 422
    assert "strategy: Input should be a valid string" in _detail(response)


def test_post_backtest_when_symbols_not_a_list_then_422_names_field(api: Api) -> None:
    response = _post(api, "/api/v1/backtests", {"symbols": "SP500"})

    assert response.status_code == 422
    assert "symbols" in _detail(response)
    assert "list" in _detail(response)


def test_post_backtest_when_field_unknown_then_422_names_it(api: Api) -> None:
    response = _post(api, "/api/v1/backtests", {"stratgy": "sma_cross"})

    assert response.status_code == 422
    assert "stratgy: Extra inputs are not permitted" in _detail(response)


def test_post_agent_start_when_field_unknown_then_422_names_it(api: Api) -> None:
    response = _post(api, "/api/v1/agent/start", {"symbol": "SP500"})

    assert response.status_code == 422
    assert "symbol: Extra inputs are not permitted" in _detail(response)


def test_post_backtest_when_cash_negative_then_422_names_bound(api: Api) -> None:
    response = _post(api, "/api/v1/backtests", {"cash": -100})

    assert response.status_code == 422
    assert "cash: Input should be greater than 0" in _detail(response)


def test_post_backtest_when_cash_huge_then_422_names_bound(api: Api) -> None:
    response = _post(api, "/api/v1/backtests", {"cash": 1e300})

    assert response.status_code == 422
    assert "cash: Input should be less than or equal to" in _detail(response)


def test_post_backtest_when_cash_nan_then_422_says_finite(api: Api) -> None:
    headers = {**api.headers(), "Content-Type": "application/json"}

    response = api.client.post("/api/v1/backtests", content=b'{"cash": NaN}', headers=headers)

    assert response.status_code == 422
    assert "cash: Input should be a finite number" in _detail(response)


def test_post_forecast_bench_when_window_huge_then_422_names_bound(api: Api) -> None:
    response = _post(api, "/api/v1/forecast/bench", {"window": 10**12})

    assert response.status_code == 422
    assert "window: Input should be less than or equal to 10000" in _detail(response)


def test_post_forecast_bench_when_horizon_negative_then_422_names_range(api: Api) -> None:
    response = _post(api, "/api/v1/forecast/bench", {"horizons": [-1]})

    assert response.status_code == 422
    assert "horizons are 1 to 60 bars" in _detail(response)


def test_post_key_when_scope_unknown_then_422_names_valid_ones(api: Api) -> None:
    response = _post(api, "/api/v1/keys", {"name": "bot", "scopes": ["root"]})

    assert response.status_code == 422
    assert "'read', 'trade' or 'admin'" in _detail(response)


# -- symbols, dates and ids -----------------------------------------------------------------


def test_post_backtest_when_symbol_is_a_path_then_422_names_it(api: Api) -> None:
    response = _post(api, "/api/v1/backtests", {"symbols": ["../etc"]})

    assert response.status_code == 422
    assert "'../etc' is not a symbol" in _detail(response)


def test_post_sweep_when_symbol_is_a_path_then_422_names_field(api: Api) -> None:
    response = _post(api, "/api/v1/sweeps", {"symbol": "../etc", "grid": {"fast": [5]}})

    assert response.status_code == 422
    assert "symbol" in _detail(response)


def test_get_bars_when_symbol_starts_with_dot_then_422_names_it(api: Api) -> None:
    response = _get(api, "/api/v1/market/..etc/bars")

    assert response.status_code == 422
    assert "path.symbol" in _detail(response)


def test_get_bars_when_symbol_is_an_encoded_path_then_404(api: Api) -> None:
    response = _get(api, "/api/v1/market/..%2F..%2Fetc%2Fpasswd/bars")

    assert response.status_code == 404
    assert "not found" in _detail(response).lower()


def test_get_bars_when_symbol_unknown_then_404_names_known_ones(api: Api) -> None:
    response = _get(api, "/api/v1/market/NOPE/bars")

    assert response.status_code == 404
    assert "unknown symbol 'NOPE'" in _detail(response)
    assert "SP500" in _detail(response)


def test_post_backtest_when_date_not_a_date_then_422_names_field(api: Api) -> None:
    response = _post(api, "/api/v1/backtests", {"start": "yesterday"})

    assert response.status_code == 422
    assert "start: String should match pattern" in _detail(response)


def test_post_backtest_when_date_impossible_then_422_names_field(api: Api) -> None:
    response = _post(api, "/api/v1/backtests", {"start": "2020-13-45"})

    assert response.status_code == 422
    assert "start: Value error, '2020-13-45' is not a calendar date" in _detail(response)


def test_post_backtest_when_start_after_end_then_422_says_swap(api: Api) -> None:
    response = _post(api, "/api/v1/backtests", {"start": "2021-01-01", "end": "2020-01-01"})

    assert response.status_code == 422
    assert "start 2021-01-01 is after end 2020-01-01: swap them" in _detail(response)


def test_get_run_when_id_not_hex_then_422_names_run_id(api: Api) -> None:
    response = _get(api, "/api/v1/runs/zzzz")

    assert response.status_code == 422
    assert "path.run_id" in _detail(response)


def test_get_orders_when_run_id_not_hex_then_422_names_run_id(api: Api) -> None:
    response = _get(api, "/api/v1/orders?run_id=../etc")

    assert response.status_code == 422
    assert "query.run_id" in _detail(response)


def test_get_run_when_unknown_then_404_names_it(api: Api) -> None:
    response = _get(api, "/api/v1/runs/abcd1234")

    assert response.status_code == 404
    assert "no run 'abcd1234'" in _detail(response)


def test_get_job_when_id_not_hex_then_422_names_job_id(api: Api) -> None:
    response = _get(api, "/api/v1/jobs/not-a-job")

    assert response.status_code == 422
    assert "path.job_id" in _detail(response)


def test_get_job_when_unknown_then_404_names_it(api: Api) -> None:
    job_id = "0123456789abcdef" * 2

    response = _get(api, f"/api/v1/jobs/{job_id}")

    assert response.status_code == 404
    assert f"no job '{job_id}'" in _detail(response)


# -- what the request names: strategies, grids, approvals, accounts, analyses ----------------


def test_post_backtest_when_strategy_unknown_then_4xx_names_valid_ones(api: Api) -> None:
    response = _post(api, "/api/v1/backtests", {"strategy": "moonshot"})

    assert response.status_code in (400, 422)
    detail = _detail(response)
    assert "unknown strategy 'moonshot'" in detail
    assert all(name in detail for name in available())


def test_post_sweep_when_strategy_unknown_then_4xx_names_valid_ones(api: Api) -> None:
    response = _post(api, "/api/v1/sweeps", {"strategy": "moonshot", "grid": {"fast": [5]}})

    assert response.status_code in (400, 422)
    assert all(name in _detail(response) for name in available())


def test_post_backtest_when_param_unknown_then_422_names_it_and_valid_ones(api: Api) -> None:
    response = _post(api, "/api/v1/backtests", {"params": {"fsat": 5}})

    assert response.status_code == 422
    assert "no parameter fsat" in _detail(response)
    assert "fast, slow" in _detail(response)


def test_post_backtest_when_param_of_wrong_type_then_422_names_it(api: Api) -> None:
    response = _post(api, "/api/v1/backtests", {"params": {"fast": "abc"}})

    assert response.status_code == 422
    assert "fast='abc'" in _detail(response)


def test_post_sweep_when_metric_has_no_better_way_then_422_names_rankable_ones(api: Api) -> None:
    response = _post(api, "/api/v1/sweeps", {"grid": {"fast": [5]}, "metric": "n_trades"})

    assert response.status_code == 422
    assert "cannot rank by 'n_trades'" in _detail(response)
    assert "annual_volatility" in _detail(response)


def test_post_sweep_when_grid_param_unknown_then_422_names_it(api: Api) -> None:
    response = _post(api, "/api/v1/sweeps", {"grid": {"fsat": [5, 10]}})

    assert response.status_code == 422
    assert "fsat" in _detail(response)


def test_post_backtest_when_symbol_unknown_then_4xx_names_it_and_stored_ones(api: Api) -> None:
    response = _post(api, "/api/v1/backtests", {"symbols": ["NOPE"]})

    assert response.status_code in (404, 422)
    assert "NOPE" in _detail(response)
    assert "SP500" in _detail(response)


def test_post_forecast_bench_when_model_unknown_then_422_names_valid_ones(api: Api) -> None:
    response = _post(api, "/api/v1/forecast/bench", {"models": "crystal_ball"})

    assert response.status_code == 422
    assert "unknown model crystal_ball" in _detail(response)
    assert "naive" in _detail(response)


def test_post_sweep_when_grid_too_big_then_422_says_the_limit(api: Api) -> None:
    grid = {"fast": list(range(1, 101)), "slow": list(range(101, 201))}

    response = _post(api, "/api/v1/sweeps", {"grid": grid})

    assert response.status_code == 422
    assert "the grid has 10000 points; at most 2000 per sweep" in _detail(response)


def test_post_sweep_when_grid_parameter_empty_then_422_names_it(api: Api) -> None:
    response = _post(api, "/api/v1/sweeps", {"grid": {"fast": []}})

    assert response.status_code == 422
    assert "grid parameter 'fast' has no values" in _detail(response)


def test_approve_when_approval_unknown_then_404_names_it(api: Api) -> None:
    response = _post(api, "/api/v1/approvals/987654/approve", None, role="trader")

    assert response.status_code == 404
    assert "no approval 987654" in _detail(response)


def test_reject_when_approval_unknown_then_404_names_it(api: Api) -> None:
    response = _post(api, "/api/v1/approvals/987654/reject", None, role="trader")

    assert response.status_code == 404
    assert "no approval 987654" in _detail(response)


def test_approve_when_approval_id_not_positive_then_422_names_it(api: Api) -> None:
    response = _post(api, "/api/v1/approvals/0/approve", None, role="trader")

    assert response.status_code == 422
    assert "path.approval_id" in _detail(response)


def test_agent_command_when_account_never_ran_then_404_names_account(api: Api) -> None:
    response = _post(api, "/api/v1/agent/pause", {"account": "never-ran"}, role="trader")

    assert response.status_code == 404
    assert "'never-ran'" in _detail(response)


def test_agent_command_when_unknown_then_422_names_valid_ones(api: Api) -> None:
    response = _post(api, "/api/v1/agent/dance", None, role="trader")

    assert response.status_code == 422
    assert "'pause', 'resume', 'stop', 'emergency-stop' or 'reset'" in _detail(response)


def test_get_analysis_when_symbol_unknown_then_404_names_the_list(api: Api) -> None:
    answers = [_get(api, f"/api/v1/analysis/MADEUP{i}") for i in range(5)]

    assert {r.status_code for r in answers} == {404}
    assert "no bars for symbol 'MADEUP0'" in _detail(answers[0])
    assert "/api/v1/market/symbols" in _detail(answers[0])


# -- query parameters -----------------------------------------------------------------------


def test_get_orders_when_limit_huge_then_422_names_limit(api: Api) -> None:
    response = _get(api, f"/api/v1/orders?limit={10**30}")

    assert response.status_code == 422
    assert "query.limit: Input should be less than or equal to 1000" in _detail(response)


def test_get_orders_when_limit_not_a_number_then_422_names_limit(api: Api) -> None:
    response = _get(api, "/api/v1/orders?limit=lots")

    assert response.status_code == 422
    assert "query.limit: Input should be a valid integer" in _detail(response)


def test_get_orders_when_offset_negative_then_422_names_offset(api: Api) -> None:
    response = _get(api, "/api/v1/orders?offset=-1")

    assert response.status_code == 422
    assert "query.offset" in _detail(response)


def test_get_runs_when_kind_unknown_then_422_names_valid_ones(api: Api) -> None:
    response = _get(api, "/api/v1/runs?kind=dream")

    assert response.status_code == 422
    assert "'backtest', 'paper' or 'live'" in _detail(response)


# -- auth -----------------------------------------------------------------------------------


def test_get_orders_when_no_credentials_then_401_says_how_to_authenticate(api: Api) -> None:
    response = api.client.get("/api/v1/orders")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "Authorization: Bearer" in _detail(response)


def test_get_orders_when_key_unknown_then_401(api: Api) -> None:
    headers = {"Authorization": "Bearer ffe_deadbeef_not-a-real-secret"}

    response = api.client.get("/api/v1/orders", headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "invalid or revoked API key" in _detail(response)


def test_post_backtest_when_viewer_then_403_names_trade_scope(api: Api) -> None:
    response = _post(api, "/api/v1/backtests", {}, role="viewer")

    assert response.status_code == 403
    assert "needs the 'trade' scope" in _detail(response)


def test_create_key_when_trader_then_403_names_admin_scope(api: Api) -> None:
    response = _post(api, "/api/v1/keys", {"name": "bot", "scopes": ["read"]}, role="trader")

    assert response.status_code == 403
    assert "needs the 'admin' scope" in _detail(response)


def test_unhandled_error_when_route_crashes_then_500_carries_the_request_id(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ffe.api import queries

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(queries, "page", boom)
    response = api.client.get("/api/v1/runs", headers={**api.headers(), "X-Request-ID": "my-req-1"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "my-req-1"
    assert response.json()["detail"] == "internal error (request id my-req-1)"
    assert "simulated bug" not in response.text  # internals stay in the log
