"""Prometheus metrics for the service: one ``Metrics`` object owns the registry and every metric.

Each ``Metrics`` has its own ``CollectorRegistry`` (never the global default one), so several
apps can live in one process, as they do in tests. The trading agent's metrics are built by
``ffe.obs.agent_metrics`` (``Metrics`` is an ``AgentMetrics``); the HTTP, cache, analysis and
readiness ones here.

Several worker processes (``uvicorn --workers N``, gunicorn) each hold their own counters;
with ``PROMETHEUS_MULTIPROC_DIR`` set before prometheus_client is first imported, ``render()``
merges the files every process writes (``ffe.obs.multiprocess`` says how to set it up). Keep
one ``Metrics`` per process in that mode: two objects in one process write the same files and
overwrite each other's values.

Labels: pass the route *template* (``/api/v1/runs/{run_id}``) to ``observe_request``, never
the raw path, or every id becomes a new time series. Methods called every bar or every
request keep the labelled children they made (``labels()`` costs more than the counting).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from ffe import __version__
from ffe.obs.agent_metrics import (
    BREAKER_STATES,
    CONFIDENCE_BINS,
    DECISION_BUCKETS,
    DECISION_TO_ORDER_BUCKETS,
    FORECAST_BUCKETS,
    RISK_HALT_REASONS,
    AgentMetrics,
    Children,
    confidence_bin,
)
from ffe.obs.multiprocess import (
    MULTIPROC_ENV,
    JobsCollector,
    JobsSnapshot,
    WorkerJobs,
    forget_dead_processes,
    mark_process_dead,
    merged_registry,
    resolve_multiprocess_dir,
)

__all__ = [
    "ANALYSIS_BUCKETS",
    "BREAKER_STATES",
    "CACHE_RESULTS",
    "CONFIDENCE_BINS",
    "DECISION_BUCKETS",
    "DECISION_TO_ORDER_BUCKETS",
    "DEPENDENCIES",
    "FORECAST_BUCKETS",
    "MULTIPROC_ENV",
    "REQUEST_BUCKETS",
    "RISK_HALT_REASONS",
    "JobsSnapshot",
    "Metrics",
    "WorkerJobs",
    "confidence_bin",
    "mark_process_dead",
]

logger = logging.getLogger(__name__)

REQUEST_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""HTTP latency buckets in seconds: 1 ms to 10 s."""

ANALYSIS_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""One symbol's analysis in seconds: about half a second to a second on daily bars."""

DEPENDENCIES: Final = frozenset({"database", "redis"})
"""The dependencies whose readiness checks ``record_readiness`` exports."""

CACHE_RESULTS: Final = frozenset({"hit", "miss", "error"})
"""The results ``Metrics.cache_event`` accepts."""


class Metrics(AgentMetrics):
    """The engine's Prometheus metrics, in a registry of their own."""

    def __init__(
        self, multiprocess_dir: str | Path | None = None, version: str | None = None
    ) -> None:
        """Build every metric; in multiprocess mode check the directory (``ConfigError``).
        ``version`` is the one ``ffe_build_info`` exports (default: this ffe's)."""
        self.multiprocess_dir = resolve_multiprocess_dir(multiprocess_dir)
        registry = CollectorRegistry()
        if self.multiprocess_dir is None:
            # Per-process CPU and memory make no sense summed over workers: single process only.
            ProcessCollector(registry=registry)
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._build_http(registry)
        super().__init__(registry)
        self._build_analysis()
        self._build_service(version)
        self._jobs = JobsCollector()
        self.registry.register(self._jobs)

    def _build_http(self, registry: CollectorRegistry) -> None:
        self._requests = Counter(
            "ffe_http_requests",
            "HTTP requests served, by route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self._request_seconds = Histogram(
            "ffe_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "route"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self._cache = Counter(
            "ffe_cache_requests",
            "Cache lookups by cache and result (hit, miss, error).",
            ["cache", "result"],
            registry=registry,
        )

    def _build_analysis(self) -> None:
        registry = self.registry
        self._analysis = Counter(
            "ffe_analysis_refreshes",
            "Analyses refreshed into the shared cache, by symbol and result (ok, failed).",
            ["symbol", "result"],
            registry=registry,
        )
        self._analysis_seconds = Histogram(
            "ffe_analysis_duration_seconds",
            "Time taken to analyse one symbol (forecast, bands, indicators, decision).",
            buckets=ANALYSIS_BUCKETS,
            registry=registry,
        )
        self._analysis_last = Gauge(
            "ffe_analysis_last_success_timestamp_seconds",
            "Unix time of the last analysis of each symbol stored in the shared cache.",
            ["symbol"],
            registry=registry,
            multiprocess_mode="max",
        )

    def _build_service(self, version: str | None) -> None:
        registry = self.registry
        self._dependency_up = Children(
            Gauge(
                "ffe_dependency_up",
                "1 when the dependency's readiness check last passed, 0 when it failed.",
                ["dependency"],
                registry=registry,
                # The check run last wins, whichever worker ran it.
                multiprocess_mode="mostrecent",
            )
        )
        build = Gauge(
            "ffe_build_info",
            "Always 1; the version of ffe running, as a label.",
            ["version"],
            registry=registry,
            multiprocess_mode="max",  # 1 in every worker: one series, not one a process
        )
        build.labels(version=version or __version__).set(1)

    def record_analysis(self, symbol: str, ok: bool, seconds: float, unix_time: float) -> None:
        """Count one refresh of ``symbol``'s analysis that took ``seconds`` and ended at
        ``unix_time``; a successful one also sets the symbol's last-success time."""
        self._analysis.labels(symbol=symbol, result="ok" if ok else "failed").inc()
        self._analysis_seconds.observe(max(seconds, 0.0))
        if ok:
            self._analysis_last.labels(symbol=symbol).set(unix_time)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one HTTP request and its latency; ``route`` is the template, not the path."""
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:  # labels() costs more than the counting; keep each pair once
            upper = method.upper()
            children = (
                self._requests.labels(method=upper, route=route, status=str(status)),
                self._request_seconds.labels(method=upper, route=route),
            )
            if len(self._request_children) < 10_000:
                self._request_children[key] = children
        children[0].inc()
        children[1].observe(max(seconds, 0.0))

    def record_readiness(self, results: Iterable[Any]) -> None:
        """Export ``ffe_dependency_up`` from a readiness report's checks (``CheckResult``s):
        those naming a ``dependency`` (database, redis) set it to 1 or 0."""
        for result in results:
            dependency = getattr(result, "dependency", None)
            if dependency is not None:
                self.set_dependency_up(dependency, bool(result.ok))

    def set_dependency_up(self, dependency: str, up: bool) -> None:
        """Export whether ``dependency`` (``database`` or ``redis``) answered its check."""
        if dependency not in DEPENDENCIES:
            raise ValueError(
                f"unknown dependency {dependency!r}: use one of {', '.join(sorted(DEPENDENCIES))}"
            )
        self._dependency_up(dependency).set(1.0 if up else 0.0)

    def cache_event(self, cache: str, result: str) -> None:
        """Count one cache lookup; ``result`` is ``hit``, ``miss`` or ``error``."""
        if result not in CACHE_RESULTS:
            raise ValueError(
                f"unknown cache result {result!r}: use one of {', '.join(sorted(CACHE_RESULTS))}"
            )
        self._cache.labels(cache=cache, result=result).inc()

    def set_jobs(self, snapshot: JobsSnapshot) -> None:
        """Export the job queue as the journal shows it (read it just before a scrape)."""
        self._jobs.snapshot = snapshot

    def mark_process_dead(self, pid: int) -> None:
        """Drop a dead worker's live gauges; does nothing in single-process mode."""
        if self.multiprocess_dir is not None:
            mark_process_dead(pid, self.multiprocess_dir)

    def forget_dead_processes(self) -> list[int]:
        """Drop the live gauges of every worker that is gone, crashed ones included (uvicorn
        has no hook for a worker exiting: each new worker sweeps at start-up); the pids."""
        if self.multiprocess_dir is None:
            return []
        return forget_dead_processes(self.multiprocess_dir)

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type, merged over workers in multiprocess mode."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        merged = merged_registry(self.multiprocess_dir, self._jobs)
        return generate_latest(merged), CONTENT_TYPE_LATEST
