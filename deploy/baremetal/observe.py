"""Does the monitoring see the bare-metal stack? Every dashboard panel's query asked of the
stack's real Prometheus, and every recording and alert rule's health, for the stack test
(tests/integration/stack/test_stack_observability.py) and the load bench.

    import observe                      # deploy/baremetal on sys.path, beside stack.py
    observe.empty_panels(stack)         # [(record, expr)] of the panels with no series
    observe.unhealthy_rules(stack)      # ["group/rule: why"] once every rule has run
    observe.EMPTY_ON_BAREMETAL          # {record: reason} the panels that cannot have data

The panels' queries are read from deploy/monitoring/rules/panels.yml: the dashboards'
generator writes one recording rule per distinct panel query there, and the `dashboards`
deploy check fails when a dashboard's query and that file disagree, so asking these
expressions is asking what Grafana would.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PANELS_YML = REPO / "deploy" / "monitoring" / "rules" / "panels.yml"

# The one allow-list: panels that have no series on a healthy bare-metal stack under light
# traffic, each for a reason that is not a defect. The stack test fails when one of them does
# return data, so an entry cannot outlive its reason. Panels that are empty only until a
# condition occurs (a 5xx, a Redis error) are listed here for the healthy stack; the test
# forces those conditions afterwards and checks that the panels then fill.
EMPTY_ON_BAREMETAL: dict[str, str] = {
    "ffe:panel:system:container_restarts_15m": (
        "kube_pod_container_status_restarts_total comes from kube-state-metrics: Kubernetes "
        "only, no pods here"
    ),
    "ffe:panel:system:agent_restarts_15m": (
        "ffe_agent_restarts_total counts the agents the API's own supervisor restarts (`ffe "
        "serve`/`ffe run` running an agent in process); the stack's agent is a process of its "
        "own (`ffe agent run`), restarted by supervisord, which FfeProcessCrashLooping watches"
    ),
    "ffe:panel:trading:circuit_breakers": (
        "ffe_circuit_breaker_state is exported for a venue broker's breaker (ccxt, oanda); the "
        "stack's agent trades the paper broker, which has none (and the LLM voter, off here, "
        "does not export its breaker)"
    ),
    "ffe:panel:ai:analysis_refresh_failures_1h": (
        "counts failed analyses only (result=failed); the pre-compute's analyses of the "
        "bundled data succeed, and one refresh every precompute.interval_s (300 s) gives no "
        "dependable moment to break one"
    ),
    "ffe:panel:ai:llm_voter_failures_10m": (
        "ffe_llm_failures_total has a series only once an LLM voter failed; the stack's agent "
        "and backtests run without one (llm.provider none)"
    ),
    "ffe:panel:api:5xx_ratio": (
        "no 5xx on a healthy stack (its numerator has no series); the test forces 503s "
        "(PgBouncer stopped) and checks the panel then has data"
    ),
    "ffe:panel:api:cache_errors": (
        "result=error only while Redis fails; the test stops Redis and checks the panel then "
        "has data"
    ),
}


def panel_queries(panels_yml: Path = PANELS_YML) -> list[tuple[str, str]]:
    """(record, expr) of every dashboard panel query, in the file's order."""
    import yaml

    doc = yaml.safe_load(panels_yml.read_text())
    return [(r["record"], r["expr"]) for g in doc["groups"] for r in g["rules"]]


def empty_panels(stack: Any, panels_yml: Path = PANELS_YML) -> list[tuple[str, str]]:
    """(record, expr) of every panel whose query returns no series from the stack's
    Prometheus now (an instant query, as Grafana's last point)."""
    queries = panel_queries(panels_yml)
    return [(record, expr) for record, expr in queries if not stack.prometheus_query(expr)]


def rules(stack: Any) -> list[dict[str, Any]]:
    """Every rule Prometheus has loaded (/api/v1/rules), each with its group's name and file
    as ``group`` and ``file``."""
    with urllib.request.urlopen(f"{stack.urls.prometheus}/api/v1/rules", timeout=10) as r:
        data = json.loads(r.read())
    return [
        {**rule, "group": group["name"], "file": group["file"]}
        for group in data["data"]["groups"]
        for rule in group["rules"]
    ]


def unhealthy_rules(stack: Any, timeout: float = 150) -> list[str]:
    """ "group/rule: why" for every recording or alert rule whose health is not ``ok`` or
    that has a lastError. Waits up to ``timeout`` seconds for every rule to have been
    evaluated once (a group with interval 1m runs up to a minute after Prometheus starts);
    one never evaluated by then is unhealthy too."""
    deadline = time.monotonic() + timeout
    while True:
        loaded = rules(stack)
        waiting = [r for r in loaded if r.get("health") == "unknown"]
        if not waiting or time.monotonic() > deadline:
            break
        time.sleep(2)
    problems = []
    for rule in loaded:
        health, error = rule.get("health"), rule.get("lastError")
        if health != "ok" or error:
            why = error or ("never evaluated" if health == "unknown" else f"health {health}")
            problems.append(f"{rule['group']}/{rule['name']}: {why}")
    return problems
