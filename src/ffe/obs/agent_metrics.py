"""The trading agent's metrics: its decisions and their orders' time to the broker, its fills
and trades, its account's equity, drawdown and halts, its heartbeat, its broker's circuit
breaker and its forecast models.

``AgentMetrics`` builds them in the registry it is given; ``ffe.obs.metrics.Metrics`` is one,
with the service's metrics beside them. Methods called every bar keep the labelled children
they made (``labels()`` costs more than the counting).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "BREAKER_STATES",
    "CONFIDENCE_BINS",
    "DECISION_BUCKETS",
    "DECISION_TO_ORDER_BUCKETS",
    "FORECAST_BUCKETS",
    "RISK_HALT_REASONS",
    "AgentMetrics",
    "Children",
    "confidence_bin",
]

logger = logging.getLogger(__name__)

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

DECISION_TO_ORDER_BUCKETS: Final = (
    0.0005,
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
)
"""From a decision to its order's acknowledgement, in seconds: 0.5 ms (the paper broker) to
a second (a venue's round trip, a journal write first); 50 ms is issue 18's p99 target."""

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

BREAKER_STATES: Final = {"closed": 0, "half_open": 1, "open": 2}
"""Circuit breaker state names and the gauge value each is exported as."""


_MAX_CHILDREN: Final = 10_000
"""Labelled children kept per metric: enough for every symbol and account, bounded anyway."""


class Children:
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


class AgentMetrics:
    """The agent's metrics in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._nonfinite_accounts: set[str] = set()
        self._build_decisions()
        self._build_gauges()
        self._build_trading()
        self._build_forecasting()

    def _build_decisions(self) -> None:
        registry = self.registry
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
        self._decision_to_order = Histogram(
            "ffe_decision_to_order_seconds",
            "Time from a decision to its order's acknowledgement by the broker: risk checks, "
            "approval policy, journal and submit; not the strategy's own time.",
            buckets=DECISION_TO_ORDER_BUCKETS,
            registry=registry,
        )
        self._agent_restarts = Counter(
            "ffe_agent_restarts",
            "Times the agent was restarted after its journal failed, by account.",
            ["account"],
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

        self._feed_up = Gauge(
            "ffe_agent_feed_up",
            "1 while the agent's live feed answers, 0 during an outage (feed_down to feed_up).",
            ["account"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self._feed_stale = Gauge(
            "ffe_agent_feed_stale",
            "1 while the agent's newest bar is stale (the next one is agent.stale_bars bar "
            "intervals late): it trades nothing until fresh bars come.",
            ["account"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self._feed_events = Counter(
            "ffe_agent_feed_events",
            "The live feed's events by account and event: feed_down, feed_up, stale, fresh, "
            "gap_filled, caught_up.",
            ["account", "event"],
            registry=registry,
        )

    def _build_trading(self) -> None:
        registry = self.registry
        # The agent's gauges are its own process's (one agent per account): "mostrecent" keeps
        # the value last set, also after the process is gone (a halt stays journaled too).
        self._risk_halted = Children(
            Gauge(
                "ffe_risk_halted",
                "1 while the risk engine halts the account's trading (reason: daily_loss, the "
                "daily loss kill switch; drawdown, the drawdown halt), else 0.",
                ["account", "reason"],
                registry=registry,
                multiprocess_mode="mostrecent",
            )
        )
        self._drawdown = Children(
            Gauge(
                "ffe_drawdown_ratio",
                "Current drawdown of the account's equity from its peak (0 at the peak, 0.2 is "
                "20% below it).",
                ["account"],
                registry=registry,
                multiprocess_mode="mostrecent",
            )
        )
        self._realized = Children(
            Gauge(
                "ffe_realized_pnl",
                "Cumulative realised P&L of the account's run, net of commissions, in the "
                "account currency.",
                ["account"],
                registry=registry,
                multiprocess_mode="mostrecent",
            )
        )
        self._fills = Children(
            Counter(
                "ffe_fills",
                "Fills the agent's broker reported, by symbol and side (buy, sell).",
                ["symbol", "side"],
                registry=registry,
            )
        )
        self._trades_closed = Children(
            Counter(
                "ffe_trades_closed",
                "Round trips closed, by account and result (win: positive realised P&L net of "
                "commissions; loss: the rest).",
                ["account", "result"],
                registry=registry,
            )
        )
        self._outcomes = Children(
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
        self._forecast_seconds = Children(
            Histogram(
                "ffe_forecast_duration_seconds",
                "Time one forecast model took to forecast for a decision, by model.",
                ["model"],
                buckets=FORECAST_BUCKETS,
                registry=registry,
            )
        )
        self._llm_failures = Children(
            Counter(
                "ffe_llm_failures",
                "Decisions the LLM voter failed to vote on (the agent's, and those of backtest "
                "jobs once they finish), by reason: timeout, unreachable, http_error, "
                "breaker_open, bad_answer, cache.",
                ["reason"],
                registry=registry,
            )
        )
        self._ensemble_weight = Children(
            Gauge(
                "ffe_ensemble_weight",
                "The ensemble's weight of each model in its latest decision on a symbol (0 for "
                "a model left out of it).",
                ["symbol", "model"],
                registry=registry,
                multiprocess_mode="mostrecent",
            )
        )

    def record_llm_failure(self, reason: str, count: int = 1) -> None:
        """Count ``count`` decisions the LLM voter failed to vote on, by why
        (``LlmError.reason``): the agent's one by one, a backtest job's once it finished."""
        self._llm_failures(reason).inc(count)

    def record_decision(self, symbol: str, action: str, seconds: float | None = None) -> None:
        """Count one decision; with ``seconds``, also observe how long it took."""
        self._decisions.labels(symbol=symbol, action=action).inc()
        if seconds is not None:
            self._decision_seconds.observe(max(seconds, 0.0))

    def observe_decision_to_order(self, seconds: float) -> None:
        """Observe the time from a decision to its order's acknowledgement by the broker."""
        self._decision_to_order.observe(max(seconds, 0.0))

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

    def set_agent_heartbeat(self, account: str, unix_time: float) -> None:
        """Export the Unix time of an agent's last heartbeat."""
        self._heartbeat.labels(account=account).set(unix_time)

    def record_feed_event(self, account: str, event: str) -> None:
        """Count a live feed's event and set the feed's gauges from it."""
        self._feed_events.labels(account=account, event=event).inc()
        self._feed_up.labels(account=account).set(0.0 if event == "feed_down" else 1.0)
        if event in ("stale", "fresh", "gap_filled", "caught_up"):
            self._feed_stale.labels(account=account).set(1.0 if event == "stale" else 0.0)

    def set_agent_running(self, account: str, running: bool) -> None:
        """Export whether the account's agent runs (1) or was stopped or paused on purpose
        (0); a process that dies leaves the last value, so never call this for a crash."""
        self._agent_running.labels(account=account).set(1.0 if running else 0.0)
