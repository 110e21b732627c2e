"""An agent's progress as live events and metrics, wherever the agent runs: inside the API
(``ffe run``, ``POST /api/v1/agent/start``) or in a process of its own (``ffe agent run``).

``AgentReporter.attach`` watches the agent through the hooks it offers (``Agent.watch``):
its notifications (fills, halts, approvals, start and stop), whether it runs (started or
resumed) or was stopped or paused on purpose, each bar (equity and drawdown, at most five a
second: a fast replay steps thousands of bars a second; the risk halts, realised P&L and
closed trades whenever they change), each bar's decisions (and the ensemble's weights in
them), the outcomes of decisions, the forecast models' times and each order's time from its
decision to the broker. Events keep one shape whoever sends them (the dashboard and the
tests rely on it) and go through a ``Publisher``: the API's event bus for the agent inside
the API, Redis for an agent of its own process when Redis is configured, nowhere otherwise
(the API then reads what the agent journaled, ``ffe.service.journal_tail``). Publishing runs
in tasks of its own, so the trading loop never waits on the bus.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Coroutine
from typing import Any

from ffe.agent.notify import Event
from ffe.agent.reports import BarReport, DecisionOutcome, DecisionsMade
from ffe.agent.runner import Agent
from ffe.domain.orders import action_of
from ffe.kv.events import Publisher
from ffe.obs.metrics import Metrics

log = logging.getLogger(__name__)

EQUITY_INTERVAL_S = 0.2  # equity events and gauges at most five times a second
# Notifications that change what the agent's state reads; "stopped" is told by the owner of
# the run once it has ended (the lease is released by then).
_STATE_CHANGES = ("started", "risk_halt")
_KIND_OF = {"fill": "fill", "approval_waiting": "approval"}  # the rest go out as "event"


class AgentReporter:
    """Reports one agent: events through ``publisher``, gauges and counters in ``metrics``,
    and the peak and worst drawdown of its equity, bar by bar (for its live portfolio)."""

    def __init__(
        self,
        publisher: Publisher,
        metrics: Metrics,
        *,
        equity_interval_s: float = EQUITY_INTERVAL_S,
    ) -> None:
        self.publisher, self.metrics = publisher, metrics
        self.equity_interval_s = equity_interval_s
        self.peak = 0.0
        self.max_drawdown = 0.0  # a fraction <= 0
        self._last_equity = -math.inf  # when equity was last reported (monotonic)
        self._strategy_seconds = 0.0  # the agent's time in its strategy, as last seen
        self._sending: set[asyncio.Task[None]] = set()
        # What the metrics were last told, to tell them only what changed: the halts (daily
        # loss, drawdown; None before the first bar), realised P&L, wins and losses.
        self._halts: tuple[bool, bool] | None = None
        self._realized = math.nan
        self._closed = (0, 0)
        self._models: dict[str, dict[str, None]] = {}  # each symbol's models, in vote order

    def attach(self, agent: Agent) -> None:
        """Report ``agent`` from now on, through the hooks it offers its watchers."""
        breaker = agent.breaker  # venue brokers are guarded; its state goes with the equity
        agent.watch(
            on_bar=lambda report: self._on_bar(report, breaker),
            on_decisions=self._on_decisions,
            on_event=lambda event: self._on_event(agent, event),
            on_outcome=self._on_outcome,
            on_forecast=self.metrics.observe_forecast,
            on_order=self.metrics.observe_decision_to_order,
            on_running=lambda running: self._on_running(agent.config.account, running),
        )
        # A beat with every lease renewal too: a live agent on long bars waits minutes
        # between them, and the heartbeat alert pages after one minute without a beat.
        account = agent.config.account
        agent.on_beat = lambda: self.metrics.set_agent_heartbeat(account, time.time())

    def seed(self, peak: float, worst: float) -> None:
        """Carry over the peak and worst drawdown the run reached before this agent took it
        up (a restart), so its drawdown is the run's, not the one since the restart."""
        self.peak, self.max_drawdown = max(self.peak, peak), min(self.max_drawdown, worst)

    async def settle(self) -> None:
        """Wait for the events on their way (they may read the agent's journal: let them land
        before it closes)."""
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def publish_state(self, agent: Agent) -> None:
        """Publish the agent's account state as the journal has it (an ``agent`` event); a
        journal or bus failure is logged, not raised: the state is told again later."""
        try:
            state = await agent.status()
            if state is not None:
                await self.publisher.publish("agent", state.as_dict())
        except Exception as exc:
            log.warning("could not publish the agent's state: %s", exc)

    # -- the hooks ------------------------------------------------------------------------

    def _on_bar(self, report: BarReport, breaker: Any) -> None:
        equity = report.equity
        self.peak = max(self.peak, equity)
        if self.peak > 0:
            self.max_drawdown = min(self.max_drawdown, equity / self.peak - 1)
        self._risk_metrics(report)
        now = time.monotonic()
        if now - self._last_equity < self.equity_interval_s:
            return
        self._last_equity = now
        account = report.account
        self.metrics.set_portfolio_value(account, equity)
        if self.peak > 0:
            self.metrics.set_drawdown(account, 1.0 - equity / self.peak)
        self.metrics.set_agent_heartbeat(account, time.time())
        if breaker is not None:
            self.metrics.set_breaker(breaker.name, breaker.state)
        data = {
            "account": account,
            "time": report.time.isoformat(),
            "bar": report.bar,
            "equity": equity,
            "cash": report.cash,
        }
        self.send("equity", data)

    def _risk_metrics(self, report: BarReport) -> None:
        """The halts, realised P&L and closed trades, each time one changes (an exported halt
        must not wait for the next equity update: it may be the run's last bar)."""
        halts = (report.daily_loss_halted, report.drawdown_halted)
        if halts != self._halts:
            if self._halts is None:  # the first bar: the trade counters' series start at 0
                self.metrics.record_trades_closed(report.account, 0, 0)
            self._halts = halts
            self.metrics.set_risk_halted(report.account, "daily_loss", halts[0])
            self.metrics.set_risk_halted(report.account, "drawdown", halts[1])
        if report.realized_pnl != self._realized:
            self._realized = report.realized_pnl
            self.metrics.set_realized_pnl(report.account, report.realized_pnl)
        wins, losses = self._closed
        if report.wins != wins or report.losses != losses:
            self._closed = (report.wins, report.losses)
            self.metrics.record_trades_closed(
                report.account, report.wins - wins, report.losses - losses
            )

    def _ensemble_weights(self, symbol: str, votes: tuple[tuple[str, float], ...]) -> None:
        """The weights the ensemble gave its models in a decision; a model it gave none this
        time (it failed to forecast) is exported as 0, not left at its last weight."""
        models = self._models.setdefault(symbol, {})
        given = dict(votes)
        models.update(dict.fromkeys(given))
        for model in models:
            self.metrics.set_ensemble_weight(symbol, model, given.get(model, 0.0))

    def _on_running(self, account: str, running: bool) -> None:
        """Export whether the agent is meant to be running: the heartbeat alert pages only
        for those. Starting or resuming is a beat too (the next may be a bar away)."""
        self.metrics.set_agent_running(account, running)
        if running:
            self.metrics.set_agent_heartbeat(account, time.time())

    def _on_outcome(self, outcome: DecisionOutcome) -> None:
        self.metrics.record_decision_outcome(outcome.confidence, outcome.hit)

    def _on_decisions(self, made: DecisionsMade) -> None:
        # The strategy's time since the last decisions: counted once, with the first of them.
        spent = made.strategy_seconds - self._strategy_seconds
        self._strategy_seconds = made.strategy_seconds
        for decision in made.decisions:
            action = action_of(decision.target)
            self.metrics.record_decision(decision.symbol, action, spent if spent > 0 else None)
            spent = 0.0
            if decision.votes:  # an ensemble's decision: its models and their weights
                self._ensemble_weights(decision.symbol, decision.votes)
            failure = decision.details.get("llm_failure")
            if isinstance(failure, dict):  # its LLM voter failed (ensemble.voter_failed)
                self.metrics.record_llm_failure(str(failure.get("reason", "error")))
            data = {
                "account": made.account,
                "time": made.time.isoformat(),
                "bar": made.bar,
                "symbol": decision.symbol,
                "target": decision.target,
                "action": action,
                "confidence": decision.confidence,
                "rationale": decision.rationale,
            }
            self.send("decision", data)

    def _on_event(self, agent: Agent, event: Event) -> None:
        """A notification (fills, halts, approvals, start and stop) as a live event; the
        configured notifiers (Telegram, webhooks) have had theirs from the agent."""
        data = {"kind": event.kind, "text": event.text, **event.data}
        data.setdefault("account", agent.config.account)
        if event.kind == "fill":
            self.metrics.record_fill(str(data.get("symbol")), float(data.get("quantity", 0.0)))
        elif event.kind == "feed":
            self.metrics.record_feed_event(str(data["account"]), str(data.get("event")))
        self.send(_KIND_OF.get(event.kind, "event"), data)
        if event.kind in _STATE_CHANGES:
            self.spawn(self.publish_state(agent))

    # -- sending --------------------------------------------------------------------------

    def send(self, kind: str, data: dict[str, Any]) -> None:
        """Publish an event in the background, in the order of the calls."""
        self.spawn(self.publisher.publish(kind, data))

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in a task of its own, awaited by ``settle``."""
        task = asyncio.get_running_loop().create_task(work)
        self._sending.add(task)  # a task nobody holds may be collected before it runs
        task.add_done_callback(self._sending.discard)
        task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("live event not sent: %s", task.exception())
