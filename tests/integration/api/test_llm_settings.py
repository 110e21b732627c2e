"""A backtest job submitted through the API uses the server's ``llm`` settings: the caller
names none of them (it may not), the server's key reaches the LLM server as a bearer token,
and neither the job's result nor the recorded run shows it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.fake_llm import FakeLlmServer, running_llm_server
from tests.support.wait import wait_for

from .conftest import Api, make_api

KEY = "sk-api-0123456789"
PARAMS = {"models": "naive,drift", "window": 60, "refit_every": 30, "every": 10}
BODY = {"strategy": "ensemble", "symbols": ["SP500"], "params": PARAMS}
DATES = {"start": "2018-01-01", "end": "2018-12-31"}


@pytest.fixture
def server() -> Iterator[FakeLlmServer]:
    with running_llm_server() as started:
        yield started


@pytest.fixture
def api(server: FakeLlmServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    monkeypatch.setenv("FFE__DATA__DIR", str(tmp_path))
    monkeypatch.delenv("FFE__DATABASE__URL", raising=False)
    yield from make_api(
        monkeypatch,
        FFE__JOBS__IN_API="true",
        FFE__COMPUTE__MAX_WORKERS="1",  # the ensemble's forecasts in the job's process
        FFE__LLM__PROVIDER="openai",
        FFE__LLM__BASE_URL=f"{server.url}/v1",
        FFE__LLM__MODEL="fake-model",
        FFE__LLM__API_KEY=KEY,
        FFE__LLM__MAX_RETRIES="0",
    )


def _finished(api: Api, job_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        found: dict[str, Any] = api.client.get(
            f"/api/v1/jobs/{job_id}", headers=api.headers()
        ).json()
        return found if found["finished_at"] else None

    found: dict[str, Any] = wait_for(done, timeout=240)  # a job process starts
    return found


def test_backtest_job_when_llm_in_server_settings_then_voter_asked_with_the_servers_key(
    api: Api, server: FakeLlmServer
) -> None:
    job = api.client.post(
        "/api/v1/backtests", json={**BODY, **DATES}, headers=api.headers("trader")
    )
    assert job.status_code == 202, job.text

    done = _finished(api, job.json()["id"])

    assert done["status"] == "finished", done
    assert server.requests
    assert {r["headers"]["Authorization"] for r in server.requests} == {f"Bearer {KEY}"}
    assert done["result"]["stats"]["llm_failures"] == 0
    assert KEY not in json.dumps(done)
    run = api.client.get(f"/api/v1/runs/{done['id']}", headers=api.headers())  # the job's id
    assert run.status_code == 200, run.text
    assert run.json()["params"]["llm_url"] == f"{server.url}/v1"
    assert KEY not in run.text


def _metric(api: Api, reason: str) -> float:
    text = api.client.get("/metrics", headers=api.headers()).text
    line = f'ffe_llm_failures_total{{reason="{reason}"}} '
    found = [row for row in text.splitlines() if row.startswith(line)]
    return float(found[0].removeprefix(line)) if found else 0.0


def test_backtest_job_when_llm_server_fails_then_its_failures_reach_metrics_by_reason(
    api: Api, server: FakeLlmServer
) -> None:
    server.default = "500"
    job = api.client.post(
        "/api/v1/backtests", json={**BODY, **DATES}, headers=api.headers("trader")
    )
    assert job.status_code == 202, job.text

    done = _finished(api, job.json()["id"])

    assert done["status"] == "finished", done
    reasons = done["result"]["llm_failure_reasons"]
    assert reasons["http_error"] == 5  # then the breaker opened: the rest spared the server
    assert sum(reasons.values()) == done["result"]["stats"]["llm_failures"] > 5
    assert _metric(api, "http_error") == 5
    assert _metric(api, "breaker_open") == reasons["breaker_open"]
