"""`ffe backtest run` with an LLM voter configured only by settings (``FFE__LLM__*``): the
key reaches the server as a bearer token and nowhere else; a failing server's decisions say
why, and the run counts them; so does the agent's run, and `ffe agent status` shows the count."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.fake_llm import FakeLlmServer, running_llm_server
from typer.testing import CliRunner

from ffe.cli.app import app

runner = CliRunner()
KEY = "sk-test-0123456789"
BACKTEST = [
    "backtest",
    "run",
    "--strategy",
    "ensemble",
    "--symbol",
    "SP500",
    *("--start", "2018-01-01", "--end", "2018-12-31"),
    *("-p", "models=naive,drift", "-p", "window=60", "-p", "refit_every=30"),
    *("-p", "every=10", "-p", "workers=1", "--json"),
]


@pytest.fixture
def server() -> Iterator[FakeLlmServer]:
    with running_llm_server() as started:
        yield started


@pytest.fixture(autouse=True)
def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: FakeLlmServer) -> None:
    monkeypatch.chdir(tmp_path)  # no config.yaml from the working directory
    monkeypatch.setenv("FFE__DATA__DIR", str(tmp_path / "data"))
    monkeypatch.delenv("FFE__DATABASE__URL", raising=False)
    monkeypatch.setenv("FFE__LLM__PROVIDER", "openai")
    monkeypatch.setenv("FFE__LLM__BASE_URL", f"{server.url}/v1")
    monkeypatch.setenv("FFE__LLM__MODEL", "fake-model")
    monkeypatch.setenv("FFE__LLM__API_KEY", KEY)
    monkeypatch.setenv("FFE__LLM__MAX_RETRIES", "0")
    monkeypatch.setenv("FFE__LLM__TIMEOUT_S", "5")


def _json(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_backtest_when_llm_only_in_settings_then_it_votes_with_the_bearer_key(
    server: FakeLlmServer,
) -> None:
    shown = _json(*BACKTEST)

    assert server.requests
    assert {r["path"] for r in server.requests} == {"/v1/chat/completions"}
    assert {r["headers"]["Authorization"] for r in server.requests} == {f"Bearer {KEY}"}
    assert {r["body"]["model"] for r in server.requests} == {"fake-model"}
    assert shown["stats"]["llm_failures"] == 0
    assert shown["params"]["llm_provider"] == "openai"
    assert shown["params"]["llm_url"] == f"{server.url}/v1"
    assert "llm_api_key" not in shown["params"]
    recorded = _json("runs", "show", shown["run_id"][:8], "--json")
    assert KEY not in json.dumps(recorded)
    assert recorded["stats"]["llm_failures"] == 0
    votes = _json("decisions", "list", shown["run_id"], "--limit", "1000", "--json")
    assert len(votes) == len(server.requests)  # one question per decision bar
    assert all(row["votes"]["weights"]["llm"] > 0 for row in votes)


def test_backtest_when_command_line_names_a_model_then_it_wins_over_the_setting(
    server: FakeLlmServer,
) -> None:
    _json(*BACKTEST, "-p", "llm_model=from-the-command-line")

    assert {r["body"]["model"] for r in server.requests} == {"from-the-command-line"}
    assert {r["headers"]["Authorization"] for r in server.requests} == {f"Bearer {KEY}"}


def test_backtest_when_server_answers_500_then_each_decision_and_the_stats_say_so(
    server: FakeLlmServer,
) -> None:
    server.default = "500"

    shown = _json(*BACKTEST)

    votes = _json("decisions", "list", shown["run_id"], "--limit", "1000", "--json")
    failures = [row["votes"]["llm_failure"] for row in votes]
    assert len(votes) > 10
    assert shown["stats"]["llm_failures"] == len(votes)
    assert _json("runs", "show", shown["run_id"][:8], "--json")["stats"]["llm_failures"] == len(
        votes
    )
    assert failures[0] == {
        "voter": "llm",
        "reason": "http_error",
        "brief": "HTTP 500 after 1 attempt",
    }
    assert {f["reason"] for f in failures[5:]} == {"breaker_open"}  # 5 failures open it
    # 5 a run, and the engine's look-ahead check runs the strategy a second time
    assert len(server.requests) == 10
    for row in votes:
        assert "llm" not in row["votes"]["weights"]
        assert "The llm voter failed (" in row["rationale"]
        assert server.url not in row["rationale"]
        assert KEY not in json.dumps(row)


def test_backtest_when_another_server_then_the_first_ones_answers_are_not_reused(
    server: FakeLlmServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _json(*BACKTEST)
    asked = len(server.requests)
    with running_llm_server() as other:
        other.default = "500"
        monkeypatch.setenv("FFE__LLM__BASE_URL", f"{other.url}/v1")

        shown = _json(*BACKTEST)

    assert other.requests  # asked, not answered from the first server's cache
    assert shown["stats"]["llm_failures"] > 0
    assert len(server.requests) == asked
    monkeypatch.setenv("FFE__LLM__BASE_URL", f"{server.url}/v1")
    replay = _json(*BACKTEST)  # the first server again: all from its cache
    assert len(server.requests) == asked
    assert replay["stats"]["llm_failures"] == 0


def test_sweep_when_llm_only_in_settings_then_every_point_asks_and_rows_show_the_grid(
    server: FakeLlmServer,
) -> None:
    sweep = [
        "backtest",
        "sweep",
        "--strategy",
        "ensemble",
        "--symbol",
        "SP500",
        *("--start", "2018-01-01", "--end", "2018-12-31"),
        *("-p", "threshold=0.5,0.6", "-p", "models=naive", "-p", "window=60"),
        *("-p", "every=10", "--jobs", "1", "--json"),
    ]

    rows = _json(*sweep)

    assert sorted(row["threshold"] for row in rows) == [0.5, 0.6]
    assert {r["headers"]["Authorization"] for r in server.requests} == {f"Bearer {KEY}"}
    for row in rows:
        assert row["llm_failures"] == 0
        settings = [name for name in row if name.startswith("llm_") and name != "llm_failures"]
        assert not settings  # a row shows the grid's parameters, not the server's settings
    assert KEY not in json.dumps(rows)


def test_walk_forward_when_llm_only_in_settings_then_each_segment_asks_with_the_key(
    server: FakeLlmServer,
) -> None:
    shown = _json(*BACKTEST, "--walk-forward", "train=60,test=60", "--jobs", "1")

    assert len(shown["walk_forward"]["segments"]) >= 3
    assert server.requests
    assert {r["headers"]["Authorization"] for r in server.requests} == {f"Bearer {KEY}"}
    assert shown["stats"]["llm_failures"] == 0
    assert KEY not in json.dumps(shown)


def test_tune_when_llm_only_in_settings_then_trials_ask_with_the_key_and_store_none(
    server: FakeLlmServer, tmp_path: Path
) -> None:
    tune = [
        "tune", "--strategy", "ensemble", "--synthetic", "1", "--bars", "400",
        "--walk-forward", "train=60,test=100", "--holdout", "0", "--sampler", "grid",
        "--param", "threshold=0.5,0.6", "--param", "models=naive", "--param", "window=60",
        "--param", "every=10", "--trials", "2", "-j", "1", "--study", "llm", "--json",
    ]  # fmt: skip

    shown = _json(*tune)

    assert shown["trials"] == 2
    assert server.requests
    assert {r["headers"]["Authorization"] for r in server.requests} == {f"Bearer {KEY}"}
    assert KEY not in json.dumps(shown)
    stored = (tmp_path / "data" / "tune.db").read_bytes()
    assert KEY.encode() not in stored


def test_agent_run_when_server_answers_500_then_its_run_and_status_count_the_failures(
    server: FakeLlmServer,
) -> None:
    server.default = "500"
    agent = ["agent", "run", *BACKTEST[2:]]  # the backtest's strategy, bars and --json

    report = _json(*agent)
    status = runner.invoke(app, ["agent", "status"])
    shown = _json("runs", "show", report["run_id"][:8], "--json")

    failed = len(_json("decisions", "list", report["run_id"], "--limit", "1000", "--json"))
    assert failed > 10
    assert report["stats"]["llm_failures"] == shown["stats"]["llm_failures"] == failed
    assert status.exit_code == 0, status.output
    assert f"LLM failures: {failed}" in " ".join(status.stdout.split())
    assert _json("agent", "status", "--json")[0]["llm_failures"] == failed
