"""Health checks: named async probes run together, each under its own timeout.

A probe is an async callable that returns a short detail on success and raises on failure.
``HealthChecks.run()`` never waits longer than the slowest timeout: a hung probe becomes a
failed check ("timed out after 2s") and is cancelled in the background. The report is ``ok``
while every critical check passes; a failing non-critical check only makes it ``degraded``.

The probe factories below cover the usual cases: free disk, memory, an agent's heartbeat, and
a ping of any dependency (database, Redis). Failure details go to whoever calls the health
endpoint, so credentials in URLs are masked.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import psutil

__all__ = [
    "Check",
    "CheckResult",
    "DependencyScrape",
    "HealthChecks",
    "HealthReport",
    "HealthStatus",
    "Probe",
    "ProbeError",
    "disk_probe",
    "heartbeat_probe",
    "memory_probe",
    "ping_probe",
]

Probe = Callable[[], Awaitable[str]]
"""An async callable returning a short detail on success, raising on failure."""

HealthStatus = Literal["ok", "degraded", "fail"]

log = logging.getLogger(__name__)

_MAX_DETAIL = 300
_URL_PASSWORD = re.compile(r"(\w+://[^/\s:@]*:)[^/\s@]+@")


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check."""

    name: str
    ok: bool
    detail: str
    latency_ms: float
    critical: bool = True
    dependency: str | None = None  # the dependency the check pings (database, redis), if any


Check = Callable[[], Awaitable[CheckResult]]
"""A probe bound to its name, criticality and timeout."""


class ProbeError(Exception):
    """A probe's failure; its message is the check's detail as it stands."""


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Every check's result, and the verdict over them."""

    checks: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        """True iff every critical check passed."""
        return all(check.ok for check in self.checks if check.critical)

    @property
    def status(self) -> HealthStatus:
        """``ok``, ``degraded`` (only non-critical checks failed) or ``fail``."""
        if not self.ok:
            return "fail"
        return "ok" if all(check.ok for check in self.checks) else "degraded"

    def as_dict(self) -> dict[str, object]:
        """The report as JSON-ready data: ``{"status": ..., "checks": {name: {...}}}``."""
        checks = {
            c.name: {
                "ok": c.ok,
                "detail": c.detail,
                "latency_ms": round(c.latency_ms, 3),
                "critical": c.critical,
            }
            for c in self.checks
        }
        return {"status": self.status, "checks": checks}


def _scrub(detail: str) -> str:
    """Mask URL passwords and cut the detail to a readable length."""
    detail = _URL_PASSWORD.sub(r"\1***@", detail)
    if len(detail) > _MAX_DETAIL:
        detail = detail[: _MAX_DETAIL - 3] + "..."
    return detail


def _failure_detail(exc: BaseException) -> str:
    if isinstance(exc, ProbeError):
        return str(exc)
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class HealthChecks:
    """A set of named probes, run concurrently with a timeout each."""

    def __init__(self) -> None:
        """Start with no checks; ``add`` them."""
        self._checks: dict[str, Check] = {}
        self._dependencies: dict[str, float] = {}  # name -> timeout, of the checks that ping one
        self._abandoned: set[asyncio.Future[str]] = set()
        self._latest: tuple[float, HealthReport] | None = None  # (monotonic start, report)
        self._running: asyncio.Future[HealthReport] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the checks, in the order they were added."""
        return tuple(self._checks)

    def add(
        self,
        name: str,
        probe: Probe,
        *,
        critical: bool = True,
        timeout_s: float = 2.0,
        dependency: str | None = None,
    ) -> None:
        """Add a probe under a unique name; a failing non-critical probe only degrades health.
        ``dependency`` names what the probe pings (``database``, ``redis``): its results
        carry it, and ``Metrics.record_readiness`` exports them as ``ffe_dependency_up``."""
        if name in self._checks:
            raise ValueError(f"health check {name!r} is already added: pick another name")
        if not timeout_s > 0:
            raise ValueError(
                f"timeout_s of health check {name!r} must be positive, got {timeout_s}"
            )

        async def check() -> CheckResult:
            return await self._run_one(name, probe, critical, timeout_s, dependency)

        if dependency is not None:
            self._dependencies[name] = timeout_s

        self._checks[name] = check

    async def run(self, *, dependencies_only: bool = False) -> HealthReport:
        """Run every check concurrently and report; never waits past the longest timeout.
        With ``dependencies_only``, only the checks that ping a dependency."""
        chosen = [
            check
            for name, check in self._checks.items()
            if not dependencies_only or name in self._dependencies
        ]
        results = await asyncio.gather(*(check() for check in chosen))
        return HealthReport(tuple(results))

    async def latest(self, max_age_s: float) -> HealthReport:
        """A report of every check begun at most ``max_age_s`` ago. Callers that come while
        the checks run share that run (a load balancer's or a crowd's probes cost one run of
        the checks, not one each); a caller that gives up does not cancel it."""
        latest = self._latest
        if latest is not None and time.monotonic() - latest[0] < max_age_s:
            return latest[1]
        if self._running is None:
            self._running = asyncio.ensure_future(self._run_and_keep())
        return await asyncio.shield(self._running)

    async def _run_and_keep(self) -> HealthReport:
        started = time.monotonic()
        try:
            report = await self.run()
        finally:
            self._running = None
        self._latest = (started, report)
        return report

    @property
    def dependency_timeout_s(self) -> float:
        """The longest timeout of the checks that ping a dependency (0 with none)."""
        return max(self._dependencies.values(), default=0.0)

    async def _run_one(
        self, name: str, probe: Probe, critical: bool, timeout_s: float, dependency: str | None
    ) -> CheckResult:
        started = time.perf_counter()

        def result(ok: bool, detail: str) -> CheckResult:
            latency_ms = (time.perf_counter() - started) * 1000.0
            return CheckResult(name, ok, _scrub(detail), latency_ms, critical, dependency)

        try:
            task = asyncio.ensure_future(probe())
        except Exception as exc:  # a probe that fails before it awaits anything
            return result(False, _failure_detail(exc))
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout_s)
        finally:
            if not task.done():
                self._abandon(task)
        if not done:
            return result(False, f"timed out after {timeout_s:g}s")
        try:
            return result(True, task.result())
        except Exception as exc:
            return result(False, _failure_detail(exc))

    def _abandon(self, task: asyncio.Future[str]) -> None:
        """Cancel a late probe without waiting: a probe that ignores cancelling can't hang us."""
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Future[str]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as never retrieved


class DependencyScrape:
    """Keeps ``ffe_dependency_up`` current for Prometheus, which scrapes ``/metrics`` and
    never calls ``/health/ready`` (orchestrators probe ``/health/live``; without this the
    series would only move when someone asks for readiness).

    Awaited before a scrape renders: it runs the checks that ping a dependency (database,
    Redis) when they last ran more than ``max_age_s`` ago, and hands their results to
    ``record`` (``Metrics.record_readiness``). One run at a time: a scrape that comes while
    one is under way waits for that one. A scrape never waits longer than the checks'
    longest timeout (``HealthChecks.run`` bounds a run by it; a slow ``record`` is left to
    finish in the background). Each process keeps its own (API workers each answer
    scrapes; the gauge's ``mostrecent`` mode keeps the newest value of any of them)."""

    def __init__(
        self,
        checks: HealthChecks,
        record: Callable[[tuple[CheckResult, ...]], None],
        max_age_s: float = 5.0,
    ) -> None:
        self.checks, self.record, self.max_age_s = checks, record, max_age_s
        self._last = float("-inf")  # time.monotonic() of the last run
        self._running: asyncio.Task[None] | None = None

    def recorded(self, report: HealthReport) -> None:
        """Record a readiness report the caller ran (``/health/ready``): it counts as a run."""
        self.record(report.checks)
        self._last = time.monotonic()

    async def refresh(self) -> None:
        """Run the dependency checks unless they ran in the last ``max_age_s``, or wait for
        the run under way; at most the checks' longest timeout (and a little)."""
        task = self._running
        if task is None:
            if time.monotonic() - self._last < self.max_age_s:
                return
            task = self._running = asyncio.ensure_future(self._run())
        # Not cancelled when this scrape gives up (or its client goes): others may wait on it.
        await asyncio.wait({task}, timeout=self.checks.dependency_timeout_s + 0.5)

    async def _run(self) -> None:
        try:
            report = await self.checks.run(dependencies_only=True)
            self.record(report.checks)
        except Exception as exc:  # the gauges keep their last values; the next scrape retries
            log.warning("dependency checks for the metrics failed: %s", exc)
        finally:
            self._last = time.monotonic()
            self._running = None


def _bytes(n: float) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    i = 0
    while abs(n) >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.0f} B" if i == 0 else f"{n:.1f} {units[i]}"


def disk_probe(path: Path, min_free_bytes: int = 100 * 2**20) -> Probe:
    """A probe failing when the disk holding ``path`` has less than ``min_free_bytes`` free."""

    async def probe() -> str:
        # In a thread: a stat on a hung network mount must not block the event loop.
        usage = await asyncio.to_thread(psutil.disk_usage, str(path))
        free = f"{_bytes(usage.free)} free at {path}"
        if usage.free < min_free_bytes:
            raise ProbeError(f"only {free}, below the minimum of {_bytes(min_free_bytes)}")
        return free

    return probe


def memory_probe(max_percent: float = 95.0) -> Probe:
    """A probe failing when more than ``max_percent`` of the machine's memory is in use."""

    async def probe() -> str:
        memory = psutil.virtual_memory()
        used = f"memory {memory.percent:.1f}% used, {_bytes(memory.available)} available"
        if memory.percent > max_percent:
            raise ProbeError(f"{used}, above the maximum of {max_percent:g}%")
        return used

    return probe


def heartbeat_probe(
    last_seen: Callable[[], Awaitable[datetime | None]],
    max_age_s: float,
    *,
    now: Callable[[], datetime] | None = None,
) -> Probe:
    """A probe failing when the last heartbeat is missing or older than ``max_age_s``.

    ``last_seen`` returns the heartbeat's time; a naive datetime is taken as UTC (SQLite
    returns them so). ``now`` is the clock, UTC wall time by default.
    """
    clock = now or (lambda: datetime.now(UTC))

    async def probe() -> str:
        seen = await last_seen()
        if seen is None:
            raise ProbeError("no heartbeat recorded yet")
        if seen.tzinfo is None:
            seen = seen.replace(tzinfo=UTC)
        age_s = max((clock() - seen).total_seconds(), 0.0)
        if age_s > max_age_s:
            raise ProbeError(
                f"last heartbeat {age_s:.0f}s ago, older than the maximum of {max_age_s:g}s"
            )
        return f"last heartbeat {age_s:.0f}s ago"

    return probe


def ping_probe(ping: Callable[[], Awaitable[object]], what: str) -> Probe:
    """A probe wrapping any async ping (``SELECT 1``, Redis ``PING``); its error is the detail."""

    async def probe() -> str:
        try:
            await ping()
        except Exception as exc:
            raise ProbeError(f"{what}: {_failure_detail(exc)}") from exc
        return f"{what} reachable"

    return probe
