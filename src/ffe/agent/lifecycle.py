"""An agent's life around its loop: the account's lease, the commands it obeys (pause, resume,
stop, emergency stop, reset), the wait while the account stays stopped on purpose, and the
notifications each of them sends.

``Lifecycle`` holds the state these change (paused, stopping, halted, stopped on purpose, the
lease lost) and the journal writes that record it; ``ffe.agent.runner.Agent`` builds on it
with the run itself (opening, stepping bars, closing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from ffe.agent import persist
from ffe.agent.clock import utcnow
from ffe.agent.closing import CloseOutcome, close_position
from ffe.agent.control import state_change
from ffe.agent.reports import Watchers
from ffe.agent.step import AgentConfig, StepCore
from ffe.domain.errors import FfeError
from ffe.execution.broker import Broker
from ffe.store.database import Database
from ffe.store.models import AgentCommand, AgentState

__all__ = ["Lifecycle", "Notify"]

log = logging.getLogger(__name__)


class Notify(Protocol):
    def publish(self, event: Any) -> None: ...


class Lifecycle:
    """The state of one account's agent between its bars, and the commands and stops that
    change it. Bars, runs and watchers' reports are ``Agent``'s."""

    def __init__(
        self, db: Database, broker: Broker, config: AgentConfig, notify: Notify | None
    ) -> None:
        self.db, self.broker, self.config, self.notify = db, broker, config, notify
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
        self._last_commands = 0.0
        self._last_flush = time.monotonic()
        self._bars_since_flush = 0
        self._watchers = Watchers()
        self.on_beat: Callable[[], None] | None = None  # told after each lease renewal

    def request_stop(self) -> None:
        """Stop after the current step (signal handlers call this)."""
        self.stopping = True

    # -- before the run -------------------------------------------------------------------

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
                if command.command == "close":
                    await _refuse_close(self.db, command, "the account is stopped on purpose")
                    continue
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

    # -- the lease ------------------------------------------------------------------------

    async def _keep_lease(self) -> None:
        """Renew the lease while the agent lives, also while it is paused or waits for bars
        (flushes renew it too, but only while bars are stepped)."""
        account = self.config.account
        failing_since: float | None = None
        while True:
            every = persist.LEASE_TTL.total_seconds() / 3
            await asyncio.sleep(every if failing_since is None else persist.LEASE_RETRY_S)
            try:
                held = await persist.renew_lease(self.db, account, self.owner, persist.LEASE_TTL)
            except FfeError as exc:  # the loop meets the same journal and stops on it
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning(
                        "could not renew the agent's lease: %s; trying every %.0f s",
                        exc,
                        persist.LEASE_RETRY_S,
                    )
                continue
            if failing_since is not None:
                log.warning(
                    "renewed the agent's lease again after %.1f s",
                    time.monotonic() - failing_since,
                )
                failing_since = None
            if not held:
                log.error("agent %s lost the lease on %s: stopping", self.owner, account)
                self.lease_lost = self.stopping = True
                return
            if self.on_beat is not None:
                self.on_beat()

    async def _end(self, account: str, status: str) -> None:
        await self.broker.close()
        try:
            await persist.release_lease(self.db, account, self.owner, status)
        except FfeError as exc:  # the journal is down: the lease expires by itself
            log.warning("could not release the agent's lease: %s", exc)
        closing = getattr(self.notify, "aclose", None)
        if closing is not None:  # deliver the last events (stopped, error), briefly
            await closing(5.0)

    # -- commands -------------------------------------------------------------------------

    async def obey(self, core: StepCore, *, force: bool) -> None:
        """Carry out the control commands sent to this agent (at most once a poll unless
        ``force``)."""
        now = time.monotonic()
        if not force and now - self._last_commands < self.config.command_poll_s:
            return
        self._last_commands = now
        for command in await persist.take_commands(self.db, self.config.account):
            if command.command == "close":
                await self._close(core, command)
            else:
                await self.control(core, command.command, command.actor)

    async def _close(self, core: StepCore, command: AgentCommand) -> None:
        """Close the position the command names (``ffe.agent.closing``) and record the
        outcome on the command for whoever sent it."""
        payload = command.payload or {}
        symbol, confirmed = str(payload.get("symbol", "")), payload.get("quantity")
        log.warning("control: close %s from %s", symbol, command.actor)
        outcome = await close_position(core, symbol, confirmed, str(command.id))
        await persist.finish_command(self.db, command.id, outcome.detail, outcome.as_dict())

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

    # -- the journal and the watchers -----------------------------------------------------

    def _flush_due(self) -> bool:
        c = self.config
        if self._bars_since_flush >= c.flush_every:
            return True
        return time.monotonic() - self._last_flush >= c.flush_interval_s

    async def _flush(self, core: StepCore) -> None:
        await core.flush()
        self._bars_since_flush, self._last_flush = 0, time.monotonic()

    def _tell_running(self, running: bool) -> None:
        for watcher in self._watchers.running:
            watcher(running)

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


async def _refuse_close(db: Database, command: AgentCommand, why: str) -> None:
    symbol = str((command.payload or {}).get("symbol", ""))
    detail = f"nothing closed: {why} (`ffe agent resume` first)"
    outcome = CloseOutcome("refused", detail, symbol)
    await persist.finish_command(db, command.id, detail, outcome.as_dict())
