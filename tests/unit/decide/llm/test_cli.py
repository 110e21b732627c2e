"""`ffe llm vote` against the local server: the view, replay from the cache, clear errors."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from ffe.cli.app import app

from .conftest import answer_for

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no config.yaml from the working directory
    monkeypatch.setenv("FFE__DATA__DIR", str(tmp_path / "data"))


def vote(*extra: str, server=None):
    base = ["--provider", "ollama", "--base-url", server.url, "--model", "m"] if server else []
    return runner.invoke(
        app, ["llm", "vote", "--symbol", "SP500", "--at", "2010-06-30", *base, *extra]
    )


def test_vote_when_json_then_view_of_the_server_at_the_origin(llm_server):
    result = vote("--json", server=llm_server)

    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    sent = llm_server.requests[0]["body"]["messages"]
    assert shown["view"] == answer_for(sent)
    assert shown["origin"] == "2010-06-30"
    assert shown["horizon"] == 5
    assert shown["stats"]["requests"] == 1
    low, high = shown["interval_pct"]["95"]
    assert low < shown["view"]["expected_return_pct"] < high
    assert "SP500" not in json.dumps(sent)


def test_vote_when_not_anonymized_then_prompt_ends_at_the_origin(llm_server):
    result = vote("--no-anonymize", "--horizon", "3", server=llm_server)

    assert result.exit_code == 0, result.output
    prompt = llm_server.requests[0]["body"]["messages"][1]["content"]
    assert "SP500" in prompt
    assert "The last bar is 2010-06-30." in prompt
    assert "2010-07" not in prompt


def test_vote_when_table_then_view_and_stats_printed(llm_server):
    result = vote(server=llm_server)

    assert result.exit_code == 0, result.output
    assert "expected change" in result.output
    assert "single view" in result.output  # the rationale
    assert "requests 1, cache hits 0, tokens 100+20" in result.output


def test_vote_when_asked_twice_then_second_answer_from_cache(llm_server, tmp_path):
    first = vote("--json", server=llm_server)

    second = vote("--json", server=llm_server)

    assert second.exit_code == 0, second.output
    assert len(list((tmp_path / "data" / "llm-cache").rglob("*.json"))) == 1
    assert len(llm_server.requests) == 1
    assert json.loads(second.stdout)["stats"]["cache_hits"] == 1
    assert json.loads(second.stdout)["view"] == json.loads(first.stdout)["view"]


def test_vote_when_debate_then_three_calls_and_both_sides_shown(llm_server):
    result = vote("--mode", "debate", server=llm_server)

    assert result.exit_code == 0, result.output
    assert len(llm_server.requests) == 3
    assert "judge view" in result.output
    assert "bull view" in result.output
    assert "bear view" in result.output


def test_vote_when_openai_configured_by_environment_then_key_sent_never_printed(
    llm_server, monkeypatch
):
    monkeypatch.setenv("FFE__LLM__PROVIDER", "openai")
    monkeypatch.setenv("FFE__LLM__BASE_URL", f"{llm_server.url}/v1")
    monkeypatch.setenv("FFE__LLM__MODEL", "gpt-test")
    monkeypatch.setenv("FFE__LLM__API_KEY", "sk-hidden")

    result = vote("--json")

    assert result.exit_code == 0, result.output
    headers = {k.lower(): v for k, v in llm_server.requests[0]["headers"].items()}
    assert headers["authorization"] == "Bearer sk-hidden"
    assert "sk-hidden" not in result.output
    assert json.loads(result.stdout)["provider"] == "openai"


def test_config_show_when_llm_key_and_url_password_then_both_masked(monkeypatch):
    monkeypatch.setenv("FFE__LLM__API_KEY", "sk-hidden")
    monkeypatch.setenv("FFE__LLM__BASE_URL", "https://user:hunter2@llm.example/v1")

    result = runner.invoke(app, ["config", "show", "--json"])

    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)["llm"]
    assert shown["api_key"] == "***"
    assert shown["base_url"] == "https://user:***@llm.example/v1"
    assert shown["provider"] == "none"


def test_vote_when_no_server_listens_then_one_line_error_exit_2():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"

    result = runner.invoke(
        app,
        [
            "llm",
            "vote",
            "--at",
            "2010-06-30",
            "--provider",
            "ollama",
            "--base-url",
            url,
            "--model",
            "m",
            "--max-retries",
            "0",
        ],
    )

    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: no answer from the LLM server at {url}/api/chat")
    assert "ollama serve" in lines[0]


def test_vote_when_no_provider_configured_then_exit_2_saying_what_to_pass():
    result = vote()

    assert result.exit_code == 2
    assert "no LLM provider is configured: pass --provider ollama" in result.output


def test_vote_when_read_only_cache_and_nothing_recorded_then_exit_2(llm_server):
    result = vote("--cache-mode", "read_only", server=llm_server)

    assert result.exit_code == 2
    assert "no cached LLM answer" in result.output
    assert llm_server.requests == []


def test_vote_when_date_before_the_data_then_exit_2(llm_server):
    result = runner.invoke(
        app,
        [
            "llm",
            "vote",
            "--at",
            "1990-01-01",
            "--provider",
            "ollama",
            "--base-url",
            llm_server.url,
            "--model",
            "m",
        ],
    )

    assert result.exit_code == 2
    assert "SP500 has no bars" in result.output


def test_help_when_shown_then_httpx_not_imported():
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from ffe.cli.app import app\n"
        "result = CliRunner().invoke(app, ['llm', '--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print('vote' in result.output, 'httpx' in sys.modules)\n"
    )

    output = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout

    assert output.split() == ["True", "False"]
