"""The agent's run: take the account's lease, open or resume its run, rebuild its state from
the journal, reconcile with the broker, step through the clock's bars while obeying control
commands, and close the run. The lease, the commands and the wait while the account stays
stopped on purpose are ``ffe.agent.lifecycle``'s.

A restart picks up the run the account was trading: the ledger is rebuilt from the journaled
fills, working orders from the journaled orders, the rest from the checkpoint; the bars after
the checkpoint are stepped again and make the same rows (order ids are derived from the run
and the bar, so a replayed order has the id it had, and a broker that already has it sends
nothing twice).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta
from typing import Any, Protocol

from ffe.agent import persist
from ffe.agent.approvals import ApprovalDesk
from ffe.agent.clock import utcnow
from ffe.agent.control import AgentService, AgentStatus
from ffe.agent.journal import AgentJournal
from ffe.agent.lifecycle import Lifecycle, Notify
from ffe.agent.reconcile import reconcile, restore
from ffe.agent.record import RunSpec, close_run, fail_run, open_run, run_config, run_result
from ffe.agent.reports import (
    AgentReport,
    DecisionOutcome,
    DecisionsMade,
    OnBar,
    OnDecisions,
    OnEvent,
    OnForecast,
    OnOpen,
    OnOrder,
    OnOutcome,
    OnRunning,
    Snapshot,
)
from ffe.agent.step import AgentConfig, StepCore
from ffe.agent.stepper import EnsembleStepper, Stepper
from ffe.backtest.result import BacktestResult, with_llm_failures
from ffe.decide.strategy import Strategy
from ffe.domain.errors import DataError, FfeError, StoreError
from ffe.domain.market import MarketData
from ffe.execution.broker import Broker
from ffe.risk.engine import RiskEngine
from ffe.store.database import Database

__all__ = ["Agent", "Clock", "Notify", "RunSpec", "paper_agent"]

log = logging.getLogger(__name__)


class Clock(Protocol):
    live: bool

    def ticks(self, start: int) -> Any: ...


class Agent(Lifecycle):
    """One account's trading agent. ``run()`` returns when the clock ends, on a signal, or on
    ``stop`` (with ``on_stop`` "wait", not on ``stop``: it waits for ``resume``)."""

    def __init__(
        self,
        db: Database,
        market: MarketData,
        strategy: Strategy,
        stepper: Stepper,
        broker: Broker,
        risk: RiskEngine,
        clock: Clock,
        config: AgentConfig,
        spec: RunSpec,
        notify: Notify | None = None,
    ) -> None:
        super().__init__(db, broker, config, notify)
        self.market, self.strategy, self.stepper = market, strategy, stepper
        self.risk, self.clock, self.spec = risk, clock, spec
        self.core: StepCore | None = None
        self.step_seconds: list[float] = []
        self.time_steps = False

    @property
    def run_id(self) -> str | None:
        """The run the agent trades, once it has opened (or resumed) it."""
        core = self.core
        return None if core is None else core.journal.run_id

    def snapshot(self) -> Snapshot | None:
        """What the agent holds after its last finished bar (None before its first)."""
        core = self.core
        return None if core is None else core.snapshot()

    def watch(
        self,
        *,
        on_open: OnOpen | None = None,
        on_bar: OnBar | None = None,
        on_decisions: OnDecisions | None = None,
        on_event: OnEvent | None = None,
        on_outcome: OnOutcome | None = None,
        on_forecast: OnForecast | None = None,
        on_running: OnRunning | None = None,
        on_order: OnOrder | None = None,
    ) -> None:
        """Be told, from now on: ``on_open`` (awaited) once the run is open and restored,
        before its first bar, with its run id; ``on_bar`` after each bar; ``on_decisions``
        when the strategy decided on a bar; ``on_event`` with each notification (fills,
        halts, approvals, start and stop); ``on_outcome`` when a decision is judged, its
        horizon passed; ``on_forecast`` with the seconds each forecast model of the ensemble
        took (other strategies have none); ``on_running`` with True when the agent starts
        or resumes and False when it ends or pauses on purpose (never for a failure: a
        failed agent is meant to be running); ``on_order`` with the seconds from a decision
        to the broker's acknowledgement of each order sent for it on its bar (risk checks,
        approval policy, journal and submit; not orders a person approved later, nor
        flattening). They run in the trading loop: keep them quick."""
        self._watchers.add(
            on_open, on_bar, on_decisions, on_event, on_outcome, on_forecast, on_running, on_order
        )
        if on_forecast is not None and isinstance(self.stepper, EnsembleStepper):
            self.stepper.on_forecast = self._forecast  # timed only once someone listens

    async def status(self) -> AgentStatus | None:
        """The account's state as the journal has it (None before the agent first ran)."""
        found = await AgentService(self.db).status(self.config.account)
        return found[0] if found else None

    @property
    def breaker(self) -> Any:
        """The circuit breaker guarding a venue's broker; None for the paper broker."""
        return getattr(self.broker, "breaker", None)

    # -- the run --------------------------------------------------------------------------

    async def run(self) -> AgentReport:
        account = self.config.account
        try:
            state = await persist.acquire_lease(self.db, account, self.owner, persist.LEASE_TTL)
        except BaseException:
            await self.broker.close()
            raise
        status = "stopped"
        keeper = asyncio.create_task(self._keep_lease(), name="ffe-agent-lease")
        try:
            state = await self._settle_stale(state)
            if self.on_stop == "wait" and persist.stopped_on_purpose(state) is not None:
                started = await self._wait_for_start(state)
                if started is None:  # ended (a signal, the lease lost) while still stopped
                    return AgentReport(state.run_id or "", "stopped", False, 0, 0, {})
                state = started
            if not await self._prepare_clock(state):  # ended while its feed was down
                return AgentReport(state.run_id or "", "stopped", False, 0, 0, {})
            config = self._run_config()
            run, resumed = await open_run(self.db, state.run_id, self.spec, self.market, config)
            core = self._core(run.id)
            first = await restore(
                core, self.db, run.id, persist.Checkpoint.of(state.checkpoint) if resumed else None
            )
            report = AgentReport(run.id, "running", resumed, 0, first, {})
            report.reconciliation = await reconcile(core, self.db, account)
            if hasattr(self.clock, "report_catch_up"):
                await self.clock.report_catch_up(first)
            await self._begin(core, run.id, state)
            report.status, report.bars = await self._loop(core, first)
            status = "halted" if self.emergency else "stopped"
            report.stats = await self._close_run(core, run.id, report.status)
            return report
        except BaseException as exc:
            if not _interrupt(exc):
                # A failure is no stop: the journal is left saying the agent runs (as a killed
                # agent leaves it; read as stopped once the lease is gone), so whoever reads it
                # (the API's journal tail, its ffe_agent_running) knows it is meant to run.
                status = "halted" if self.emergency else "running"
                if self.stopped_by is not None and not self.emergency:
                    status = "stopped"  # stopped on purpose, and failed while it waited: stays so
            await self._fail(exc)
            raise
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            closing = getattr(self.clock, "close", None)
            if closing is not None:  # a live feed's connections
                await closing()
            await self._end(account, status)

    def _run_config(self) -> dict[str, Any]:
        config = run_config(self.config, self.spec, self.risk, live_clock=self.clock.live)
        if hasattr(self.clock, "feed"):  # where its bars come from, for `ffe runs show`
            config["agent"]["feed"] = self.clock.feed.name
        return config

    async def _prepare_clock(self, state: Any) -> bool:
        """A live feed's clock fetches the bars to start from: from the first bar of the run
        it resumes (so bar numbers in its journal stay valid), or its warm-up; False when
        the agent is to end before the feed answered."""
        clock: Any = self.clock
        if not hasattr(clock, "prepare"):
            return True
        checkpoint = persist.Checkpoint.of(state.checkpoint)
        origin = None if checkpoint is None or self.spec.fresh else checkpoint.origin
        clock.on_event, clock.idle = self._feed_event, self._stopping
        market = await clock.prepare(None if origin is None else datetime.fromisoformat(origin))
        if market is None:
            return False
        if checkpoint is not None and origin is not None and checkpoint.bar >= 0:
            _check_resumable(market, checkpoint.bar, state.last_bar_time)
        self.market = market
        return True

    async def _stopping(self) -> bool:
        return self.stopping

    async def _idle(self, core: StepCore) -> bool:
        """What the clock does between its slices of waiting: obey commands; True to end."""
        await self.obey(core, force=False)
        return self.stopping

    async def _feed_event(self, kind: str, text: str, data: dict[str, Any]) -> None:
        """A feed event (outage, recovery, stale data, a gap filled, bars caught up): logged,
        audited in the journal, and sent to the notifier and the watchers."""
        log.warning("feed: %s", text)
        try:
            details = {**data, "text": text}
            await persist.record_event(self.db, self.config.account, f"agent.{kind}", details)
        except FfeError as exc:  # the journal is down: the run meets it and stops on it
            log.warning("could not journal the feed event %s: %s", kind, exc)
        self.event("feed", text, {"event": kind, **data})

    def _core(self, run_id: str) -> StepCore:
        c = self.config
        journal = AgentJournal(self.db, run_id, c.account, self.owner)
        desk = ApprovalDesk(c.approval, timedelta(seconds=c.approval_ttl_s), c.account)
        core = StepCore(
            self.market,
            self.strategy,
            self.stepper,
            self.broker,
            self.risk,
            journal,
            c,
            desk,
            prefix=run_id[:10],
        )
        core.on_event = self.event
        core.on_decisions = self._decided
        core.on_order = self._ordered
        core.outcomes.on_judged = self._judged
        core.live_clock = self.clock.live
        if hasattr(self.clock, "prepare") and self.market.n_bars:
            core.origin = self.market.time_of(0).isoformat()
        self.core = core
        return core

    # -- the loop -------------------------------------------------------------------------

    async def _loop(self, core: StepCore, first: int) -> tuple[str, int]:
        bars = 0
        for opened in self._watchers.opened:
            await opened(core.journal.run_id)
        tradable = getattr(self.clock, "tradable", None)
        if hasattr(self.clock, "idle"):  # a live clock's waits obey commands and signals
            self.clock.idle = lambda: self._idle(core)
        async for market, bar in self.clock.ticks(first):
            await self.obey(core, force=False)
            while self.paused and not self.stopping:
                await asyncio.sleep(self.config.command_poll_s)
                await self.obey(core, force=True)
            if self.stopping:
                return "interrupted", bars
            started = time.perf_counter() if self.time_steps else 0.0
            strategy_before = core.strategy_seconds
            trade = tradable is None or tradable(bar)
            await core.step(market, bar, decide=self.emergency is None, trade=trade)
            bars += 1
            await self._after_step(core)
            if self.time_steps:  # the agent's own work: the step and its journal, not the strategy
                spent = time.perf_counter() - started
                self.step_seconds.append(spent - (core.strategy_seconds - strategy_before))
            if self._watchers.bars:
                report = core.bar_report(bar)
                for watcher in self._watchers.bars:
                    watcher(report)
        finished = not self.clock.live or getattr(self.clock, "finished", False)
        end = "finished" if finished else "interrupted"
        return ("interrupted" if self.stopping else end), bars

    def _decided(self, made: DecisionsMade) -> None:
        for watcher in self._watchers.decisions:
            watcher(made)

    def _ordered(self, seconds: float) -> None:
        for watcher in self._watchers.orders:
            watcher(seconds)

    def _judged(self, symbol: str, confidence: float, hit: bool) -> None:
        if self._watchers.outcomes:
            outcome = DecisionOutcome(self.config.account, symbol, confidence, hit)
            for watcher in self._watchers.outcomes:
                watcher(outcome)

    def _forecast(self, model: str, seconds: float) -> None:
        for watcher in self._watchers.forecasts:
            watcher(model, seconds)

    async def _after_step(self, core: StepCore) -> None:
        self._bars_since_flush += 1
        if self._halt_due and self.emergency is not None:
            self._halt_due = False
            await self.emergency_stop(core, self.emergency)
        desk = core.desk
        if desk.queued_since_flush or self._flush_due():
            await self._flush(core)
            desk.queued_since_flush = 0
        if desk.waiting:
            await self.settle_approvals(core, wait=not self.clock.live)

    async def settle_approvals(self, core: StepCore, *, wait: bool) -> None:
        """Send approved orders, drop rejected and expired ones. With ``wait`` (replay), block
        until nothing is pending, obeying control commands meanwhile."""
        desk = core.desk
        while desk.waiting and not self.stopping:
            rows = await persist.approvals_for_run(
                self.db, core.journal.run_id, ("pending", "approved", "rejected")
            )
            now, expired = utcnow(), []
            for row in rows:
                waiting = desk.waiting.get(row.client_order_id)
                if waiting is None:
                    continue
                if row.status == "pending" and row.expires_at > now:
                    continue
                del desk.waiting[row.client_order_id]
                if row.status == "approved":
                    await core.send_approved(waiting.intent, waiting.decision)
                    await persist.mark_approvals(self.db, [row.id], "sent", "agent")
                elif row.status == "pending":
                    expired.append(row.id)
            await persist.mark_approvals(self.db, expired, "expired", "expiry")
            decided = {r.client_order_id for r in rows}
            for client_id in [c for c in desk.waiting if c not in decided]:
                del desk.waiting[client_id]  # decided and recorded elsewhere
            if not wait or not desk.waiting:
                return
            await asyncio.sleep(self.config.command_poll_s)
            await self.obey(core, force=True)

    # -- the end --------------------------------------------------------------------------

    async def _close_run(self, core: StepCore, run_id: str, status: str) -> dict[str, Any] | None:
        if status == "finished":
            await core.cancel_working("end of data")
        await self._flush(core)
        stats = None
        if core.last_bar >= 0:  # a backtest's statistics, and its count of the LLM's failures
            found = self.result(core).stats.as_dict()
            stats = with_llm_failures(found, self.strategy, core.llm_failures)
        await close_run(self.db, run_id, status, stats)
        self.event("stopped", f"agent {status} on {self.config.account}", {"run_id": run_id})
        if not self.lease_lost:  # the agent that took the lease over runs the account now
            self._tell_running(False)
        return stats

    def result(self, core: StepCore) -> BacktestResult:
        """The run so far as a backtest result (same statistics, same reports)."""
        return run_result(core, self.config, self.strategy)

    async def _fail(self, exc: BaseException) -> None:
        core = self.core
        if core is None:
            return
        if _interrupt(exc) and not self.lease_lost:
            # Cancelled by its owner (an API stopping an agent that did not stop in time, a
            # process shutting down): ended on purpose. A failure leaves it "running" (pages).
            self._tell_running(False)
        try:
            await self._flush(core)  # keep what was done before the failure
            # A journal failure interrupts the run rather than failing it: it resumes once
            # the journal answers again (the API's supervisor restarts it).
            resumable = _interrupt(exc) or isinstance(exc, StoreError)
            error = f"{type(exc).__name__}: {exc}"
            await fail_run(self.db, core.journal.run_id, error, resumable=resumable)
        except FfeError as nested:
            log.error("could not record the failure in the journal: %s", nested)
        if not _interrupt(exc):
            self.event("error", f"agent failed: {exc}", {})


def _check_resumable(market: MarketData, bar: int, last: datetime | None) -> None:
    """The bars a resumed run's feed gave back hold its last bar where its journal says:
    otherwise its bar numbers would name other bars (the venue keeps less history now)."""
    if market.n_bars > bar and (last is None or market.time_of(bar) == last):
        return
    raise DataError(
        f"the feed no longer has the bars of the run being resumed (its bar {bar} at {last}): "
        "start a new run with --fresh"
    )


def _interrupt(exc: BaseException) -> bool:
    return isinstance(exc, KeyboardInterrupt | asyncio.CancelledError)


def paper_agent(
    db: Database,
    market: MarketData,
    strategy: Strategy,
    params: dict[str, Any],
    config: AgentConfig,
    risk: RiskEngine,
    *,
    speed: float | None = None,
    fresh: bool = False,
    notify: Notify | None = None,
) -> Agent:
    """A paper agent replaying ``market`` through the simulated broker."""
    from ffe.agent.clock import ReplayClock
    from ffe.agent.stepper import stepper_for
    from ffe.execution.paper import PaperBroker

    broker = PaperBroker(market, config.fill, config.cash)
    spec = RunSpec(strategy=strategy.name, params=params, fresh=fresh)
    clock = ReplayClock(market, speed=speed)
    return Agent(
        db, market, strategy, stepper_for(strategy), broker, risk, clock, config, spec, notify
    )
