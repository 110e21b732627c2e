"""Generate ffe's Grafana dashboards and the recording rules that keep their queries honest.

    .venv-deploy/bin/python deploy/monitoring/dashboards/generate.py          # write the files
    .venv-deploy/bin/python deploy/monitoring/dashboards/generate.py --check  # exit 1 on drift

Each dashboard is a small table below (rows of panels, each panel its PromQL); the
grafana-foundation-sdk (Grafana 11.6) turns the table into dashboard JSON, written beside this
file as ``<uid>.json``. Every distinct panel query also becomes one recording rule in
``../rules/panels.yml``, so ``promtool check rules`` parses every query a dashboard runs, and
`make deploy-check` (deploy/checks/dashboards.py) catches a JSON edited by hand.

Queries use fixed ranges (``[5m]``), never Grafana's ``$__rate_interval``, so the same text is
valid PromQL for Prometheus too. Every panel reads the provisioned datasource, uid
``prometheus`` (../grafana/provisioning/datasources/prometheus.yml).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from grafana_foundation_sdk.builders import barchart, common, stat, timeseries
from grafana_foundation_sdk.builders import dashboard as builder
from grafana_foundation_sdk.builders import prometheus as promql
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_model
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as promql_model

HERE = Path(__file__).resolve().parent
RULES = HERE.parent / "rules" / "panels.yml"
DATASOURCE_UID = "prometheus"
"""The uid of the datasource Grafana is provisioned with; every panel names it."""
TAGS = ["ffe"]
CURRENCY = "currencyUSD"
"""Grafana's unit for money panels. ffe reports P&L and equity in the account currency: an
account in another currency wants another unit here (currencyEUR, ...)."""

# The thresholds panels draw: the alerts' in ../rules/alerts.yml (keep them equal).
LATENCY_P95_S = 0.5  # FfeHighLatency
ERROR_RATIO = 0.05  # FfeHighErrorRate
CACHE_HIT_RATIO_LOW = 0.5  # FfeLowCacheHitRate
HEARTBEAT_STALE_S = 60  # FfeAgentHeartbeatLost
ANALYSIS_STALE_S = 900  # FfeAnalysisStale
QUEUE_DEPTH_HIGH = 50  # FfeJobQueueBacklog
HOST_CPU_BUSY = 0.7  # FfeHighCpu
DISK_USED_HIGH = 0.85  # FfeDiskAlmostFull
RESTARTS_15M = 3  # FfePodCrashLooping, FfeAgentCrashLooping
LLM_FAILURES_10M = 2  # FfeLlmFailing: more decisions than this without the LLM's vote in 10m
# A target no alert watches: issue 18's p99 of the time from a decision to its order.
DECISION_TO_ORDER_P99_S = 0.05
# The burn rates the SLO alerts of ../rules/slo.yml page (1h, 6h) and open a ticket (3d) at.
PAGE_BURN_1H = 14.4  # FfeSlo*FastBurn
PAGE_BURN_6H = 6  # FfeSlo*FastBurn
TICKET_BURN_3D = 1  # FfeSlo*SlowBurn
BUDGET_LOW = 0.25  # docs/slo.md's error budget policy: non-fix deploys wait under 25% left

CONFIDENCE_BINS = [f"{low / 10:.1f}-{(low + 1) / 10:.1f}" for low in range(10)]
"""The ``confidence_bin`` labels of ffe_decision_outcomes_total: ten equal bins over [0, 1]."""


@dataclass(frozen=True)
class Query:
    """One PromQL target: its expression, the legend of its series, and the name of its
    recording rule when not the panel title's (a panel with several queries names each)."""

    expr: str
    legend: str = ""
    name: str = ""


@dataclass(frozen=True)
class Panel:
    """One panel: ``kind`` is timeseries, stat or barchart (a bar a label value, instant)."""

    kind: str
    title: str
    unit: str
    queries: tuple[Query, ...]
    description: str
    steps: tuple[tuple[float | None, str], ...] = ()
    """Threshold steps (from value, colour), the first from None; empty for none."""
    mappings: tuple[tuple[int, str, str], ...] = ()
    """Value, text, colour: names for a gauge's states (0 closed, 2 open, ...)."""
    width: int = 12
    height: int = 0
    """Grid rows; 0 for the kind's own (a stat 5, a graph 8)."""
    min: float | None = 0
    """The axis's floor; None for a value that can go negative (P&L)."""
    max: float | None = None


@dataclass(frozen=True)
class Dashboard:
    """One dashboard: ``key`` makes its uid (ffe-<key>) and its recording rules' names."""

    key: str
    title: str
    description: str
    rows: tuple[tuple[str, tuple[Panel, ...]], ...]

    @property
    def uid(self) -> str:
        return f"ffe-{self.key}"


def q(expr: str, legend: str = "", name: str = "") -> Query:
    """A query, short for the tables."""
    return Query(expr, legend, name)


def above(warn: float | None, crit: float) -> tuple[tuple[float | None, str], ...]:
    """Green, then orange from ``warn`` (if any), red from ``crit``: higher is worse."""
    middle = ((warn, "orange"),) if warn is not None else ()
    return ((None, "green"), *middle, (crit, "red"))


def below(ok: float) -> tuple[tuple[float | None, str], ...]:
    """Red below ``ok``, green from it: lower is worse (targets up, workers alive)."""
    return ((None, "red"), (ok, "green"))


def quantiles(
    metric: str, ps: tuple[float, ...] = (0.5, 0.95, 0.99), name: str = "latency"
) -> tuple[Query, ...]:
    """Quantiles ``ps`` (p50, p95 and p99) of a latency histogram over 5 minutes, their rules
    named ``<name>_p50`` and so on."""
    return tuple(
        q(
            f"histogram_quantile({p}, sum by (le) (rate({metric}_bucket[5m])))",
            f"p{round(p * 100)}",
            f"{name}_p{round(p * 100)}",
        )
        for p in ps
    )


def ratio(selected: str, metric: str, by: str, window: str) -> str:
    """The share of ``metric``'s increase over ``window`` that ``selected`` (labels) has."""
    return (
        f"sum by ({by}) (increase({metric}{{{selected}}}[{window}]))"
        f" / sum by ({by}) (increase({metric}[{window}]))"
    )


def calibration_midpoints() -> str:
    """Each confidence bin's midpoint as a series labelled with the bin, kept only for the bins
    that had outcomes in the week: what a calibrated engine's hit rate would be."""
    points = " or ".join(
        f'label_replace(vector({(i + 0.5) / 10:.2f}), "confidence_bin", "{name}", "", "")'
        for i, name in enumerate(CONFIDENCE_BINS)
    )
    return (
        f"({points}) and on (confidence_bin)"
        " (sum by (confidence_bin) (increase(ffe_decision_outcomes_total[7d])) > 0)"
    )


FFE_JOBS = 'job=~"ffe-.*"'

SYSTEM = Dashboard(
    "system",
    "ffe: system",
    "Is every ffe process scraped and healthy: CPU, memory, disk, restarts, version.",
    (
        (
            "Processes",
            (
                Panel(
                    "stat",
                    "Scrape targets up",
                    "none",
                    (q("min by (job) (up)", "{{job}}"),),
                    "1 when every target of the scrape job answered its last scrape, 0 when any "
                    "did not.",
                    below(1),
                    ((0, "down", "red"), (1, "up", "green")),
                    width=16,
                ),
                Panel(
                    "stat",
                    "Running version",
                    "none",
                    (q("count by (version) (ffe_build_info)", "{{version}}"),),
                    "How many processes run each ffe version: more than one during a rollout.",
                    width=8,
                ),
                Panel(
                    "timeseries",
                    "Process CPU",
                    "percentunit",
                    (
                        q(
                            f"sum by (job, instance) (rate(process_cpu_seconds_total{{{FFE_JOBS}}}"
                            "[5m]))",
                            "{{job}} {{instance}}",
                        ),
                    ),
                    "CPU seconds a second each single-process ffe process uses (100% is one "
                    "core): worker, pre-compute, agent, ffe run. The API under ffe serve "
                    "--workers N (multiprocess metrics, as compose and the chart run it) "
                    "exports no process_* series: see its container's CPU in the platform's "
                    "metrics (cAdvisor, docker stats).",
                ),
                Panel(
                    "timeseries",
                    "Process resident memory",
                    "bytes",
                    (
                        q(
                            f"sum by (job, instance) (process_resident_memory_bytes{{{FFE_JOBS}}})",
                            "{{job}} {{instance}}",
                        ),
                    ),
                    "Resident memory of each single-process ffe process: worker, pre-compute, "
                    "agent, ffe run. The API under ffe serve --workers N (multiprocess "
                    "metrics) exports none: see its container's memory in the platform's "
                    "metrics (cAdvisor, docker stats).",
                ),
            ),
        ),
        (
            "Hosts (node_exporter) and restarts (kube-state-metrics)",
            (
                Panel(
                    "timeseries",
                    "Host CPU busy",
                    "percentunit",
                    (
                        q(
                            '1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m]))',
                            "{{instance}}",
                        ),
                    ),
                    "Share of the host's CPU time not idle; needs node_exporter.",
                    above(None, HOST_CPU_BUSY),
                    max=1,
                ),
                Panel(
                    "timeseries",
                    "Disk space used",
                    "percentunit",
                    (
                        q(
                            "1 - min by (instance, mountpoint) ("
                            'node_filesystem_avail_bytes{fstype!~"tmpfs|overlay"}'
                            ' / node_filesystem_size_bytes{fstype!~"tmpfs|overlay"})',
                            "{{instance}} {{mountpoint}}",
                        ),
                    ),
                    "Used share of each filesystem; needs node_exporter.",
                    above(None, DISK_USED_HIGH),
                    max=1,
                ),
                Panel(
                    "timeseries",
                    "Container restarts (15m)",
                    "short",
                    (
                        q(
                            "sum by (pod) (increase("
                            'kube_pod_container_status_restarts_total{pod=~".*ffe.*"}[15m]))',
                            "{{pod}}",
                        ),
                    ),
                    "Restarts of ffe's pods in the last 15 minutes; needs kube-state-metrics.",
                    above(None, RESTARTS_15M),
                ),
                Panel(
                    "timeseries",
                    "Agent restarts (15m)",
                    "short",
                    (
                        q(
                            "sum by (account) (increase(ffe_agent_restarts_total[15m]))",
                            "{{account}}",
                        ),
                    ),
                    "Times the agent restarted itself after its journal failed, by account.",
                    above(None, RESTARTS_15M),
                ),
            ),
        ),
    ),
)

API = Dashboard(
    "api",
    "ffe: API performance",
    "ffe serve: traffic, latency, errors and the cache behind it.",
    (
        (
            "Traffic and latency",
            (
                Panel(
                    "timeseries",
                    "Request rate by route",
                    "reqps",
                    (q("sum by (route) (rate(ffe_http_requests_total[5m]))", "{{route}}"),),
                    "Requests a second, by route template.",
                ),
                Panel(
                    "timeseries",
                    "Latency p50 / p95 / p99",
                    "s",
                    quantiles("ffe_http_request_duration_seconds"),
                    f"Request latency over all routes; the line is the p95 alert "
                    f"({LATENCY_P95_S * 1000:g} ms).",
                    above(None, LATENCY_P95_S),
                ),
                Panel(
                    "timeseries",
                    "Latency p95 by route",
                    "s",
                    (
                        q(
                            "histogram_quantile(0.95, sum by (le, route) "
                            "(rate(ffe_http_request_duration_seconds_bucket[5m])))",
                            "{{route}}",
                        ),
                    ),
                    "Which route is slow.",
                    above(None, LATENCY_P95_S),
                ),
                Panel(
                    "timeseries",
                    "Requests by status",
                    "reqps",
                    (q("sum by (status) (rate(ffe_http_requests_total[5m]))", "{{status}}"),),
                    "Requests a second, by HTTP status.",
                ),
            ),
        ),
        (
            "Errors and cache",
            (
                Panel(
                    "timeseries",
                    "5xx ratio",
                    "percentunit",
                    (
                        q(
                            'sum(rate(ffe_http_requests_total{status=~"5.."}[5m]))'
                            " / sum(rate(ffe_http_requests_total[5m]))",
                            "5xx",
                        ),
                    ),
                    "Share of requests answered with a server error.",
                    above(ERROR_RATIO / 5, ERROR_RATIO),
                ),
                Panel(
                    "timeseries",
                    "Cache hit ratio",
                    "percentunit",
                    (
                        q(
                            'sum by (cache) (rate(ffe_cache_requests_total{result="hit"}[5m]))'
                            " / sum by (cache) (rate(ffe_cache_requests_total[5m]))",
                            "{{cache}}",
                        ),
                    ),
                    "Share of cache lookups answered from the cache, by cache.",
                    below(CACHE_HIT_RATIO_LOW),
                    max=1,
                ),
                Panel(
                    "timeseries",
                    "Cache errors",
                    "ops",
                    (
                        q(
                            'sum by (cache) (rate(ffe_cache_requests_total{result="error"}[5m]))',
                            "{{cache}}",
                        ),
                    ),
                    "Cache lookups a second that failed (Redis unreachable): ffe computes "
                    "instead, slower.",
                    width=24,
                ),
            ),
        ),
    ),
)

TRADING = Dashboard(
    "trading",
    "ffe: trading",
    "What the agents decide and fill, what the accounts are worth, and whether risk stopped them.",
    (
        (
            "Risk",
            (
                Panel(
                    "stat",
                    "Risk halts in force",
                    "none",
                    (q("max by (account, reason) (ffe_risk_halted)", "{{account}} {{reason}}"),),
                    "1 while the daily-loss kill switch or the drawdown halt stops an account "
                    "trading.",
                    above(None, 1),
                    ((0, "trading", "green"), (1, "halted", "red")),
                    width=8,
                ),
                Panel(
                    "stat",
                    "Circuit breakers",
                    "none",
                    (q("max by (name) (ffe_circuit_breaker_state)", "{{name}}"),),
                    "State of each circuit breaker (data feeds, brokers, providers).",
                    above(1, 2),
                    ((0, "closed", "green"), (1, "half-open", "orange"), (2, "open", "red")),
                    width=8,
                ),
                Panel(
                    "stat",
                    "Agent heartbeat age",
                    "s",
                    (
                        q(
                            "time() - max by (account) (ffe_agent_heartbeat_timestamp_seconds)",
                            "{{account}}",
                        ),
                    ),
                    "Seconds since each account's agent last beat.",
                    above(None, HEARTBEAT_STALE_S),
                    width=8,
                ),
                Panel(
                    "stat",
                    "Agents running",
                    "none",
                    (q("max by (account) (ffe_agent_running)", "{{account}}"),),
                    "1 while each account's agent runs or is meant to (a crashed one stays "
                    "1); 0 once stopped on purpose or paused: its heartbeat age then pages no "
                    "one.",
                    (),
                    ((0, "stopped", "blue"), (1, "running", "green")),
                    width=8,
                ),
                Panel(
                    "timeseries",
                    "Drawdown",
                    "percentunit",
                    (q("max by (account) (ffe_drawdown_ratio)", "{{account}}"),),
                    "Current drawdown from peak equity, by account (the halt at the "
                    "configured maximum shows under Risk halts).",
                    width=16,
                ),
            ),
        ),
        (
            "Money",
            (
                Panel(
                    "timeseries",
                    "Portfolio value",
                    CURRENCY,
                    (q("sum by (account) (ffe_portfolio_value)", "{{account}}"),),
                    "Equity by account, in the account currency.",
                ),
                Panel(
                    "timeseries",
                    "Realised P&L",
                    CURRENCY,
                    (q("sum by (account) (ffe_realized_pnl)", "{{account}}", "realised_pnl"),),
                    "Cumulative realised profit and loss by account, in the account currency.",
                    ((None, "red"), (0, "green")),
                    min=None,
                ),
                Panel(
                    "stat",
                    "Win rate (7d)",
                    "percentunit",
                    (
                        q(
                            ratio('result="win"', "ffe_trades_closed_total", "account", "7d"),
                            "{{account}}",
                        ),
                    ),
                    "Share of the trades closed in the last week that made money.",
                    width=8,
                    height=8,
                ),
                Panel(
                    "timeseries",
                    "Trades closed (1h)",
                    "short",
                    (
                        q(
                            "sum by (result) (increase(ffe_trades_closed_total[1h]))",
                            "{{result}}",
                        ),
                    ),
                    "Trades closed in the last hour, won and lost.",
                    width=16,
                ),
            ),
        ),
        (
            "Activity",
            (
                Panel(
                    "timeseries",
                    "Decisions by action (1h)",
                    "short",
                    (q("sum by (action) (increase(ffe_decisions_total[1h]))", "{{action}}"),),
                    "Decisions made in the last hour, by action.",
                    width=8,
                ),
                Panel(
                    "timeseries",
                    "Decision to order p50 and p99",
                    "s",
                    quantiles("ffe_decision_to_order_seconds", (0.5, 0.99), "decision_to_order"),
                    "Time from a decision to its order's acknowledgement by the broker: risk "
                    "checks, approval policy, journal and submit, not the strategy's own time; "
                    "the line is the p99 target.",
                    above(None, DECISION_TO_ORDER_P99_S),
                    width=8,
                ),
                Panel(
                    "timeseries",
                    "Fills by side (1h)",
                    "short",
                    (q("sum by (side) (increase(ffe_fills_total[1h]))", "{{side}}"),),
                    "Orders filled in the last hour, buys and sells.",
                    width=8,
                ),
            ),
        ),
    ),
)

AI = Dashboard(
    "ai",
    "ffe: forecasts and decisions",
    "The models behind the decisions: how fast, how weighted, how well calibrated, how fresh.",
    (
        (
            "Models",
            (
                Panel(
                    "timeseries",
                    "Forecast latency p95 by model",
                    "s",
                    (
                        q(
                            "histogram_quantile(0.95, sum by (le, model) "
                            "(rate(ffe_forecast_duration_seconds_bucket[5m])))",
                            "{{model}}",
                        ),
                    ),
                    "How long one forecast takes, by model.",
                ),
                Panel(
                    "timeseries",
                    "Ensemble weight by model",
                    "percentunit",
                    (q("avg by (model) (ffe_ensemble_weight)", "{{model}}"),),
                    "Each model's weight in the ensemble, averaged over symbols.",
                    max=1,
                ),
                Panel(
                    "barchart",
                    "Confidence calibration (7d)",
                    "percentunit",
                    (
                        q(
                            ratio(
                                'outcome="hit"',
                                "ffe_decision_outcomes_total",
                                "confidence_bin",
                                "7d",
                            ),
                            "hit rate",
                            "calibration_hit_rate",
                        ),
                        q(calibration_midpoints(), "bin midpoint", "calibration_midpoint"),
                    ),
                    "For each confidence bin, the share of last week's decisions that were "
                    "right beside the bin's midpoint: a calibrated engine's bars match.",
                    width=24,
                    max=1,
                ),
            ),
        ),
        (
            "Decisions and analysis",
            (
                Panel(
                    "timeseries",
                    "Decision latency p99",
                    "s",
                    (
                        q(
                            "histogram_quantile(0.99, sum by (le) "
                            "(rate(ffe_decision_latency_seconds_bucket[5m])))",
                            "p99",
                        ),
                    ),
                    "Time to make one decision, including model and provider calls.",
                    width=8,
                ),
                Panel(
                    "timeseries",
                    "Analysis refresh failures (1h)",
                    "short",
                    (
                        q(
                            "sum by (symbol) "
                            '(increase(ffe_analysis_refreshes_total{result="failed"}[1h]))',
                            "{{symbol}}",
                        ),
                    ),
                    "Refreshes of a symbol's analysis by ffe precompute that failed.",
                    width=8,
                ),
                Panel(
                    "timeseries",
                    "Analysis staleness",
                    "s",
                    (
                        q(
                            "time() - max by (symbol) "
                            "(ffe_analysis_last_success_timestamp_seconds)",
                            "{{symbol}}",
                        ),
                    ),
                    "Seconds since each symbol's analysis was last refreshed.",
                    above(None, ANALYSIS_STALE_S),
                    width=8,
                ),
            ),
        ),
        (
            "LLM voter",
            (
                Panel(
                    "timeseries",
                    "LLM voter failures (10m)",
                    "short",
                    (
                        q(
                            "sum by (reason) (increase(ffe_llm_failures_total[10m]))",
                            "{{reason}}",
                        ),
                    ),
                    "Decisions made without the LLM voter's vote in the last 10 minutes, by "
                    "why (timeout, unreachable, http_error, breaker_open, bad_answer, cache): "
                    "the agent's, and those of backtest jobs once they finish. The line is "
                    "FfeLlmFailing's, which counts all reasons together.",
                    above(None, LLM_FAILURES_10M),
                    width=24,
                ),
            ),
        ),
    ),
)

DATABASE = Dashboard(
    "database",
    "ffe: database and job queue",
    "PostgreSQL and Redis as ffe sees them, and the job queue its workers drain.",
    (
        (
            "Dependencies",
            (
                Panel(
                    "stat",
                    "Dependencies up",
                    "none",
                    (q("min by (dependency) (ffe_dependency_up)", "{{dependency}}"),),
                    "1 while every process's readiness check reaches the database or Redis.",
                    below(1),
                    ((0, "down", "red"), (1, "up", "green")),
                    width=16,
                ),
                Panel(
                    "stat",
                    "Workers alive",
                    "none",
                    (q("max(ffe_workers_alive)", "workers"),),
                    "Worker processes whose heartbeat is fresh.",
                    below(1),
                    width=8,
                ),
            ),
        ),
        (
            "Job queue",
            (
                Panel(
                    "timeseries",
                    "Queue depth and jobs running",
                    "short",
                    (
                        q("max(ffe_job_queue_depth)", "queued", "queue_depth"),
                        q("max(ffe_jobs_running)", "running", "jobs_running"),
                    ),
                    "Jobs waiting for a worker, and jobs running on any; the line is the "
                    "backlog alert's.",
                    above(None, QUEUE_DEPTH_HIGH),
                ),
                Panel(
                    "timeseries",
                    "Worker jobs by state",
                    "short",
                    (q("sum by (state) (ffe_worker_jobs)", "{{state}}"),),
                    "Jobs the live workers run now, and have finished and failed since they "
                    "started.",
                ),
                Panel(
                    "timeseries",
                    "Job failure rate (1h)",
                    "percentunit",
                    (
                        q(
                            'sum(increase(ffe_worker_jobs{state="failed"}[1h]))'
                            ' / sum(increase(ffe_worker_jobs{state=~"failed|finished"}[1h]))',
                            "failed",
                        ),
                    ),
                    "Share of the jobs ended in the last hour that failed.",
                    width=24,
                    max=1,
                ),
            ),
        ),
    ),
)

SLO_LEGEND = "{{slo}} {{account}}{{symbol}}"
"""An SLO's series: its name, and the account (agent heartbeat) or symbol (analysis) of one
that is measured for each."""


def burn_panel(window: str, threshold: float, says: str) -> Panel:
    """The burn rate of every SLO over ``window``, with the line an alert fires over."""
    return Panel(
        "timeseries",
        f"Burn rate {window}",
        "none",
        (q(f"ffe:slo:burn_rate_{window}", SLO_LEGEND),),
        f"How many times faster than the 30-day budget allows each SLO spent it over the last "
        f"{window} (1: the budget lasts exactly 30 days). {says} over {threshold:g}.",
        above(None, threshold),
        width=8,
    )


SLO = Dashboard(
    "slo",
    "ffe: SLOs",
    "The service level objectives of docs/slo.md: each SLI now, the 30-day error budget left, "
    "and how fast it burns (rules/slo.yml).",
    (
        (
            "Objectives",
            (
                Panel(
                    "stat",
                    "SLI over 30 days",
                    "percentunit",
                    (q("1 - ffe:slo:error_ratio_30d", SLO_LEGEND),),
                    "The share of good events (or of good time) over the last 30 days, beside "
                    "the objective.",
                    width=8,
                    max=1,
                ),
                Panel(
                    "stat",
                    "Error budget remaining (30d)",
                    "percentunit",
                    (q("ffe:slo:error_budget_remaining_30d", SLO_LEGEND),),
                    "What is left of each SLO's 30-day error budget: 100% untouched, 0 spent, "
                    "below 0 the objective is missed.",
                    ((None, "red"), (0, "orange"), (BUDGET_LOW, "green")),
                    width=8,
                    min=None,
                    max=1,
                ),
                Panel(
                    "stat",
                    "Objective",
                    "percentunit",
                    (q("ffe:slo:objective", "{{slo}}"),),
                    "Each SLO's objective over 30 days; its error budget is the rest.",
                    width=8,
                    max=1,
                ),
                Panel(
                    "timeseries",
                    "SLI over 1h",
                    "percentunit",
                    (q("1 - ffe:slo:error_ratio_1h", SLO_LEGEND),),
                    "The share of good events (or time) over the last hour: where the budget went.",
                    width=24,
                    max=1,
                ),
            ),
        ),
        (
            "Burn rates",
            (
                burn_panel("1h", PAGE_BURN_1H, "Pages, with the 5-minute rate,"),
                burn_panel("6h", PAGE_BURN_6H, "Pages, with the 30-minute rate,"),
                burn_panel("3d", TICKET_BURN_3D, "Opens a ticket, with the 6-hour rate,"),
            ),
        ),
    ),
)

DASHBOARDS = (SYSTEM, API, TRADING, AI, DATABASE, SLO)


def slug(text: str) -> str:
    """A title as a metric-name fragment: lower case, runs of anything else as one _."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def record_name(board: Dashboard, panel: Panel, query: Query) -> str:
    """ffe:panel:<dashboard>:<query name or panel title>: the recording rule of one query."""
    if len(panel.queries) > 1 and not query.name:
        raise ValueError(f"{board.uid} {panel.title!r}: name each of a panel's queries")
    return f"ffe:panel:{board.key}:{query.name or slug(panel.title)}"


def ref_id(index: int) -> str:
    """Grafana's name for a panel's query: A, B, C..."""
    return chr(ord("A") + index)


def _datasource() -> model.DataSourceRef:
    return model.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)


def _target(panel: Panel, index: int, query: Query) -> promql.Dataquery:
    target = (
        promql.Dataquery()
        .ref_id(ref_id(index))
        .expr(query.expr)
        .legend_format(query.legend)
        .datasource(_datasource())
    )
    if panel.kind == "timeseries":
        return target.range()
    target = target.instant()
    # A bar chart joins its queries into one table on the label it draws a bar for.
    return target.format(promql_model.PromQueryFormat.TABLE) if panel.kind == "barchart" else target


def _thresholds(panel: Panel) -> builder.ThresholdsConfig:
    steps = panel.steps or ((None, "green"),)
    return (
        builder.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


def _visual(panel: Panel) -> timeseries.Panel | stat.Panel | barchart.Panel:
    """The panel's kind with what differs between kinds: lines, big numbers, bars."""
    if panel.kind == "timeseries":
        visual = timeseries.Panel().fill_opacity(10).line_width(1)
        if panel.steps:
            visual = visual.thresholds_style(
                common.GraphThresholdsStyleConfig().mode(
                    common_model.GraphThresholdsStyleMode.DASHED
                )
            )
        return visual
    if panel.kind == "stat":
        return (
            stat.Panel()
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
            .color_mode(common_model.BigValueColorMode.BACKGROUND)
            .graph_mode(common_model.BigValueGraphMode.NONE)
        )
    if panel.kind == "barchart":
        legends = {f"Value #{ref_id(i)}": each.legend for i, each in enumerate(panel.queries)}
        return (
            barchart.Panel()
            .x_field("confidence_bin")  # the one bar chart: calibration, a bar a bin
            .legend(
                common.VizLegendOptions()
                .show_legend(True)
                .display_mode(common_model.LegendDisplayMode.LIST)
                .placement(common_model.LegendPlacement.BOTTOM)
            )
            .with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
            .with_transformation(
                model.DataTransformerConfig(
                    id_val="organize",
                    options={"excludeByName": {"Time": True}, "renameByName": legends},
                )
            )
        )
    raise ValueError(f"unknown panel kind {panel.kind!r} ({panel.title})")


def _panel(panel: Panel, number: int) -> builder.Panel:
    built = (
        _visual(panel)
        .id(number)
        .title(panel.title)
        .description(panel.description)
        .datasource(_datasource())
        .unit(panel.unit)
        .thresholds(_thresholds(panel))
        .span(panel.width)
        .height(panel.height or (5 if panel.kind == "stat" else 8))
    )
    if panel.min is not None:
        built = built.min(panel.min)
    if panel.max is not None:
        built = built.max(panel.max)
    if panel.mappings:
        results = {
            str(value): model.ValueMappingResult(text=text, color=color, index=i)
            for i, (value, text, color) in enumerate(panel.mappings)
        }
        built = built.mappings([model.ValueMap(options=results)])
    for index, query in enumerate(panel.queries):
        built = built.with_target(_target(panel, index, query))
    return built


def build(board: Dashboard) -> dict[str, object]:
    """One dashboard as the JSON Grafana provisions."""
    dashboard = (
        builder.Dashboard(board.title)
        .uid(board.uid)
        .description(board.description)
        .tags(TAGS)
        .editable()
        .refresh("1m")
        .time("now-6h", "now")
        .timezone("browser")
    )
    number = 0
    for title, panels in board.rows:
        number += 1
        dashboard = dashboard.with_row(builder.Row(title).id(number))
        for panel in panels:
            number += 1
            dashboard = dashboard.with_panel(_panel(panel, number))
    # Through the SDK's encoder and back: plain dicts and lists, written with sorted keys.
    plain: dict[str, object] = json.loads(json.dumps(dashboard.build(), cls=JSONEncoder))
    return plain


def recording_rules() -> dict[str, object]:
    """panels.yml: a group a dashboard, a rule a distinct panel query (the first panel that
    runs a query names its rule)."""
    groups, seen, names = [], set(), set()
    for board in DASHBOARDS:
        rules = []
        for _, panels in board.rows:
            for panel in panels:
                for query in panel.queries:
                    if query.expr in seen:
                        continue
                    name = record_name(board, panel, query)
                    if name in names:
                        raise ValueError(f"two panel queries would both record {name}")
                    seen.add(query.expr)
                    names.add(name)
                    rules.append({"record": name, "expr": query.expr})
        groups.append({"name": f"ffe-panels-{board.key}", "interval": "1m", "rules": rules})
    return {"groups": groups}


RULES_HEADER = """\
# Generated by deploy/monitoring/dashboards/generate.py from its dashboard tables: do not edit.
# One recording rule per distinct Grafana panel query, so `promtool check rules` parses every
# query the dashboards run, and deploy/checks/dashboards.py finds a dashboard edited by hand.
# Regenerate: .venv-deploy/bin/python deploy/monitoring/dashboards/generate.py
"""


def render() -> dict[Path, str]:
    """Every generated file and its text, deterministic: the same table gives the same bytes."""
    files = {
        HERE / f"{board.uid}.json": json.dumps(build(board), indent=2, sort_keys=True) + "\n"
        for board in DASHBOARDS
    }
    files[RULES] = RULES_HEADER + yaml.safe_dump(
        recording_rules(), sort_keys=False, width=10_000, allow_unicode=True
    )
    return files


def differences() -> list[Path]:
    """The generated files whose committed text differs from what the tables give, or that are
    missing."""
    return [
        path for path, text in render().items() if not path.exists() or path.read_text() != text
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 listing the files that differ"
    )
    args = parser.parse_args(argv)
    root = HERE.parents[2]
    if args.check:
        stale = differences()
        for path in stale:
            print(f"{path.relative_to(root)} differs from what generate.py produces")
        return 1 if stale else 0
    for path, text in render().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
