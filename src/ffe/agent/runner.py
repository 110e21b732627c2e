"""The agent's life: take the account's lease, open or resume its run, rebuild its state from
the journal, reconcile with the broker, step through the clock's bars while obeying control
commands, and close the run.

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
from datetime import timedelta
from typing import Any, Protocol

from ffe.agent import persist
from ffe.agent.approvals import ApprovalDesk
from ffe.agent.clock import utcnow
from ffe.agent.control import AgentService, AgentStatus, state_change
from ffe.agent.journal import AgentJournal
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
    OnOutcome,
    OnRunning,
    Snapshot,
    Watchers,
)
from ffe.agent.step import AgentConfig, StepCore
from ffe.agent.stepper import EnsembleStepper, Stepper
from ffe.backtest.result import BacktestResult
from ffe.decide.strategy import Strategy
from ffe.domain.errors import FfeError, StoreError
from ffe.domain.market import MarketData
from ffe.execution.broker import Broker
from ffe.risk.engine import RiskEngine
from ffe.store.database import Database
from ffe.store.models import AgentState

__all__ = ["Agent", "Clock", "Notify", "RunSpec", "paper_agent"]

log = logging.getLogger(__name__)


class Clock(Protocol):
    live: bool

    def ticks(self, start: int) -> Any: ...


class Notify(Protocol):
    def publish(self, event: Any) -> None: ...


class Agent:
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
        self.db, self.market, self.strategy, self.stepper = db, market, strategy, stepper
        self.broker, self.risk, self.clock, self.config = broker, risk, clock, config
        self.spec, self.notify = spec, notify
        self.owner = persist.new_owner()
        self.paused = False
        self.stopping = False
        self.emergency: str | None = None
        self.lease_lost = False  # another owner holds the account: this agent's end is no stop
        # What a ``stop`` command does: "exit" ends the run (a person at a terminal runs it
        # again); "wait" (under a supervisor that restarts what exits) keeps the process up,
        # trading nothing, until ``resume``, and waits so too when it starts on an account
        # stopped on purpose (a restart must not undo the stop).
        self.on_stop = "exit"
        self.stopped_by: str | None = None  # who stopped it on purpose, while it waits
        self._halt_due = False  # the account was halted when the agent started
        self.core: StepCore | None = None
        self._last_commands = 0.0
        self._last_flush = time.monotonic()
        self._bars_since_flush = 0
        self.step_seconds: list[float] = []
        self.time_steps = False
        self._watchers = Watchers()

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
    ) -> None:
        """Be told, from now on: ``on_open`` (awaited) once the run is open and restored,
        before its first bar, with its run id; ``on_bar`` after each bar; ``on_decisions``
        when the strategy decided on a bar; ``on_event`` with each notification (fills,
        halts, approvals, start and stop); ``on_outcome`` when a decision is judged, its
        horizon passed; ``on_forecast`` with the seconds each forecast model of the ensemble
        took (other strategies have none); ``on_running`` with True when the agent starts
        or resumes and False when it ends or pauses on purpose (never for a failure: a
        failed agent is meant to be running). They run in the trading loop: keep them
        quick."""
        self._watchers.add(
            on_open, on_bar, on_decisions, on_event, on_outcome, on_forecast, on_running
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

    def request_stop(self) -> None:
        """Stop after the current step (signal handlers call this)."""
        self.stopping = True

    # -- lifecycle ------------------------------------------------------------------------

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
            config = run_config(self.config, self.spec, self.risk, live_clock=self.clock.live)
            run, resumed = await open_run(self.db, state.run_id, self.spec, self.market, config)
            core = self._core(run.id)
            first = await restore(
                core, self.db, run.id, persist.Checkpoint.of(state.checkpoint) if resumed else None
            )
            report = AgentReport(run.id, "running", resumed, 0, first, {})
            report.reconciliation = await reconcile(core, self.db, account)
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
            await self._end(account, status)

    async def _settle_stale(self, state: AgentState) -> AgentState:
        """The account's state once the commands sent to an agent that ended before it took
        them are settled: a halt or reset it never saw is applied (an emergency stop reported
        as sent is never lost), the rest dropped."""
        state, stale = await persist.settle_stale_commands(
            self.db, self.config.account, self.owner, state.updated_at, state_change
        )
        for command in stale:
            log.warning(
                "control: %s from %s, sent to an agent that ended: %s",
                command.command,
                command.actor,
                command.result,
            )
        return state

    async def _wait_for_start(self, state: AgentState) -> AgentState | None:
        """Trade nothing while the account stays stopped on purpose: hold its lease (commands
        reach this agent, its probes say so) until ``resume``, then the account's state to
        start from. An emergency stop starts it too, halted (it cancels and flattens what
        the run holds, and trades nothing until reset); a reset is applied to the stored
        state and leaves it stopped; pause and stop change nothing. None when the agent is
        to end first (a signal, the lease lost)."""
        account = self.config.account
        self.stopped_by = persist.stopped_on_purpose(state)
        log.warning(
            "account %s was stopped on purpose by %s: trading nothing until `ffe agent resume`",
            account,
            self.stopped_by,
        )
        self._tell_running(False)
        while not self.stopping:
            for command in await persist.take_commands(self.db, account):
                log.warning("control: %s from %s on %s", command.command, command.actor, account)
                change = state_change(command.command, command.actor)
                if change is not None:
                    current = await persist.get_state(self.db, account)
                    if current is not None:
                        await persist.set_state(self.db, account, **change(current))
                if command.command in ("resume", "emergency_stop"):
                    self.stopped_by = None
                    return await persist.get_state(self.db, account)
            await asyncio.sleep(self.config.command_poll_s)
        return None

    async def _begin(self, core: StepCore, run_id: str, state: AgentState) -> None:
        """Record the run as the account's; an account halted (an emergency stop, maybe sent
        while no agent ran) stays halted whatever run trades it, until reset."""
        account = self.config.account
        halted = (state.halted_reason or "halted") if state.status == "halted" else None
        await persist.set_state(
            self.db,
            account,
            run_id=run_id,
            status="halted" if halted else "running",
            halted_reason=halted,
        )
        self.event("started", f"agent started on {account} (run {run_id[:8]})", {})
        self._tell_running(True)
        if halted:
            log.warning("account %s is halted (%s): trading nothing until reset", account, halted)
            # Carried out after the first bar (the broker has no prices before): cancels
            # what is working and closes what the run holds, if anything.
            self.emergency, self._halt_due = halted, True

    async def _keep_lease(self) -> None:
        """Renew the lease while the agent lives, also while it is paused or waits for bars
        (flushes renew it too, but only while bars are stepped)."""
        account = self.config.account
        while True:
            await asyncio.sleep(persist.LEASE_TTL.total_seconds() / 3)
            try:
                held = await persist.renew_lease(self.db, account, self.owner, persist.LEASE_TTL)
            except FfeError as exc:  # the loop meets the same journal and stops on it
                log.warning("could not renew the agent's lease: %s", exc)
                continue
            if not held:
                log.error("agent %s lost the lease on %s: stopping", self.owner, account)
                self.lease_lost = self.stopping = True
                return

    async def _end(self, account: str, status: str) -> None:
        await self.broker.close()
        try:
            await persist.release_lease(self.db, account, self.owner, status)
        except FfeError as exc:  # the journal is down: the lease expires by itself
            log.warning("could not release the agent's lease: %s", exc)
        closing = getattr(self.notify, "aclose", None)
        if closing is not None:  # deliver the last events (stopped, error), briefly
            await closing(5.0)

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
        core.outcomes.on_judged = self._judged
        core.live_clock = self.clock.live
        self.core = core
        return core

    # -- the loop -------------------------------------------------------------------------

    async def _loop(self, core: StepCore, first: int) -> tuple[str, int]:
        bars = 0
        for opened in self._watchers.opened:
            await opened(core.journal.run_id)
        async for market, bar in self.clock.ticks(first):
            await self.obey(core, force=False)
            while self.paused and not self.stopping:
                await asyncio.sleep(self.config.command_poll_s)
                await self.obey(core, force=True)
            if self.stopping:
                return "interrupted", bars
            started = time.perf_counter() if self.time_steps else 0.0
            strategy_before = core.strategy_seconds
            await core.step(market, bar, decide=self.emergency is None)
            bars += 1
            await self._after_step(core)
            if self.time_steps:  # the agent's own work: the step and its journal, not the strategy
                spent = time.perf_counter() - started
                self.step_seconds.append(spent - (core.strategy_seconds - strategy_before))
            if self._watchers.bars:
                report = core.bar_report(bar)
                for watcher in self._watchers.bars:
                    watcher(report)
        end = "finished" if not self.clock.live else "interrupted"
        return ("interrupted" if self.stopping else end), bars

    def _decided(self, made: DecisionsMade) -> None:
        for watcher in self._watchers.decisions:
            watcher(made)

    def _judged(self, symbol: str, confidence: float, hit: bool) -> None:
        if self._watchers.outcomes:
            outcome = DecisionOutcome(self.config.account, symbol, confidence, hit)
            for watcher in self._watchers.outcomes:
                watcher(outcome)

    def _tell_running(self, running: bool) -> None:
        for watcher in self._watchers.running:
            watcher(running)

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

    def _flush_due(self) -> bool:
        c = self.config
        if self._bars_since_flush >= c.flush_every:
            return True
        return time.monotonic() - self._last_flush >= c.flush_interval_s

    async def _flush(self, core: StepCore) -> None:
        await core.flush()
        self._bars_since_flush, self._last_flush = 0, time.monotonic()

    async def obey(self, core: StepCore, *, force: bool) -> None:
        """Carry out the control commands sent to this agent (at most once a poll unless
        ``force``)."""
        now = time.monotonic()
        if not force and now - self._last_commands < self.config.command_poll_s:
            return
        self._last_commands = now
        for command in await persist.take_commands(self.db, self.config.account):
            await self.control(core, command.command, command.actor)

    async def control(self, core: StepCore, command: str, actor: str) -> None:
        """Do what ``command`` (pause, resume, stop, emergency_stop, reset) says, now."""
        account = self.config.account
        log.warning("control: %s from %s on %s", command, actor, account)
        if command == "pause":
            if self.stopped_by is not None:
                return  # stopped: only resume starts it again
            self.paused = True
            self._tell_running(False)  # no bars, no heartbeat while paused: not an outage
            # Journal what it did so far: readers of the journal (the API's lists, a page
            # reloaded, the journal tail) would otherwise miss it for as long as it waits.
            await self._flush(core)
            await persist.set_state(self.db, account, status="paused")
        elif command == "resume":
            self.paused, self.stopped_by = False, None
            self._tell_running(True)
            if self.emergency:
                await persist.set_state(self.db, account, status="halted")
            else:  # no longer stopped on purpose, if it was
                await persist.set_state(self.db, account, status="running", halted_reason=None)
        elif command == "stop":
            await self._stop(core, actor)
        elif command == "emergency_stop":
            await self.emergency_stop(core, f"emergency stop by {actor}")
        elif command == "reset":
            self.emergency, core.halted_at, core.halt_reason = None, None, None
            core.context.reset_emergency()
            if self.stopped_by is not None:  # still stopped on purpose: a reset is no resume
                mark = persist.stop_mark(self.stopped_by)
                await persist.set_state(self.db, account, status="stopped", halted_reason=mark)
                return
            status = "paused" if self.paused else "running"
            await persist.set_state(self.db, account, status=status, halted_reason=None)

    async def _stop(self, core: StepCore, actor: str) -> None:
        """A deliberate stop, recorded as such (``persist.stop_mark``) so that an agent run
        with ``on_stop`` "wait" that starts on the account later waits too. With "exit" the
        run ends after this step; with "wait" the agent stays, paused and holding its lease,
        until ``resume``. An account halted stays halted (its reason is kept)."""
        account = self.config.account
        self.stopped_by = actor
        mark = {} if self.emergency else {"halted_reason": persist.stop_mark(actor)}
        if self.on_stop != "wait":
            self.stopping, self.paused = True, False
            if mark:
                await persist.set_state(self.db, account, **mark)
            return
        self.paused = True
        self._tell_running(False)  # no bars, no heartbeat while stopped: not an outage
        await self._flush(core)
        status = "halted" if self.emergency else "stopped"
        await persist.set_state(self.db, account, status=status, **mark)
        self.event(
            "stopped",
            f"agent stopped on {account} by {actor}: waiting for `ffe agent resume`",
            {"run_id": core.journal.run_id},
        )

    async def emergency_stop(self, core: StepCore, reason: str) -> None:
        """Cancel open orders, flatten every position, and trade nothing more until reset."""
        self.emergency = reason
        core.context.emergency_stop(reason)
        await core.cancel_working(reason)
        core.desk.waiting.clear()
        if core.last_bar >= 0:
            await core.flatten(core.last_bar, "emergency")
            await core.collect_fills(core.last_bar)
        await core.flush()
        account = self.config.account
        await persist.set_state(self.db, account, status="halted", halted_reason=reason)
        self.event("risk_halt", reason, {"account": account})

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
        stats = None if core.last_bar < 0 else self.result(core).stats.as_dict()
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

    def event(self, kind: str, text: str, data: dict[str, Any]) -> None:
        """Send ``kind`` with ``text`` to the notifier, if there is one, then to watchers."""
        if self.notify is None and not self._watchers.events:
            return
        from ffe.agent.notify import Event

        title = f"ffe {kind.replace('_', ' ')}"
        event = Event(kind=kind, title=title, text=text, data=data, time=utcnow())  # type: ignore[arg-type,unused-ignore]
        if self.notify is not None:
            self.notify.publish(event)
        for watcher in self._watchers.events:
            watcher(event)


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
