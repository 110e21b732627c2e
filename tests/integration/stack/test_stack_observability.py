"""The monitoring sees the bare-metal stack for real: with traffic through nginx, jobs run and
the agent deciding, every dashboard panel's query returns data from the stack's Prometheus
(but the allow-listed ones, which must not), every recording and alert rule evaluates
cleanly, and forced failures (a hung agent, a backlog with no workers, PgBouncer and Redis
gone, a venue whose broker breaker opens) reach Alertmanager's webhook as their alerts. One
stack for the module, its alert rules loaded with `for: 5s` so the alerts come in seconds
(their thresholds are the real ones)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.support.fake_oanda import FakeOanda, Fault
from tests.support.server import free_port
from tests.support.stack import (
    ROOT,
    Stack,
    StackError,
    baremetal,
    free_port_base,
    observe,
    require_stack,
    stack_folder,
)

pytestmark = [pytest.mark.serial, pytest.mark.slow]

API_PROCESSES = 2
# The ensemble decides from bar `window` on; with these it decides every bar from bar 60 and
# judges each decision 2 bars later, so the decision, fill, outcome and weight series exist
# within a minute at 4 bars a second.
# Hedge's quick-moving settings of before (eta 2, discount 0.99): with them this agent trades
# within the test's minutes, so the fills panels have data (the defaults' slower learning
# held every position through a whole CI run).
AGENT_PARAMS = {
    **{"window": "60", "refit_every": "20", "horizon": "2", "every": "1"},
    **{"eta": "2", "discount": "0.99"},
}
READ_ROUTES = (
    "/api/v1/status",
    "/api/v1/portfolio",  # through the shared cache: the cache panels
    "/api/v1/positions",
    "/api/v1/equity",
    "/api/v1/decisions",
    "/api/v1/fills",
    "/api/v1/agent",
    "/api/v1/analysis/SP500",
    "/api/v1/market/symbols",
    "/api/v1/runs",
    "/api/v1/jobs",
    "/health/ready",
)
BACKTEST = {"strategy": "sma_cross", "symbols": ["SP500"]}
RULES = ROOT / "deploy" / "monitoring" / "rules"
QUEUE_LIMIT = 50  # FfeJobQueueBacklog: more than this many jobs queued


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    require_stack()
    folder = stack_folder()
    made = Stack(
        folder,
        port_base=free_port_base(API_PROCESSES),
        api_processes=API_PROCESSES,
        agent_speed=4,
        agent_params=AGENT_PARAMS,
        rules_for_override="5s",
    )
    try:
        made.up(timeout=240)
        yield made
    finally:
        made.down()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def traffic(stack: Stack) -> Stack:
    """Requests to the routes the dashboards show and two backtests run to the end."""
    jobs = []
    for _ in range(2):
        status, _, body = stack.request(
            "POST", "/api/v1/backtests", key=stack.admin_key, body=BACKTEST
        )
        assert status == 202, body
        jobs.append(json.loads(body)["id"])
    for _ in range(3):
        for route in READ_ROUTES:
            stack.request("GET", route, key=stack.api_key)
        time.sleep(1)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = [_job(stack, job)["status"] for job in jobs]
        if all(s in ("finished", "failed") for s in states):
            break
        time.sleep(1)
    assert states == ["finished", "finished"]
    return stack


def _job(stack: Stack, job: str) -> dict[str, object]:
    status, _, body = stack.request("GET", f"/api/v1/jobs/{job}", key=stack.api_key)
    assert status == 200, body
    return dict(json.loads(body))


def test_panels_when_traffic_flows_then_every_query_but_the_allowed_returns_data(
    traffic: Stack,
) -> None:
    allowed = set(observe.EMPTY_ON_BAREMETAL)
    # Rates need two scrapes of a series and the agent's outcomes two bars after a decision:
    # keep the traffic going until nothing but the allowed is empty (or time is up).
    deadline = time.monotonic() + 180
    while True:
        for route in READ_ROUTES:
            traffic.request("GET", route, key=traffic.api_key)
        empty = dict(observe.empty_panels(traffic))
        if set(empty) <= allowed or time.monotonic() > deadline:
            break
        time.sleep(5)

    missing = {record: expr for record, expr in empty.items() if record not in allowed}
    assert not missing, f"panels with no data: {json.dumps(missing, indent=1)}\n" + "\n".join(
        traffic.log_tail("precompute", 40)
    )
    # The allow-list stays honest: an entry whose panel has data has lost its reason.
    stale = sorted(allowed - set(empty))
    assert not stale, f"allow-listed in observe.EMPTY_ON_BAREMETAL but has data: {stale}"


def test_rules_when_evaluated_then_every_recording_and_alert_rule_is_healthy(
    traffic: Stack,
) -> None:
    loaded = observe.rules(traffic)

    assert {r["type"] for r in loaded} == {"recording", "alerting"}
    assert observe.unhealthy_rules(traffic, timeout=60) == []


def test_alerts_when_conditions_are_forced_then_each_reaches_the_webhook(
    traffic: Stack,
) -> None:
    stack = traffic
    hung = stack.pid("agent")
    try:
        # The agent hangs (SIGSTOP): its lease is not renewed, its target stops answering.
        stack.kill("agent", signal.SIGSTOP)
        for name in ("worker-0", "worker-1"):
            stack.stop(name)
        for _ in range(QUEUE_LIMIT + 3):
            status, _, body = stack.request(
                "POST", "/api/v1/backtests", key=stack.admin_key, body=BACKTEST
            )
            assert status == 202, body
        _wait_alerts(
            stack,
            {
                "FfeAgentHeartbeatLost",  # no renewal for 60 s
                "FfeJobQueueBacklog",  # more than 50 jobs queued ...
                "FfeNoWorkers",  # ... and no worker alive
                "FfeTargetDown",  # the agent's and the workers' targets
            },
        )
    finally:
        if stack.pid("agent") == hung:
            stack.kill("agent", signal.SIGCONT)
        for name in ("worker-0", "worker-1"):
            stack.start(name, wait=False)

    # One dependency at a time: with PgBouncer and Redis both gone the API cannot check the
    # scrape key, so /metrics answers 503 and FfeApiDown stands in for both (alerts.yml).
    for process, alert in (("pgbouncer", "FfeDatabaseDown"), ("redis", "FfeRedisDown")):
        stack.stop(process)
        try:
            # The dependency gauges are set by the readiness check: ask each API process (a
            # failed one answers 503, the 5xx of the error panel); the portfolio is a cache
            # lookup (with Redis gone, the cache error panel).
            _wait_alerts(stack, {alert}, poke=lambda: _poke(stack))
        finally:
            stack.start(process, wait=False)
        stack.wait_healthy([process], timeout=60)
        _poke(stack)  # ready again: the gauges say so

    # Forced, the allow-listed conditional panels have data.
    queries = dict(observe.panel_queries())
    for record in ("ffe:panel:api:5xx_ratio", "ffe:panel:api:cache_errors"):
        assert stack.prometheus_query(queries[record]), record
    stack.wait_healthy(timeout=180)


def test_breaker_when_a_venue_keeps_failing_then_its_alert_reaches_the_webhook(
    traffic: Stack, tmp_path: Path
) -> None:
    """A second account's agent trades on a venue (a local OANDA v20 server), scraped through
    the stack's agent discovery; the venue answers 503 to everything and the agent's broker
    breaker opens: FfeCircuitBreakerOpen reaches the webhook."""
    stack = traffic
    venue = FakeOanda()
    venue.prices["SP500"] = 2000.0
    venue.start()
    port = free_port()
    env = {
        **os.environ,
        **stack.ffe_env(),
        "FFE__AGENT__BROKER": "oanda",
        "FFE__AGENT__OANDA_TOKEN": venue.token,
        "FFE__AGENT__OANDA_ACCOUNT_ID": venue.account_id,
        "FFE__AGENT__OANDA_URL": venue.url,
        # Open after two unanswered calls and stay open for the test: on a loaded machine the
        # default five in a minute, with each order's retries, took longer than the test has.
        "FFE__RISK__BROKER_FAILURES": "2",
        "FFE__RISK__BROKER_WINDOW_S": "600",
        "FFE__RISK__BROKER_COOLDOWN_S": "600",
    }
    log = tmp_path / "agent-venue.log"
    with log.open("wb") as sink:
        agent = subprocess.Popen(
            [
                *(sys.executable, "-m", "ffe", "agent", "run", "--account", "venue"),
                *("--strategy", "sma_cross", "--param", "fast=2", "--param", "slow=4"),
                *("--symbol", "SP500", "--speed", "20"),
                *("--health-port", str(port), "--health-host", "127.0.0.1"),
            ],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    stack.add_agent_target("agent-venue", port)
    closed = 'ffe_circuit_breaker_state{name="oanda",process="agent-venue"} == 0'
    try:
        # Trading first: the venue fills its orders and Prometheus sees the breaker closed.
        deadline = time.monotonic() + 120
        while not (venue.count("POST", "/orders") and stack.prometheus_query(closed)):
            assert agent.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the venue agent never traded or was scraped"
            time.sleep(2)
        for method in ("GET", "POST", "PUT"):
            venue.inject(Fault(method, "", status=503, times=10**6))
        # Step by step, so a failure says which step did not happen: the breaker opens and
        # Prometheus sees it, then the alert reaches the webhook.
        opened = closed.replace("== 0", "== 2")
        deadline = time.monotonic() + 120
        while not stack.prometheus_query(opened):
            assert agent.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, (
                f"Prometheus never saw the breaker open; {venue.count('POST', '/orders')} "
                f"orders sent; agent log:\n{log.read_text()[-3000:]}"
            )
            time.sleep(2)
        _wait_alerts(stack, {"FfeCircuitBreakerOpen"})
    finally:
        agent.send_signal(signal.SIGINT)
        try:
            agent.wait(timeout=60)
        except subprocess.TimeoutExpired:
            agent.kill()
        stack.remove_agent_target("agent-venue")
        venue.stop()
    assert "circuit open" in log.read_text()


def _wait_alerts(
    stack: Stack, expected: set[str], poke: Callable[[], None] | None = None, timeout: float = 180
) -> None:
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while not expected <= seen and time.monotonic() < deadline:
        if poke is not None:
            poke()
        time.sleep(3)
        seen = _alerts_firing(stack)
    assert expected <= seen, f"at the webhook: {sorted(seen)}; missing {sorted(expected - seen)}"


def _poke(stack: Stack) -> None:
    for url in stack.urls.api:
        _status(f"{url}/health/ready")
    stack.request("GET", "/api/v1/portfolio", key=stack.api_key, timeout=10)


def _alerts_firing(stack: Stack) -> set[str]:
    """The names of the alerts the webhook was told are firing. FfeHighCpu may fire on a
    busy machine: callers compare by name, never the whole set."""
    return {
        alert["labels"]["alertname"]
        for note in stack.alerts()
        for alert in note["payload"]["alerts"]
        if alert["status"] == "firing"
    }


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def test_rules_for_override_when_rendered_then_every_alert_waits_5s_and_promtool_accepts(
    tmp_path: Path,
) -> None:
    import yaml

    made = Stack(tmp_path, port_base=48000, rules_for_override="5s")
    made._render_prometheus()  # the configs only: nothing starts

    copies = sorted(made.path("prometheus", "rules").glob("*.yml"))
    assert [c.name for c in copies] == sorted(p.name for p in RULES.glob("*.yml"))
    groups = [g for c in copies for g in yaml.safe_load(c.read_text())["groups"]]
    assert not [g["name"] for g in groups if "interval" in g]
    waits = {r["for"] for g in groups for r in g["rules"] if "for" in r}
    assert waits == {"5s"}
    # The expressions are the repository's: same alerts, same recordings, same order.
    original = [
        (r.get("alert") or r.get("record"), r["expr"])
        for p in sorted(RULES.glob("*.yml"))
        for g in yaml.safe_load(p.read_text())["groups"]
        for r in g["rules"]
    ]
    assert [(r.get("alert") or r.get("record"), r["expr"]) for g in groups for r in g["rules"]] == (
        original
    )
    promtool = shutil.which("promtool")
    if promtool:
        done = subprocess.run(
            [promtool, "check", "rules", *map(str, copies)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_alertmanager_when_quickened_then_every_route_groups_in_seconds_and_amtool_accepts(
    tmp_path: Path,
) -> None:
    import yaml

    original = (ROOT / "deploy" / "monitoring" / "alertmanager.yml").read_text()
    quick = baremetal._alertmanager_quickened(original)

    doc, before = yaml.safe_load(quick), yaml.safe_load(original)
    assert doc["route"]["group_wait"] == "1s"
    assert doc["route"]["group_interval"] == "5s"
    children = doc["route"]["routes"]
    assert [r.get("group_wait") for r in children] == [
        "1s" if "group_wait" in r else None for r in before["route"]["routes"]
    ]
    # Only the timings change: receivers, matchers and inhibitions are the repository's.
    for route in (doc["route"], *children, before["route"], *before["route"]["routes"]):
        for key in ("group_wait", "group_interval"):
            route.pop(key, None)
    assert doc == before
    amtool = shutil.which("amtool")
    if amtool:
        copy = tmp_path / "alertmanager.yml"
        copy.write_text(quick)
        done = subprocess.run(
            [amtool, "check-config", str(copy)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_rules_for_override_when_not_a_duration_then_refused(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="rules_for_override 'soon'"):
        Stack(tmp_path, port_base=48000, rules_for_override="soon")
