"""User strategies through the API: by name only (built-in, installed entry point, or a file
the server's settings list), never a path in a request."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from tests.integration.api.conftest import Api
from tests.support.strategy_files import forgotten, install_dist, write
from tests.support.wait import wait_for

ApiWith = Callable[..., AbstractContextManager[Api]]


@pytest.fixture(autouse=True)
def _forget() -> Iterator[None]:
    with forgotten():
        yield


def _backtest(api: Api, strategy: str) -> Any:
    body = {"strategy": strategy, "symbols": ["SP500"], "start": "2016-01-01"}
    return api.client.post("/api/v1/backtests", json=body, headers=api.headers("trader"))


def _finished(api: Api, job_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = api.client.get(f"/api/v1/jobs/{job_id}", headers=api.headers()).json()
        return job if job["finished_at"] else None

    found: dict[str, Any] = wait_for(done, timeout=60)
    return found


def test_backtest_when_settings_list_a_file_then_its_strategy_runs_by_name(
    api_with: ApiWith, tmp_path: Path
) -> None:
    path = write(tmp_path, name="offered")
    with api_with(FFE__STRATEGIES__FILES=json.dumps([str(path)]), FFE__JOBS__IN_API="true") as api:
        listed = api.client.get("/api/v1/strategies", headers=api.headers()).json()["items"]
        job = _backtest(api, "offered")

        assert job.status_code == 202, job.text
        done = _finished(api, job.json()["id"])
    assert done["status"] == "finished", done
    offered = {"name": "offered", "params": {"lookback": 10, "scale": 1.0}, "settings": {}}
    assert {**offered, "source": "file"} in listed


def test_backtest_when_entry_point_installed_then_it_runs_by_name(
    api_with: ApiWith, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(install_dist(tmp_path / "site")))
    monkeypatch.delitem(sys.modules, "plugged_strategy", raising=False)
    with api_with(FFE__JOBS__IN_API="true") as api:
        job = _backtest(api, "plugged")

        assert job.status_code == 202, job.text
        done = _finished(api, job.json()["id"])
    assert done["status"] == "finished", done


def test_strategies_when_a_package_takes_a_builtin_name_then_listed_as_shadowed(
    api_with: ApiWith, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = install_dist(tmp_path / "site")
    install_dist(site, "[ffe.strategies]\nsma_cross = plugged_strategy:Mine\n", "shadowing-pkg")
    monkeypatch.syspath_prepend(str(site))
    with api_with() as api:
        answer = api.client.get("/api/v1/strategies", headers=api.headers())
        assert answer.status_code == 200, answer.text
        found = answer.json()

    by_name = {item["name"]: item for item in found["items"]}
    assert by_name["sma_cross"]["source"] == "built-in"
    assert by_name["sma_cross"]["params"]["fast"] == 10  # the built-in's, not the package's
    assert (by_name["plugged"]["source"], by_name["plugged"]["package"]) == (
        "package",
        "plugged-strategy",
    )
    assert "failed to load" in by_name["bad"]["error"]  # a broken package's, listed as such
    assert found["shadowed"] == [
        {"name": "sma_cross", "package": "shadowing-pkg", "entry_point": "plugged_strategy:Mine"}
    ]


@pytest.mark.parametrize("strategy", ["mine.py:Mine", "/etc/strategies/mine.py:Mine", "a/b"])
def test_backtest_when_request_names_a_path_then_422_saying_names_only(
    api: Api, tmp_path: Path, strategy: str
) -> None:
    write(tmp_path)  # even a file that exists is not read for a request

    response = _backtest(api, strategy)

    assert response.status_code == 422, response.text
    assert "a request names a strategy, never a file" in response.text
    assert "strategies.files" in response.text


def test_agent_start_when_request_names_a_path_then_422(api: Api) -> None:
    response = api.client.post(
        "/api/v1/agent/start", json={"strategy": "x.py:Mine"}, headers=api.headers("admin")
    )

    assert response.status_code == 422, response.text
    assert "never a file" in response.text
