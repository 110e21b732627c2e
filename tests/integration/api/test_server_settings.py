"""A request may not set what only the server's settings set: a host to call, a folder to
write, a number of processes, a time budget. A trade key naming one in ``params`` (a backtest,
the agent) or in a sweep's ``grid`` gets a 422 that names it, and nothing is queued or
started."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Api, make_api

# Few bars: were one of these ever run, the ensemble would have no window to forecast from.
DATES = {"start": "2018-12-03", "end": "2018-12-20"}
REFUSED = [
    ("llm_url", "http://127.0.0.1:18101/v1", "llm.base_url"),
    ("llm_cache", "CACHE", "llm.cache_dir"),
    ("llm_api_key", "sk-from-a-request", "llm.api_key"),
    ("workers", 100_000, "compute.max_workers"),
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One API for the module: a new one per test costs seconds."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FFE__DATA__DIR", str(tmp_path_factory.mktemp("server-settings")))
        mp.delenv("FFE__DATABASE__URL", raising=False)
        yield from make_api(mp, FFE__API__RATE_LIMIT="1000000")


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "made-by-a-request"


def _post(api: Api, path: str, body: dict[str, Any]) -> httpx.Response:
    return api.client.post(path, json=body, headers=api.headers("trader"))


def _value(value: object, cache_dir: Path) -> object:
    return str(cache_dir) if value == "CACHE" else value


def _assert_refused(response: httpx.Response, where: str, name: str, setting: str) -> None:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert f"{where}.{name}: {name} is a server setting ({setting})" in detail
    assert "sk-from-a-request" not in response.text  # a refused key is not echoed
    assert ["body", where, name] in [e["loc"] for e in response.json()["errors"]]


def _jobs(api: Api) -> int:
    found = api.client.get("/api/v1/jobs", headers=api.headers()).json()
    return int(found["total"])


@pytest.mark.parametrize(("name", "value", "setting"), REFUSED)
def test_post_backtest_when_params_name_a_server_setting_then_422_and_no_job(
    api: Api, cache_dir: Path, name: str, value: object, setting: str
) -> None:
    params = {"models": "naive", name: _value(value, cache_dir)}
    body = {"strategy": "ensemble", "symbols": ["SP500"], "params": params, **DATES}
    jobs = _jobs(api)

    response = _post(api, "/api/v1/backtests", body)

    _assert_refused(response, "params", name, setting)
    assert _jobs(api) == jobs
    assert not cache_dir.exists()


@pytest.mark.parametrize(("name", "value", "setting"), REFUSED)
def test_post_agent_start_when_params_name_a_server_setting_then_422_and_no_agent(
    api: Api, cache_dir: Path, name: str, value: object, setting: str
) -> None:
    params = {"models": "naive", name: _value(value, cache_dir)}
    body = {"strategy": "ensemble", "symbols": ["SP500"], "params": params}

    response = _post(api, "/api/v1/agent/start", body)

    _assert_refused(response, "params", name, setting)
    supervised = api.client.get("/api/v1/agent", headers=api.headers()).json()["supervised"]
    assert supervised["running"] is False
    assert supervised["strategy"] is None
    assert not cache_dir.exists()


@pytest.mark.parametrize(
    ("name", "values", "setting"),
    [("workers", [1, 100_000], "compute.max_workers"), ("llm_url", ["http://x"], "llm.base_url")],
)
def test_post_sweep_when_grid_names_a_server_setting_then_422_and_no_job(
    api: Api, name: str, values: list[object], setting: str
) -> None:
    body = {"strategy": "ensemble", "symbol": "SP500", "grid": {"window": [100], name: values}}
    jobs = _jobs(api)

    response = _post(api, "/api/v1/sweeps", {**body, **DATES})

    _assert_refused(response, "grid", name, setting)
    assert _jobs(api) == jobs


def test_post_backtest_when_only_caller_parameters_then_accepted(api: Api) -> None:
    # The same route and strategy, without the server setting: the refusal is only that.
    body = {"strategy": "ensemble", "params": {"models": "naive", "window": 100}, **DATES}

    response = _post(api, "/api/v1/backtests", body)

    assert response.status_code == 202, response.text


def test_get_strategies_when_ensemble_then_lists_what_a_request_may_set_and_the_settings(
    api: Api,
) -> None:
    found = api.client.get("/api/v1/strategies", headers=api.headers("viewer")).json()

    ensemble = next(s for s in found["items"] if s["name"] == "ensemble")
    assert "window" in ensemble["params"]
    assert "workers" not in ensemble["params"]
    assert "llm_url" not in ensemble["params"]
    assert ensemble["settings"]["llm_url"] == "llm.base_url"
    assert ensemble["settings"]["llm_api_key"] == "llm.api_key"
    assert "llm_api_key" not in ensemble["params"]
    assert ensemble["settings"]["workers"] == "compute.max_workers"
