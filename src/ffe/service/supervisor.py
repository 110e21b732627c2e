"""One agent session of ``ffe.service.agents`` run as an asyncio task, watched, and restarted
in the process with backoff when the journal failed under it: inside the API process (``ffe
run``, ``POST /api/v1/agent/start``) and in ``ffe agent run``'s own (``serve_supervised``).

Control commands (pause, stop, emergency stop) still go through the journal like the CLI's,
so an agent started here obeys the CLI and the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ffe.agent.reports import AgentReport, Snapshot
from ffe.backtest.benchmark import Costs
from ffe.backtest.summary import RunSummary
from ffe.domain.defaults import DEMO
from ffe.domain.errors import ConfigError, ConflictError, FfeError, StoreError
from ffe.service import heap
from ffe.service.agents import AgentLaunch, AgentLauncher, AgentSession, agent_checks
from ffe.service.background import watched
from ffe.service.probe import ProbeServer, probe_app

if TYPE_CHECKING:
    from ffe.data.source import BarSource

log = logging.getLogger(__name__)
# After a journal failure the agent is restarted after 1 s, then twice as long after each
# failure in a row, at most every 60 s (a run longer than that starts the count afresh).
RESTART_BACKOFF_S = (1.0, 60.0)


class AgentSupervisor:
    """Starts, watches and stops the one in-process agent; restarts it, with backoff, when
    the journal failed under it (a database outage, a full disk) once the journal answers.

    ``bars`` is where the agent's bars are loaded from, read on a thread before it is built
    so the API keeps answering; ``default_account`` is the account a launch naming none
    trades."""

    def __init__(self, launcher: AgentLauncher, bars: BarSource, default_account: str) -> None:
        self.launcher, self.bars, self.default_account = launcher, bars, default_account
        self.session: AgentSession | None = None
        self.launch: AgentLaunch | None = None
        self.task: asyncio.Task[Any] | None = None
        self.error: str | None = None
        self.restarts = 0  # since the last start by a person
        self.restarting = False  # the agent failed on the journal; a restart is due
        self._starting = asyncio.Lock()  # two starts at once: the second is refused cleanly
        self._stop = asyncio.Event()
        self.report: AgentReport | None = None  # how the last run ended, when it ended
        self.failure: BaseException | None = None  # what the last run failed with, if it did
        self.on_session: Callable[[AgentSession], None] | None = None  # told of each new one
        self.summary: RunSummary | None = None  # the last replay's, once it finished

    @property
    def agent(self) -> Any:
        """The agent running here (or that ran last); None before the first start."""
        return None if self.session is None else self.session.agent

    @property
    def peak(self) -> float:
        """The agent's highest equity, bar by bar, for its drawdown."""
        return 0.0 if self.session is None else self.session.peak

    @property
    def max_drawdown(self) -> float:
        """The agent's worst drawdown so far (a fraction <= 0)."""
        return 0.0 if self.session is None else self.session.max_drawdown

    @property
    def running(self) -> bool:
        """Whether the agent is running here (not while it waits to be restarted)."""
        return self.active and not self.restarting

    @property
    def active(self) -> bool:
        """Whether the agent runs here or waits to be restarted."""
        return self.task is not None and not self.task.done()

    def trades(self, account: str) -> bool:
        """Whether the agent running here trades ``account``."""
        return self.running and self.session is not None and self.session.account == account

    def snapshot(self) -> Snapshot | None:
        """What the agent here holds after its last finished bar (None before its first)."""
        return None if self.session is None else self.session.snapshot()

    def describe(self) -> dict[str, Any]:
        """What the agent here trades, and whether it runs (or why it stopped)."""
        launch = self.launch or AgentLaunch()
        return {
            "running": self.running,
            "account": launch.account or self.default_account,
            "strategy": launch.strategy if self.launch else None,
            "symbols": launch.symbols if self.launch else [],
            "params": launch.params if self.launch else {},
            "speed": launch.speed if self.launch else None,
            "error": self.error,
            "restarting": self.restarting and self.active,
            "restarts": self.restarts,
            "chosen": DEMO.story() if self.launch is not None and self.launch.demo else None,
            "finished": self.summary is not None and not self.active,
            "summary": None if self.summary is None else self.summary.as_dict(),
        }

    async def start(self, launch: AgentLaunch) -> None:
        """Build the agent ``launch`` asks for and run it in the background."""
        if self._starting.locked() or self.active:
            raise ConflictError("the agent is already running here: stop it first")
        async with self._starting:
            self._stop = asyncio.Event()  # a stop asked for while it is built: not started
            session = await self._open(launch)
            if self._stop.is_set():
                await self._close(session)
                return
            self.restarts, self.restarting, self.summary = 0, False, None
            task = asyncio.create_task(self._supervise(session, launch), name="ffe-agent")
            self.task = watched(task, "the agent's supervisor")

    async def _open(self, launch: AgentLaunch, owner: str | None = None) -> AgentSession:
        # Loading the bars first imports the data libraries (seconds, the first time): done on
        # a thread, so the API keeps answering; building the agent then finds them loaded.
        await asyncio.to_thread(_warm, self.bars, launch)
        session = await self.launcher.open(launch, owner=owner)
        launch.params = session.params  # as the strategy typed them ("10" -> 10)
        self.session, self.launch, self.error = session, launch, None
        if self.on_session is not None:
            self.on_session(session)
        # What the strategy imported and the new agent built stay out of the collector's way;
        # the agent it replaces is unreachable now, so it is collected, not frozen.
        heap.settle()
        return session

    async def _supervise(self, session: AgentSession, launch: AgentLaunch) -> None:
        """Run the agent, restarting it after journal failures; a failure of the supervision
        itself (a rebuild or a cleanup failing unforeseen) ends it with ``error`` saying why,
        so the API stays up and tells it."""
        try:
            await self._keep_running(session, launch)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("agent: stopped, not restarted: %s", self.error, exc_info=exc)

    async def _keep_running(self, session: AgentSession | None, launch: AgentLaunch) -> None:
        """Run the agent; after a journal failure, restart it (same run, same lease) once
        the journal answers, waiting longer after each failure in a row."""
        delay = RESTART_BACKOFF_S[0]
        while session is not None:
            began = time.monotonic()
            failure = await self._run(session)
            if not isinstance(failure, StoreError) or self._stop.is_set():
                return
            if time.monotonic() - began > RESTART_BACKOFF_S[1]:
                delay = RESTART_BACKOFF_S[0]  # it had been running well: a fresh failure
            session = await self._restart(launch, session.agent.owner, delay)
            delay = min(delay * 2, RESTART_BACKOFF_S[1])

    async def _restart(self, launch: AgentLaunch, owner: str, delay: float) -> AgentSession | None:
        """The agent rebuilt, after ``delay`` and then as long as the journal does not
        answer, longer each time; None when stopped meanwhile or the rebuild fails
        otherwise."""
        self.restarting = True
        try:
            while True:
                log.warning("agent: restarting in %.1f s (%s)", delay, self.error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                    return None
                try:
                    session = await self._open(launch, owner)
                except StoreError as exc:
                    self.error = f"{type(exc).__name__}: {exc}"
                    delay = min(delay * 2, RESTART_BACKOFF_S[1])
                    continue
                except Exception as exc:  # a broken setting or strategy: a person must look
                    self.error = f"{type(exc).__name__}: {exc}"
                    exc_info = None if isinstance(exc, FfeError) else exc
                    log.error("agent: not restarted: %s", self.error, exc_info=exc_info)
                    return None
                if self._stop.is_set():  # stopped while it was being built
                    await self._close(session)
                    return None
                self.restarts += 1
                self.launcher.metrics.record_agent_restart(session.account)
                log.warning("agent: restarted (restart %d) on its run", self.restarts)
                return session
        finally:
            self.restarting = False

    async def _run(self, session: AgentSession) -> BaseException | None:
        """Run the agent to its end; the exception it failed with, if any."""
        failure: BaseException | None = None
        try:
            report = await session.run()
            self.report = report
            self.summary = summarize(report, session, self.launch)
            log.info("agent %s: %s after %d bars", report.run_id[:8], report.status, report.bars)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep the API up; the dashboard shows why the agent stopped
            failure, self.error = exc, f"{type(exc).__name__}: {exc}"
            log.error("agent stopped: %s", self.error)
        finally:
            await self._close(session)
        self.failure = failure
        return failure

    async def _close(self, session: AgentSession) -> None:
        error = await session.close()
        self.error = self.error or error

    def request_stop(self) -> None:
        """Stop after the agent's current step, and restart it no more (a signal handler)."""
        self._stop.set()
        if self.session is not None:
            self.session.request_stop()

    async def stop(self, wait_s: float = 10.0) -> None:
        """Ask the agent to stop after its step, then wait for it (cancel if it hangs)."""
        task = self.task
        if task is None or task.done() or self.session is None:
            return
        self._stop.set()  # no restart after this
        self.session.request_stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), wait_s)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def summarize(
    report: AgentReport, session: AgentSession, launch: AgentLaunch | None
) -> RunSummary | None:
    """What a replay that ran to its end comes to (None for any other ending, or when it
    cannot be told: a summary never fails the agent's run)."""
    try:
        return _summary(report, session, launch)
    except Exception as exc:
        log.warning("agent: no summary of the replay: %s", exc)
        return None


def _summary(
    report: AgentReport, session: AgentSession, launch: AgentLaunch | None
) -> RunSummary | None:
    stats = getattr(report, "stats", None)
    if report.status != "finished" or not stats or session.agent.clock.live:
        return None
    fill = session.agent.config.fill
    costs = Costs(fill.commission, fill.slippage_bps, fill.fixed_commission)
    return RunSummary.of(
        stats,
        strategy=session.agent.spec.strategy,
        symbols=list(session.agent.market.symbols),
        costs=costs,
        params=session.params,
        start=None if launch is None else launch.start,
    )


def _warm(bars: BarSource, launch: AgentLaunch) -> None:
    from ffe.data import load_market
    from ffe.decide.strategy import make_strategy

    if launch.feed is None:  # a live feed's bars are fetched by the agent itself
        load_market(bars, list(launch.symbols))
    make_strategy(launch.strategy, dict(launch.params))  # imports the strategy's libraries


async def serve_supervised(
    supervisor: AgentSupervisor,
    launch: AgentLaunch,
    *,
    health_host: str = "127.0.0.1",
    health_port: int = 0,
) -> AgentReport:
    """``ffe agent run``: the agent ``launch`` asks for, run in this process to its end and
    restarted in it on its run, as in the API, when the journal fails under it, with the
    probes on ``health_host:health_port`` (0: none) all along. Back from a database outage it
    is rebuilt at its next restart attempt (``RESTART_BACKOFF_S``: after 1 s, doubling while
    the journal stays down), in this process, where a process that exited would wait for its
    process manager's back-off and load everything again. Raises what the run failed with
    otherwise."""
    probe: ProbeServer | None = None
    if health_port:  # bound first: a taken port is told before anything trades
        checks = agent_checks(lambda: supervisor.agent)
        probe = ProbeServer(
            probe_app(checks, supervisor.launcher.metrics), health_host, health_port
        )
        try:
            await probe.start()
        except OSError as exc:
            raise ConfigError(str(exc)) from exc
        log.info("agent: probes on http://%s:%d/health/ready", health_host, probe.port)
    try:
        await supervisor.start(launch)  # the first build's failure is the caller's to tell
        if supervisor.task is None:  # stopped (Ctrl-C) while it was being built
            return AgentReport("", "stopped", False, 0, 0, {})
        await asyncio.shield(supervisor.task)
    finally:
        if supervisor.task is not None and not supervisor.task.done():
            await supervisor.stop(wait_s=30.0)
        if probe is not None:
            await probe.stop()
    if supervisor.failure is not None:
        raise supervisor.failure
    if supervisor.error is not None and supervisor.report is None:
        raise FfeError(f"the agent stopped: {supervisor.error}")
    assert supervisor.report is not None
    return supervisor.report
