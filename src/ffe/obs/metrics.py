"""Prometheus metrics for the service: one ``Metrics`` object owns the registry and every metric.

Each ``Metrics`` has its own ``CollectorRegistry`` (never the global default one), so several
apps can live in one process, as they do in tests.

Several worker processes (``uvicorn --workers N``, gunicorn) each hold their own counters, and a
scrape reaches only one of them. prometheus_client's multiprocess mode fixes that: every process
writes its values to files in a shared directory and ``render()`` merges the files. The mode is
chosen when prometheus_client is first imported, so ``PROMETHEUS_MULTIPROC_DIR`` must be in the
environment of the command that starts the workers (export it in the shell, the container or
the unit file), not set from Python later; the directory must exist and should be emptied
before the workers start. Keep one ``Metrics`` per process in that mode: two objects in one
process write the same files and overwrite each other's values.

Labels: pass the route *template* (``/api/v1/runs/{run_id}``) to ``observe_request``, never
the raw path, or every id becomes a new time series. Methods called every bar or every
request keep the labelled children they made (``labels()`` costs more than the counting).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
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
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ffe import __version__
from ffe.domain.errors import ConfigError

__all__ = [
    "ANALYSIS_BUCKETS",
    "BREAKER_STATES",
    "CACHE_RESULTS",
    "CONFIDENCE_BINS",
    "DECISION_BUCKETS",
    "DEPENDENCIES",
    "FORECAST_BUCKETS",
    "MULTIPROC_ENV",
    "REQUEST_BUCKETS",
    "RISK_HALT_REASONS",
    "JobsSnapshot",
    "Metrics",
    "WorkerJobs",
    "mark_process_dead",
]

logger = logging.getLogger(__name__)

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
"""The environment variable that switches prometheus_client to multiprocess mode."""

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

DECISION_BUCKETS: Final = (
    0.001,
    0.005,
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Decision latency buckets in seconds: 1 ms to a minute, since LLM providers can be slow."""

FORECAST_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.5,
    2.5,
    10.0,
    60.0,
)
"""One model's forecast from its fitted parameters, in seconds: 0.1 ms to a minute (the
statistical models take well under a millisecond to a few; an LLM voter, seconds)."""

RISK_HALT_REASONS: Final = ("daily_loss", "drawdown")
"""The risk engine's halts ``set_risk_halted`` exports: the daily loss kill switch and the
drawdown halt. (An emergency stop is an operator's command, not the risk engine's.)"""

CONFIDENCE_BINS: Final = tuple(f"{i / 10:.1f}-{(i + 1) / 10:.1f}" for i in range(10))
"""The ``confidence_bin`` labels of decision outcomes: ten bins of 0.1 over [0, 1], each
holding its lower bound (0.55 is in "0.5-0.6"), 1.0 in "0.9-1.0". The ensemble's confidence
is the probability of a profit on the side it takes, recalibrated: mostly 0.4 to 0.8, but
anything in [0, 1] can occur (long-only, or after recalibration), so every bin exists."""

DEPENDENCIES: Final = frozenset({"database", "redis"})
"""The dependencies whose readiness checks ``record_readiness`` exports."""

BREAKER_STATES: Final = {"closed": 0, "half_open": 1, "open": 2}
"""Circuit breaker state names and the gauge value each is exported as."""

CACHE_RESULTS: Final = frozenset({"hit", "miss", "error"})
"""The results ``Metrics.cache_event`` accepts."""


_MAX_CHILDREN: Final = 10_000
"""Labelled children kept per metric: enough for every symbol and account, bounded anyway."""


class _Children:
    """A metric's labelled children, made once per label values and kept (up to a bound)."""

    __slots__ = ("_kept", "_metric")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._kept: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._kept.get(values)
        if child is None:
            child = self._metric.labels(*values)
            if len(self._kept) < _MAX_CHILDREN:
                self._kept[values] = child
        return child


def confidence_bin(confidence: float) -> str:
    """The ``CONFIDENCE_BINS`` label holding ``confidence`` (clamped into [0, 1])."""
    index = int(min(max(confidence, 0.0), 1.0) * 10)
    return CONFIDENCE_BINS[min(index, 9)]


def _multiprocess_enabled() -> bool:
    """True when prometheus_client was imported with the multiprocess directory in the env."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def _env_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower()) or None


def _resolve_multiprocess_dir(explicit: str | Path | None) -> Path | None:
    """The directory to merge at render time, or None in single-process mode."""
    env = _env_dir()
    wanted = explicit if explicit is not None else env
    if wanted is None:
        if _multiprocess_enabled():
            raise ConfigError(
                f"{MULTIPROC_ENV} was removed from the environment after prometheus_client "
                "was imported: keep it set for the life of the process"
            )
        return None
    path = Path(wanted)
    if not _multiprocess_enabled():
        raise ConfigError(
            f"multiprocess metrics need {MULTIPROC_ENV}={path} in the environment before "
            "prometheus_client is first imported: export it where the workers are started"
        )
    if env is None or Path(env).resolve() != path.resolve():
        raise ConfigError(
            f"multiprocess_dir {path} differs from {MULTIPROC_ENV}={env}, where this "
            "process writes its values: use the same directory"
        )
    if not path.is_dir():
        raise ConfigError(f"{MULTIPROC_ENV}={path} is not a directory: create it (empty)")
    return path


@dataclass(frozen=True, slots=True)
class WorkerJobs:
    """One worker's jobs: how many it runs now, and has finished and failed since it started."""

    worker: str
    kind: str
    running: int
    finished: int
    failed: int


@dataclass(frozen=True, slots=True)
class JobsSnapshot:
    """The job queue as the journal shows it: queued and running jobs, and the live workers."""

    queued: int = 0
    running: int = 0
    workers: tuple[WorkerJobs, ...] = field(default_factory=tuple)


class _JobsCollector(Collector):
    """Exports the last ``JobsSnapshot``. The numbers are the journal's, read by whichever
    process answers the scrape, not this process's own: so they are collected here, fresh,
    and never summed over the processes of a multiprocess directory."""

    def __init__(self) -> None:
        self.snapshot = JobsSnapshot()

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        yield GaugeMetricFamily(
            "ffe_job_queue_depth",
            "Jobs queued in the journal, waiting for any worker.",
            value=snapshot.queued,
        )
        yield GaugeMetricFamily(
            "ffe_jobs_running", "Jobs running on any worker.", value=snapshot.running
        )
        yield GaugeMetricFamily(
            "ffe_workers_alive",
            "Processes running jobs that beat now.",
            value=len(snapshot.workers),
        )
        jobs = GaugeMetricFamily(
            "ffe_worker_jobs",
            "Each live worker's jobs: running now, finished and failed since it started.",
            labels=["worker", "kind", "state"],
        )
        for each in snapshot.workers:
            for state in ("running", "finished", "failed"):
                jobs.add_metric([each.worker, each.kind, state], getattr(each, state))
        yield jobs


def mark_process_dead(pid: int, multiprocess_dir: str | Path | None = None) -> None:
    """Drop a dead worker's live gauges (breaker state) in multiprocess mode.

    Call it from the process manager when a worker exits (gunicorn's ``child_exit`` hook).
    The directory defaults to ``PROMETHEUS_MULTIPROC_DIR``; nothing happens without one.
    """
    path = str(multiprocess_dir) if multiprocess_dir is not None else _env_dir()
    if path is not None:
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


class Metrics:
    """The engine's Prometheus metrics, in a registry of their own."""

    def __init__(
        self, multiprocess_dir: str | Path | None = None, version: str | None = None
    ) -> None:
        """Build every metric; in multiprocess mode check the directory (``ConfigError``).
        ``version`` is the one ``ffe_build_info`` exports (default: this ffe's)."""
        self.multiprocess_dir = _resolve_multiprocess_dir(multiprocess_dir)
        self.registry = CollectorRegistry()
        if self.multiprocess_dir is None:
            # Per-process CPU and memory make no sense summed over workers: single process only.
            ProcessCollector(registry=self.registry)
        self._nonfinite_accounts: set[str] = set()
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._build_http_and_decisions()
        self._build_gauges()
        self._build_analysis()
        self._build_trading()
        self._build_forecasting()
        self._build_service(version)
        self._jobs = _JobsCollector()
        self.registry.register(self._jobs)

    def _build_http_and_decisions(self) -> None:
        registry = self.registry
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
        self._decisions = Counter(
            "ffe_decisions",
            "Trading decisions made, by symbol and action.",
            ["symbol", "action"],
            registry=registry,
        )
        self._decision_seconds = Histogram(
            "ffe_decision_latency_seconds",
            "Time taken to make one decision.",
            buckets=DECISION_BUCKETS,
            registry=registry,
        )
        self._agent_restarts = Counter(
            "ffe_agent_restarts",
            "Times the agent was restarted after its journal failed, by account.",
            ["account"],
            registry=registry,
        )
        self._cache = Counter(
            "ffe_cache_requests",
            "Cache lookups by cache and result (hit, miss, error).",
            ["cache", "result"],
            registry=registry,
        )

    def _build_gauges(self) -> None:
        registry = self.registry
        self._breaker = Gauge(
            "ffe_circuit_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ["name"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._portfolio = Gauge(
            "ffe_portfolio_value",
            "Portfolio equity by account, in the account currency.",
            ["account"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self._heartbeat = Gauge(
            "ffe_agent_heartbeat_timestamp_seconds",
            "Unix time of the agent's last heartbeat.",
            ["account"],
            registry=registry,
            multiprocess_mode="max",
        )
        # Set by the agent's own process: "mostrecent" keeps the last value also once that
        # process is gone, so an agent that crashed or was killed while running stays 1 (its
        # stale heartbeat still pages) and only a deliberate end (0) stops the page.
        self._agent_running = Gauge(
            "ffe_agent_running",
            "1 while the account's agent runs (or is meant to: a crashed one stays 1), 0 once "
            "it ended on purpose (stopped, replay finished) or while it is paused.",
            ["account"],
            registry=registry,
            multiprocess_mode="mostrecent",
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

    def _build_trading(self) -> None:
        registry = self.registry
        # The agent's gauges are its own process's (one agent per account): "mostrecent" keeps
        # the value last set, also after the process is gone (a halt stays journaled too).
        self._risk_halted = _Children(
            Gauge(
                "ffe_risk_halted",
                "1 while the risk engine halts the account's trading (reason: daily_loss, the "
                "daily loss kill switch; drawdown, the drawdown halt), else 0.",
                ["account", "reason"],
                registry=registry,
                multiprocess_mode="mostrecent",
            )
        )
        self._drawdown = _Children(
            Gauge(
                "ffe_drawdown_ratio",
                "Current drawdown of the account's equity from its peak (0 at the peak, 0.2 is "
                "20% below it).",
                ["account"],
                registry=registry,
                multiprocess_mode="mostrecent",
            )
        )
        self._realized = _Children(
            Gauge(
                "ffe_realized_pnl",
                "Cumulative realised P&L of the account's run, net of commissions, in the "
                "account currency.",
                ["account"],
                registry=registry,
                multiprocess_mode="mostrecent",
            )
        )
        self._fills = _Children(
            Counter(
                "ffe_fills",
                "Fills the agent's broker reported, by symbol and side (buy, sell).",
                ["symbol", "side"],
                registry=registry,
            )
        )
        self._trades_closed = _Children(
            Counter(
                "ffe_trades_closed",
                "Round trips closed, by account and result (win: positive realised P&L net of "
                "commissions; loss: the rest).",
                ["account", "result"],
                registry=registry,
            )
        )
        self._outcomes = _Children(
            Counter(
                "ffe_decision_outcomes",
                "Decisions judged once their horizon passed, by stated confidence (bins of 0.1) "
                "and outcome (hit, miss): the confidence's calibration.",
                ["confidence_bin", "outcome"],
                registry=registry,
            )
        )

    def _build_forecasting(self) -> None:
        registry = self.registry
        self._forecast_seconds = _Children(
            Histogram(
                "ffe_forecast_duration_seconds",
                "Time one forecast model took to forecast for a decision, by model.",
                ["model"],
                buckets=FORECAST_BUCKETS,
                registry=registry,
            )
        )
        self._ensemble_weight = _Children(
            Gauge(
                "ffe_ensemble_weight",
                "The ensemble's weight of each model in its latest decision on a symbol (0 for "
                "a model left out of it).",
                ["symbol", "model"],
                registry=registry,
                multiprocess_mode="mostrecent",
            )
        )

    def _build_service(self, version: str | None) -> None:
        registry = self.registry
        self._dependency_up = _Children(
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

    def record_decision(self, symbol: str, action: str, seconds: float | None = None) -> None:
        """Count one decision; with ``seconds``, also observe how long it took."""
        self._decisions.labels(symbol=symbol, action=action).inc()
        if seconds is not None:
            self._decision_seconds.observe(max(seconds, 0.0))

    def record_agent_restart(self, account: str) -> None:
        """Count one restart of an account's agent by the API's supervisor."""
        self._agent_restarts.labels(account=account).inc()

    def set_breaker(self, name: str, state: str) -> None:
        """Export a circuit breaker's state: ``closed``, ``half_open`` or ``open``."""
        if state not in BREAKER_STATES:
            raise ValueError(
                f"unknown circuit breaker state {state!r}: use one of {', '.join(BREAKER_STATES)}"
            )
        self._breaker.labels(name=name).set(BREAKER_STATES[state])

    def set_portfolio_value(self, account: str, value: float) -> None:
        """Export an account's equity; NaN and infinities are skipped (the last value stays)."""
        if not math.isfinite(value):
            if account not in self._nonfinite_accounts:
                logger.warning("portfolio value of %s is %s: not exported", account, value)
                self._nonfinite_accounts.add(account)
            return
        self._nonfinite_accounts.discard(account)
        self._portfolio.labels(account=account).set(float(value))

    def set_risk_halted(self, account: str, reason: str, halted: bool) -> None:
        """Export whether the risk engine's halt ``reason`` (``daily_loss`` or ``drawdown``)
        is in force on ``account``."""
        if reason not in RISK_HALT_REASONS:
            raise ValueError(
                f"unknown risk halt {reason!r}: use one of {', '.join(RISK_HALT_REASONS)}"
            )
        self._risk_halted(account, reason).set(1.0 if halted else 0.0)

    def set_drawdown(self, account: str, ratio: float) -> None:
        """Export the account's current drawdown from its peak equity (a fraction, >= 0);
        NaN is skipped."""
        if not math.isnan(ratio):
            self._drawdown(account).set(max(ratio, 0.0))

    def set_realized_pnl(self, account: str, pnl: float) -> None:
        """Export the account's cumulative realised P&L; NaN and infinities are skipped."""
        if math.isfinite(pnl):
            self._realized(account).set(pnl)

    def record_fill(self, symbol: str, quantity: float) -> None:
        """Count one fill the broker reported: a positive quantity is a buy, negative a sell."""
        if quantity:
            self._fills(symbol, "buy" if quantity > 0 else "sell").inc()

    def record_trades_closed(self, account: str, wins: int, losses: int) -> None:
        """Count round trips the account closed: ``wins`` with a positive realised P&L,
        ``losses`` the others. Both series exist (at 0) from the first call, so a rate over
        them starts with the agent, not with its first trade of each kind."""
        win, loss = self._trades_closed(account, "win"), self._trades_closed(account, "loss")
        if wins > 0:
            win.inc(wins)
        if losses > 0:
            loss.inc(losses)

    def record_decision_outcome(self, confidence: float, hit: bool) -> None:
        """Count one judged decision under its stated confidence's bin (``CONFIDENCE_BINS``)."""
        self._outcomes(confidence_bin(confidence), "hit" if hit else "miss").inc()

    def observe_forecast(self, model: str, seconds: float) -> None:
        """Observe the time ``model`` took to forecast."""
        self._forecast_seconds(model).observe(max(seconds, 0.0))

    def set_ensemble_weight(self, symbol: str, model: str, weight: float) -> None:
        """Export the ensemble's current weight of ``model`` on ``symbol``."""
        self._ensemble_weight(symbol, model).set(weight)

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

    def set_agent_heartbeat(self, account: str, unix_time: float) -> None:
        """Export the Unix time of an agent's last heartbeat."""
        self._heartbeat.labels(account=account).set(unix_time)

    def set_agent_running(self, account: str, running: bool) -> None:
        """Export whether the account's agent runs (1) or was stopped or paused on purpose
        (0); a process that dies leaves the last value, so never call this for a crash."""
        self._agent_running.labels(account=account).set(1.0 if running else 0.0)

    def mark_process_dead(self, pid: int) -> None:
        """Drop a dead worker's live gauges; does nothing in single-process mode."""
        if self.multiprocess_dir is not None:
            mark_process_dead(pid, self.multiprocess_dir)

    def forget_dead_processes(self) -> list[int]:
        """Drop the live gauges of every worker that is gone, crashed ones included (uvicorn
        has no hook for a worker exiting: each new worker sweeps at start-up); the pids."""
        if self.multiprocess_dir is None:
            return []
        dead = sorted(
            {
                pid
                for path in self.multiprocess_dir.glob("gauge_live*_*.db")
                if (pid := _pid_of(path.stem)) is not None and not _alive(pid)
            }
        )
        for pid in dead:  # workers start together: another may be removing the same files
            for path in self.multiprocess_dir.glob(f"gauge_live*_{pid}.db"):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return dead

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type, merged over workers in multiprocess mode."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        merged.register(self._jobs)  # the journal's numbers, as this process just read them
        return generate_latest(merged), CONTENT_TYPE_LATEST


def _pid_of(stem: str) -> int | None:
    """The process id in a multiprocess file's name (``gauge_livesum_1234``)."""
    tail = stem.rpartition("_")[2]
    return int(tail) if tail.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # no signal sent: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True
