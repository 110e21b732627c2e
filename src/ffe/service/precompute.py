"""``ffe precompute`` as a process: the analysis schedule (``service.analysis.Precompute``)
writing the shared cache until SIGTERM or SIGINT, with health probes and metrics on a port of
its own for an orchestrator and Prometheus.

Readiness checks the journal, Redis when configured (the cache lives there), and how long ago
an analysis was last stored: longer than the cache keeps one (3 x ``precompute.interval_s``)
and the API has nothing left to answer with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ffe.bootstrap import Components
from ffe.domain.errors import ConfigError
from ffe.kv import KvBackends
from ffe.obs.health import HealthChecks, Probe, ProbeError, ping_probe
from ffe.obs.metrics import Metrics
from ffe.service.analysis import Failure, Precompute, open_analysis
from ffe.service.probe import ProbeServer, probe_app
from ffe.store.database import Database

log = logging.getLogger(__name__)

#: After SIGTERM, how long the analysis in progress may take to finish and be stored; past
#: it, it is abandoned (nothing stored) and the process exits once its thread returns.
STOP_GRACE_S = 10.0


@dataclass(frozen=True, slots=True)
class Probes:
    """Where ``ffe precompute`` serves /health and /metrics; port 0: nowhere."""

    host: str
    port: int


def freshness_probe(schedule: Precompute, max_age_s: float) -> Probe:
    """A probe failing once no analysis was stored for ``max_age_s`` (counting from the
    start while the first round runs)."""

    async def probe() -> str:
        if not schedule.symbols:
            return "no symbols to analyse (precompute.symbols is empty)"
        now = time.time()
        if schedule.last_success is None:
            age = now - schedule.started_at
            what = f"no analysis stored yet, {age:.0f}s after start"
        else:
            age = now - schedule.last_success
            what = f"last analysis stored {age:.0f}s ago"
        if age > max_age_s:
            failing = ", ".join(sorted(schedule.failures)) or "none"
            raise ProbeError(
                f"{what}, longer than the cache keeps one ({max_age_s:g}s); failing: {failing}"
            )
        return what

    return probe


def _checks(db: Database, kv: KvBackends, schedule: Precompute) -> HealthChecks:
    checks = HealthChecks()
    checks.add("journal", ping_probe(db.ping, "journal"), dependency="database")
    if kv.redis_url is not None:  # the analyses are written there
        checks.add("redis", ping_probe(kv.ping, "redis"), dependency="redis")
    checks.add("refresh", freshness_probe(schedule, schedule.store.ttl_s))
    return checks


async def run_precompute(
    components: Components,
    probes: Probes,
    *,
    once: bool = False,
    say: Callable[[str], None] = print,
) -> int:
    """Refresh the configured symbols' analyses until SIGTERM or SIGINT (``once``: one
    round); the exit status: 0, or 1 when ``once`` and an analysis failed."""
    with _stopped_by_signals() as stop:  # from the start: a signal during start-up counts
        db = await components.open_journal()
        metrics = Metrics()
        kv = components.kv_backends(observer=lambda hit: metrics.cache_event("kv", hit))
        try:
            _, schedule = open_analysis(components, db, kv, metrics)
            where = f"Redis at {kv.where}" if kv.redis_url else f"the journal ({db})"
            symbols = ", ".join(schedule.symbols) or "no symbols"
            if once:
                say(f"ffe precompute: analysing {symbols} once into {where}")
                return _report(schedule.symbols, await schedule.run_once(stop), say)
            say(f"ffe precompute: {symbols} every {schedule.interval_s:g} s into {where}")
            await _serve(schedule, _checks(db, kv, schedule), metrics, probes, stop, say)
            return 0
        finally:
            await kv.close()
            await db.dispose()


@contextlib.contextmanager
def _stopped_by_signals() -> Iterator[asyncio.Event]:
    """An event SIGTERM and SIGINT set, instead of ending the process, while in the block."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        yield stop
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _report(symbols: list[str], failed: dict[str, Failure], say: Callable[[str], None]) -> int:
    for symbol in symbols:
        failure = failed.get(symbol)
        say(f"{symbol}: stored" if failure is None else f"{symbol}: failed: {failure.error}")
    return 1 if failed else 0


async def _serve(
    schedule: Precompute,
    checks: HealthChecks,
    metrics: Metrics,
    probes: Probes,
    stop: asyncio.Event,
    say: Callable[[str], None],
) -> None:
    server = None
    if probes.port:
        server = ProbeServer(probe_app(checks, metrics), probes.host, probes.port)
        try:
            await server.start()
        except OSError as exc:
            raise ConfigError(str(exc)) from None
        say(f"health and metrics on http://{probes.host}:{server.port}")
    try:
        await _run_until(schedule, stop)
    finally:
        if server is not None:
            await server.stop()


async def _run_until(schedule: Precompute, stop: asyncio.Event) -> None:
    """Run the schedule until ``stop`` is set; then let the analysis in progress finish for
    ``STOP_GRACE_S`` at most."""
    running = asyncio.create_task(schedule.run(stop), name="ffe-precompute")
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        done, _ = await asyncio.wait({running}, timeout=STOP_GRACE_S)
        if not done:
            log.warning("the analysis in progress took over %gs: abandoned", STOP_GRACE_S)
            running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running  # a failure of the schedule itself is raised here
    finally:
        stopping.cancel()
