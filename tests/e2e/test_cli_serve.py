"""`ffe run` and `ffe serve` as a user starts them: a real server process, a first login
printed once, several workers whose metrics add up, and the keys and health commands."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
from tests.support.server import ffe_process, ffe_server, wait_live
from typer.testing import CliRunner

from ffe.cli.app import app

runner = CliRunner()


def test_run_prints_url_and_first_login_then_the_agent_trades(tmp_path):
    with ffe_server("run", "--speed", "0") as (url, log):
        printed = _printed(log, "paper agent: replaying")  # the banner follows the first answer
        assert url in printed
        password = re.search(r"log in as admin with password (\S+)", printed)
        assert password is not None, printed
        with httpx.Client(base_url=url) as client:
            login = {"username": "admin", "password": password.group(1)}
            assert client.post("/api/v1/auth/login", json=login).status_code == 200
            supervised = client.get("/api/v1/agent").json()["supervised"]
            assert supervised["params"] == {"fast": 50, "slow": 200}  # typed, not "50"
            assert "never seen by that choice" in printed  # the demo says how it was chosen
            assert "sweep on 1999-2009" in supervised["chosen"]  # and so does the dashboard
            assert "risk limits: halts 30% below its peak" in printed
            deadline = time.monotonic() + 60
            while client.get("/api/v1/fills").json()["total"] == 0:
                assert time.monotonic() < deadline, "the paper agent made no fill"
                time.sleep(0.5)
            page = client.get("/overview")
            assert page.status_code == 200
            assert "<html" in page.text.lower()
            # the replay runs to its end: the summary is printed and served
            ended = _printed(log, "the dashboard stays up", timeout_s=120)
            assert "replay finished: sma_cross on SP500" in ended
            assert re.search(r"return +[+-]\d+\.\d%  \(buy and hold [+-]\d+\.\d%", ended)
            assert "ffe tune --strategy sma_cross" in ended
            agent = client.get("/api/v1/agent").json()
            assert agent["supervised"]["finished"] is True
            assert agent["supervised"]["summary"]["trades"] > 0
            assert agent["agents"][0]["status"] == "finished"
            equity = client.get("/api/v1/equity").json()
            assert equity["benchmark"]["drawn"] is True
            assert equity["points"][0]["time"].startswith("2010-01-04")
    # a second start finds the user and prints no new password
    with ffe_server("run", "--no-agent") as (_, log):
        printed = _printed(log, "log in with your dashboard user")
        assert "password" not in printed.split("log in")[-1].split("\n")[0]


def test_run_when_ctrl_c_under_make_then_exit_0_saying_where_the_agent_stopped(tmp_path):
    log = tmp_path / "run.log"
    with ffe_process(log, "run", "--speed", "50", env={"MAKELEVEL": "1"}) as (url, process):
        wait_live(url, process, log)
        _printed(log, "paper agent: replaying")
        time.sleep(1.0)  # a few bars
    # leaving sent Ctrl-C
    printed = log.read_text()
    assert process.returncode == 0, printed  # make has no Error 130 to report
    assert "Traceback" not in printed
    port = url.rsplit(":", 1)[1]
    stopped = re.search(
        r"stopped by Ctrl-C: paper agent run (\w{8}): sma_cross \(fast=50, slow=200\) on SP500, "
        r"approval auto, stopped (after bar [\d,]+ \(\d{4}-\d{2}-\d{2}\)|before its first bar)\. "
        r"Resume it with "
        r"`make run` \(or `ffe run --speed 50 --port (\d+)`\)",
        " ".join(printed.split()),
    )
    assert stopped is not None, printed
    assert stopped.group(3) == port  # the command as it was given


def _printed(log: Path, last: str, timeout_s: float = 30.0) -> str:
    """What the server printed, once it has printed ``last``."""
    deadline = time.monotonic() + timeout_s
    while last not in log.read_text():
        assert time.monotonic() < deadline, f"{last!r} never printed:\n{log.read_text()}"
        time.sleep(0.05)
    return log.read_text()


def test_serve_with_two_workers_counts_every_request_in_metrics():
    key = runner.invoke(app, ["keys", "create", "scraper", "--scope", "read"]).stdout.strip()
    with ffe_server("serve", "--workers", "2") as (url, _):
        headers = {"Authorization": f"Bearer {key}"}
        for _ in range(30):
            with httpx.Client(base_url=url, headers=headers) as client:  # new connection each
                assert client.get("/api/v1/status").status_code == 200
        body = httpx.get(f"{url}/metrics", headers=headers).text
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("ffe_http_requests_total{") and 'route="/api/v1/status"' in line
    )
    assert counted == 30


def test_keys_create_prints_the_key_once_and_list_never_shows_it():
    made = runner.invoke(app, ["keys", "create", "ci-bot", "--scope", "trade"])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    assert key.startswith("ffe_")
    listed = runner.invoke(app, ["keys", "list", "--json"])
    rows = json.loads(listed.stdout)
    assert rows[0]["name"] == "ci-bot"
    assert rows[0]["scopes"] == ["read", "trade"]
    assert key not in listed.stdout
    revoked = runner.invoke(app, ["keys", "revoke", rows[0]["prefix"]])
    assert revoked.exit_code == 0
    assert json.loads(runner.invoke(app, ["keys", "list", "--json"]).stdout)[0]["revoked"]


def test_keys_create_when_scope_unknown_then_error_names_the_valid_ones():
    made = runner.invoke(app, ["keys", "create", "x", "--scope", "root"])
    assert made.exit_code != 0
    assert "read, trade or admin" in made.output


def test_health_reports_checks_and_exits_zero_when_ready():
    result = runner.invoke(app, ["health", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["checks"]["database"]["ok"] is True
    assert body["status"] in ("ok", "degraded")


def test_health_when_database_unreachable_then_every_check_listed_and_exit_one(monkeypatch):
    monkeypatch.setenv("FFE__DATABASE__URL", "postgresql://nobody@127.0.0.1:1/none")
    result = runner.invoke(app, ["health", "--json"])
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["status"] == "fail"
    assert body["checks"]["database"]["ok"] is False
    assert body["checks"]["disk"]["ok"] is True  # the rest is still checked
