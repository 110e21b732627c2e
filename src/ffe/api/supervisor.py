"""The paper agent inside the API process (``ffe run``, ``POST /api/v1/agent/start``): one
asyncio task running ``Agent.run``, wired so its decisions, fills, equity and state reach the
live stream and the metrics.

Control commands (pause, stop, emergency stop) still go through the journal like the CLI's,
so an agent started here obeys the CLI and the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from ffe.api.events import publish_event
from ffe.api.queries import journal_drawdown
from ffe.config import Settings
from ffe.domain.errors import ConflictError, FfeError, StoreError
from ffe.domain.orders import Decision, action_of
from ffe.kv import KvBackends
from ffe.obs.metrics import Metrics
from ffe.service import heap
from ffe.service.background import watched

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
        self._last_equity = 0.0
        self.peak = 0.0  # the agent's highest equity, bar by bar, for its drawdown
        self._strategy_seconds = 0.0  # the agent's time in its strategy, as last seen
        self._starting = asyncio.Lock()  # two starts at once: the second is refused cleanly
        self._stop = asyncio.Event()
        self._sending: set[asyncio.Task[None]] = set()
        self.max_drawdown = 0.0

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
        agent.notify = _Relay(self, agent.notify)
        agent.on_bar = lambda bar: self._on_bar(agent, bar)
        agent.on_open = lambda run_id: self._seed(agent, run_id)
        launch.params = dict(agent.spec.params)  # as the strategy typed them ("10" -> 10)
        self.agent, self.launch, self.error = agent, launch, None
        self.peak, self.max_drawdown, self._strategy_seconds = 0.0, 0.0, 0.0
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
            await asyncio.gather(*self._sending, return_exceptions=True)
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

    async def _seed(self, agent: Any, run_id: str) -> None:
        """Carry the peak and worst drawdown of the run the agent opened (or resumed) over
        from its journal, so a restart does not measure the drawdown from where it began."""
        try:
            peak, worst = await journal_drawdown(agent.db, run_id)
        except FfeError as exc:  # the portfolio's drawdown then starts here; trading goes on
            log.warning("could not read the run's drawdown from the journal: %s", exc)
            return
        self.peak, self.max_drawdown = max(self.peak, peak), min(self.max_drawdown, worst)

    # -- what the running agent reports -----------------------------------------------------

    def _on_bar(self, agent: Any, bar: int) -> None:
        core = agent.core
        if core is None:
            return
        if core.on_decision is None:
            core.on_decision = lambda decision, at: self._on_decision(agent, decision, at)
        equity, _ = core.ledger.marked(core.marks(), bar)
        self.peak = max(self.peak, equity)
        if self.peak > 0:
            self.max_drawdown = min(self.max_drawdown, equity / self.peak - 1)
        now = time.monotonic()
        if now - self._last_equity < 0.2:  # a fast replay steps thousands of bars a second
            return
        self._last_equity = now
        account = agent.config.account
        self.metrics.set_portfolio_value(account, equity)
        self.metrics.set_agent_heartbeat(account, time.time())
        breaker = getattr(agent.broker, "breaker", None)  # venue brokers are guarded
        if breaker is not None:
            self.metrics.set_breaker(breaker.name, breaker.state)
        data = {
            "account": account,
            "time": core.market.time_of(bar).isoformat(),
            "bar": bar,
            "equity": equity,
            "cash": core.ledger.cash,
        }
        self._send("equity", data)

    def _on_decision(self, agent: Any, decision: Decision, bar: int) -> None:
        action = action_of(decision.target)
        # The step's time in the strategy: counted once, with the bar's first decision.
        spent = agent.core.strategy_seconds - self._strategy_seconds
        self._strategy_seconds = agent.core.strategy_seconds
        self.metrics.record_decision(decision.symbol, action, spent if spent > 0 else None)
        data = {
            "account": agent.config.account,
            "time": agent.core.market.time_of(bar).isoformat(),
            "bar": bar,
            "symbol": decision.symbol,
            "target": decision.target,
            "action": action,
            "confidence": decision.confidence,
            "rationale": decision.rationale,
        }
        self._send("decision", data)

    async def _emit_state(self, agent: Any) -> None:
        from ffe.agent.control import AgentService

        try:
            for state in await AgentService(agent.db).status(agent.config.account):
                await self._publish("agent", state.as_dict())
        except Exception as exc:  # the journal or the bus is down: the state is told later
            log.warning("could not read the agent's state: %s", exc)

    def _send(self, kind: str, data: dict[str, Any]) -> None:
        self._spawn(self._publish(kind, data))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._sending.add(task)  # a task nobody holds may be collected before it runs
        task.add_done_callback(self._sending.discard)
        task.add_done_callback(_log_failure)

    async def _publish(self, kind: str, data: dict[str, Any]) -> None:

        await publish_event(self.kv.bus, kind, data)


def _warm(settings: Settings, launch: AgentLaunch) -> None:
    from ffe import bootstrap
    from ffe.data import load_market
    from ffe.decide.strategy import make_strategy

    load_market(bootstrap.data_catalog(settings), list(launch.symbols))
    make_strategy(launch.strategy, dict(launch.params))  # imports the strategy's libraries


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("live event not sent: %s", task.exception())


class _Relay:
    """The agent's notifications (fills, halts, approvals, start and stop) as stream events."""

    def __init__(self, supervisor: AgentSupervisor, inner: Any = None) -> None:
        self.supervisor = supervisor
        self.inner = inner  # the configured notifiers (Telegram, webhooks) still get theirs

    def publish(self, event: Any) -> None:
        if self.inner is not None:
            self.inner.publish(event)
        agent = self.supervisor.agent
        data = {"kind": event.kind, "text": event.text, **event.data}
        if agent is not None:
            data.setdefault("account", agent.config.account)
        kind = {"fill": "fill", "approval_waiting": "approval"}.get(event.kind, "event")
        self.supervisor._send(kind, data)
        if event.kind in ("started", "risk_halt") and agent is not None:
            # "stopped" is left to the supervisor, which says so once the run has ended
            self.supervisor._spawn(self.supervisor._emit_state(agent))
