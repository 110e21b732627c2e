"""`ffe agent run` in a process of its own beside `ffe serve`, on one SQLite journal: the API's
live stream (what the dashboard's Agent page reads) shows the agent's decisions and equity,
through Redis when configured and from the journal without it; a pause and a stop sent through
the API reach the agent; the agent's probe port is ready while it holds its lease and counts
its decisions; the API's metrics show its heartbeat and portfolio value."""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from tests.support.server import ffe_process, ffe_server, wait_live
from tests.support.stream import first_of_each, live_stream, receive
from tests.support.wait import wait_for
from typer.testing import CliRunner

from ffe.cli.app import app

# About 1,700 bars at 25 a second: more than a minute, far longer than the test needs.
AGENT = ["agent", "run", "--symbol", "SP500", "--strategy", "sma_cross", "-p", "fast=5"]
AGENT += ["-p", "slow=10", "--start", "2012-01-01", "--speed", "25"]
QUIET = {"FFE__API__ANALYSIS_SYMBOLS": "[]"}  # no background analysis competing for the cores
SEEN_S = 60.0


def _key() -> str:
    made = CliRunner().invoke(app, ["keys", "create", "e2e-trader", "--scope", "trade"])
    assert made.exit_code == 0, made.output
    return made.stdout.strip()


def _for_paper(data: dict[str, Any]) -> bool:
    return data.get("account") == "paper"


def _agent_state(url: str, headers: dict[str, str]) -> dict[str, Any]:
    agents = httpx.get(f"{url}/api/v1/agent", headers=headers, timeout=10).json()["agents"]
    return next((a for a in agents if a["account"] == "paper"), {})


def _command(url: str, headers: dict[str, str], name: str) -> dict[str, Any]:
    answer = httpx.post(f"{url}/api/v1/agent/{name}", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _metrics_showing(url: str, headers: dict[str, str], series: str) -> str:
    """The API's /metrics once it shows ``series`` (or after 15 s): its journal tail sets the
    gauges of another process's agent on its next poll after that agent's last flush, which
    on a loaded machine may come a few seconds after the agent exited."""
    deadline = time.monotonic() + 15
    while True:
        text = httpx.get(f"{url}/metrics", headers=headers, timeout=10).text
        if series in text or time.monotonic() > deadline:
            return text
        time.sleep(0.5)


def _counted(metrics: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", metrics, re.M))


def _watch(env: dict[str, str]) -> dict[str, Any]:
    """Run the API and a separate agent; what the stream, the probes and the API showed."""
    key, found = _key(), {}
    headers = {"Authorization": f"Bearer {key}"}
    log = Path(os.environ["FFE__DATA__DIR"]) / "agent.log"
    with ffe_server("serve", env=env) as (url, _), live_stream(url, headers, 10) as ws:
        found["hello"] = receive(ws, time.monotonic() + 10)
        with ffe_process(log, *AGENT, env=env, port_option="--health-port") as (probe, agent):
            wait_live(probe, agent, log)
            found["seen"] = first_of_each(ws, {"decision", "equity"}, _for_paper, SEEN_S)
            found["ready"] = httpx.get(f"{probe}/health/ready", timeout=10)
            found["probe_metrics"] = httpx.get(f"{probe}/metrics", timeout=10).text
            found["pause"] = _command(url, headers, "pause")
            wait_for(lambda: _agent_state(url, headers).get("status") == "paused", 30)
            found["stop"] = _command(url, headers, "stop")
            found["exit"] = agent.wait(30)
        found["state"] = _agent_state(url, headers)
        found["api_metrics"] = _metrics_showing(
            url, headers, 'ffe_portfolio_value{account="paper"}'
        )
    found["log"] = log.read_text()
    return found


def _assert_agent_seen_and_steered(found: dict[str, Any]) -> None:
    seen = found["seen"]
    decision, equity = seen["decision"]["data"], seen["equity"]["data"]
    assert decision["symbol"] == "SP500"
    assert decision["action"] in ("buy", "sell", "flat", "hold")
    assert decision["time"] >= "2012-01-01"
    assert equity["equity"] > 0
    assert isinstance(equity["bar"], int)
    assert found["ready"].status_code == 200, found["ready"].text
    assert _counted(found["probe_metrics"], "ffe_decisions_total") > 0
    assert found["pause"]["queued"] is True
    assert found["stop"]["queued"] is True
    assert found["exit"] == 0, found["log"]
    assert (found["state"]["running"], found["state"]["status"]) == (False, "stopped")
    assert 'ffe_portfolio_value{account="paper"}' in found["api_metrics"]
    assert 'ffe_agent_heartbeat_timestamp_seconds{account="paper"}' in found["api_metrics"]


def test_separate_agent_with_redis_then_the_apis_stream_shows_its_events_as_it_sends_them(
    redis_url,
):
    base = redis_url.rsplit("/", 1)[0] if redis_url.count("/") > 2 else redis_url
    env = {
        **QUIET,
        "FFE__REDIS__URL": f"{base}/{uuid.uuid4().int % 14 + 1}",
        # pub/sub channels ignore the database: a prefix of this test's own keeps others out
        "FFE__REDIS__KEY_PREFIX": f"ffe-test-{uuid.uuid4().hex[:8]}:",
    }

    found = _watch(env)

    _assert_agent_seen_and_steered(found)
    api = found["hello"]["data"]["source"]
    assert found["seen"]["decision"]["source"] != api  # published by the agent's process
    assert found["seen"]["equity"]["source"] == found["seen"]["decision"]["source"]


def test_separate_agent_without_redis_then_the_apis_stream_shows_what_it_journaled():
    found = _watch(dict(QUIET))

    _assert_agent_seen_and_steered(found)
    api = found["hello"]["data"]["source"]
    assert found["seen"]["decision"]["source"] == api  # published by the API from the journal
    assert found["seen"]["equity"]["source"] == api
