"""The paper agent inside the API process (``ffe run``, ``POST /api/v1/agent/start``): one
asyncio task running ``Agent.run``, reported (decisions, fills, equity, state; the metrics) on
this process's event bus by ``ffe.service.reporting``, as ``ffe agent run`` reports its own.

Control commands (pause, stop, emergency stop) still go through the journal like the CLI's,
so an agent started here obeys the CLI and the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ffe.config import Settings
from ffe.domain.errors import ConflictError, FfeError, StoreError
from ffe.kv import KvBackends
from ffe.obs.metrics import Metrics
from ffe.service import heap
from ffe.service.background import watched
from ffe.service.reporting import AgentReporter
from ffe.service.runs import journal_drawdown

log = logging.getLogger(__name__)
# After a journal failure the agent is restarted after 1 s, then twice as long after each
# failure in a row, at most every 60 s (a run longer than that starts the count afresh).
RESTART_BACKOFF_S = (1.0, 60.0)


@dataclass
class AgentLaunch:
    """What the supervised agent trades."""

    strategy: str = "sma_cross"
    symbols: list[str] = field(default_factory=lambda: ["SP500"])
    params: dict[str, Any] = field(default_factory=dict)
    speed: float | None = 20.0
    approval: str | None = None
    fresh: bool = False
    account: str | None = None


class AgentSupervisor:
    """Starts, watches and stops the one in-process agent; restarts it, with backoff, when
    the journal failed under it (a database outage, a full disk) once the journal answers."""

    def __init__(self, settings: Settings, kv: KvBackends, metrics: Metrics) -> None:
        self.settings, self.kv, self.metrics = settings, kv, metrics
        self.agent: Any = None
        self.launch: AgentLaunch | None = None
        self.task: asyncio.Task[Any] | None = None
        self.error: str | None = None
        self.restarts = 0  # since the last start by a person
        self.restarting = False  # the agent failed on the journal; a restart is due
        self.reporter: AgentReporter | None = None  # the agent's events and metrics
        self._starting = asyncio.Lock()  # two starts at once: the second is refused cleanly
        self._stop = asyncio.Event()

    @property
    def peak(self) -> float:
        """The agent's highest equity, bar by bar, for its drawdown."""
        return 0.0 if self.reporter is None else self.reporter.peak

    @property
    def max_drawdown(self) -> float:
        """The agent's worst drawdown so far (a fraction <= 0)."""
        return 0.0 if self.reporter is None else self.reporter.max_drawdown

    @property
    def running(self) -> bool:
        """Whether the agent is running here (not while it waits to be restarted)."""
        return self.active and not self.restarting

    @property
    def active(self) -> bool:
        """Whether the agent runs here or waits to be restarted."""
        return self.task is not None and not self.task.done()

    def describe(self) -> dict[str, Any]:
        """What the agent here trades, and whether it runs (or why it stopped)."""
        launch = self.launch or AgentLaunch()
        return {
            "running": self.running,
            "account": launch.account or self.settings.agent.account,
            "strategy": launch.strategy if self.launch else None,
            "symbols": launch.symbols if self.launch else [],
            "params": launch.params if self.launch else {},
            "speed": launch.speed if self.launch else None,
            "error": self.error,
            "restarting": self.restarting and self.active,
            "restarts": self.restarts,
        }

    async def start(self, launch: AgentLaunch) -> None:
        """Build the agent from settings and run it in the background."""
        if self._starting.locked() or self.active:
            raise ConflictError("the agent is already running here: stop it first")
        async with self._starting:
            agent = await self._build(launch)
            self.restarts, self.restarting, self._stop = 0, False, asyncio.Event()
            task = asyncio.create_task(self._supervise(agent, launch), name="ffe-agent")
            self.task = watched(task, "the agent's supervisor")

    async def _build(self, launch: AgentLaunch, owner: str | None = None) -> Any:
        from ffe import bootstrap

        # Loading the bars first imports the data libraries (seconds, the first time): done on
        # a thread, so the API keeps answering; building the agent then finds them loaded.
        await asyncio.to_thread(_warm, self.settings, launch)
        agent = await bootstrap.agent(
            self.settings,
            launch.strategy,
            dict(launch.params),
            list(launch.symbols),
            replay=True,
            speed=launch.speed,
            approval=launch.approval,
            fresh=launch.fresh and owner is None,  # a restart resumes the run it was trading
            account=launch.account,
        )
        if owner is not None:  # the lease it held is taken back at once, not waited out
            agent.owner = owner
        publisher = bootstrap.agent_publisher(self.kv, in_process=True)
        reporter = AgentReporter(publisher, self.metrics)
        agent.watch(on_open=lambda run_id: self._seed(reporter, agent, run_id))
        reporter.attach(agent)
        launch.params = dict(agent.spec.params)  # as the strategy typed them ("10" -> 10)
        self.agent, self.launch, self.error, self.reporter = agent, launch, None, reporter
        # What the strategy imported and the new agent built stay out of the collector's way;
        # the agent it replaces is unreachable now, so it is collected, not frozen.
        heap.settle()
        return agent

    async def _supervise(self, agent: Any, launch: AgentLaunch) -> None:
        """Run the agent, restarting it after journal failures; a failure of the supervision
        itself (a rebuild or a cleanup failing unforeseen) ends it with ``error`` saying why,
        so the API stays up and tells it."""
        try:
            await self._keep_running(agent, launch)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("agent: stopped, not restarted: %s", self.error, exc_info=exc)

    async def _keep_running(self, agent: Any, launch: AgentLaunch) -> None:
        """Run the agent; after a journal failure, restart it (same run, same lease) once
        the journal answers, waiting longer after each failure in a row."""
        delay = RESTART_BACKOFF_S[0]
        while agent is not None:
            began = time.monotonic()
            failure = await self._run(agent)
            if not isinstance(failure, StoreError) or self._stop.is_set():
                return
            if time.monotonic() - began > RESTART_BACKOFF_S[1]:
                delay = RESTART_BACKOFF_S[0]  # it had been running well: a fresh failure
            agent = await self._restart(launch, agent.owner, delay)
            delay = min(delay * 2, RESTART_BACKOFF_S[1])

    async def _restart(self, launch: AgentLaunch, owner: str, delay: float) -> Any:
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
                    agent = await self._build(launch, owner)
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
                    await self._dispose(agent)
                    return None
                self.restarts += 1
                self.metrics.record_agent_restart(agent.config.account)
                log.warning("agent: restarted (restart %d) on its run", self.restarts)
                return agent
        finally:
            self.restarting = False

    async def _run(self, agent: Any) -> BaseException | None:
        """Run the agent to its end; the exception it failed with, if any."""
        failure: BaseException | None = None
        try:
            report = await agent.run()
            log.info("agent %s: %s after %d bars", report.run_id[:8], report.status, report.bars)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # keep the API up; the dashboard shows why the agent stopped
            failure, self.error = exc, f"{type(exc).__name__}: {exc}"
            log.error("agent stopped: %s", self.error)
        finally:
            # Events still on their way read the agent's journal: let them land before it
            # closes (a read left waiting on a closed connection never finishes).
            if self.reporter is not None:
                await self.reporter.settle()
            await self._emit_state(agent)
            await self._dispose(agent)
        return failure

    async def _dispose(self, agent: Any) -> None:
        """Close the agent's journal; a failure is told, not raised (the agent is over)."""
        try:
            await agent.db.dispose()
        except Exception as exc:
            self.error = self.error or f"{type(exc).__name__}: {exc}"
            log.error("agent: could not close its journal: %s", exc, exc_info=exc)

    async def stop(self, wait_s: float = 10.0) -> None:
        """Ask the agent to stop after its step, then wait for it (cancel if it hangs)."""
        task = self.task
        if task is None or task.done():
            return
        self._stop.set()  # no restart after this
        self.agent.request_stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), wait_s)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _seed(self, reporter: AgentReporter, agent: Any, run_id: str) -> None:
        """Carry the peak and worst drawdown of the run the agent opened (or resumed) over
        from its journal, so a restart does not measure the drawdown from where it began."""
        try:
            peak, worst = await journal_drawdown(agent.db, run_id)
        except FfeError as exc:  # the portfolio's drawdown then starts here; trading goes on
            log.warning("could not read the run's drawdown from the journal: %s", exc)
            return
        reporter.seed(peak, worst)

    async def _emit_state(self, agent: Any) -> None:
        """Publish the agent's state once its run has ended."""
        if self.reporter is not None:
            await self.reporter.publish_state(agent)


def _warm(settings: Settings, launch: AgentLaunch) -> None:
    from ffe import bootstrap
    from ffe.data import load_market
    from ffe.decide.strategy import make_strategy

    load_market(bootstrap.data_catalog(settings), list(launch.symbols))
    make_strategy(launch.strategy, dict(launch.params))  # imports the strategy's libraries
