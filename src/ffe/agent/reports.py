"""What a running agent tells whoever watches it: its snapshot, each bar it finished, each
bar's decisions, its notifications, the outcomes of its decisions, how long each forecast
model took, how long each order took from its decision to the broker, whether it runs or was
stopped on purpose, and the report of its run.

These are the agent's public surface for watchers (the reporter of its live events and
metrics, a progress bar, the API's live portfolio): values made by the agent, so nobody
reads its ledger, market or step to learn them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ffe.agent.notify import Event
from ffe.domain.orders import Decision


@dataclass(frozen=True, slots=True)
class HeldPosition:
    """One open position as a running agent holds it."""

    symbol: str
    quantity: float
    average_price: float | None  # of the open lots; None when they net to nothing
    mark: float  # the last mark, 0 before the symbol's first bar


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a running agent holds after its last finished bar: read by the API (the live
    portfolio) and the publisher, instead of the ledger and market they are made from."""

    account: str
    run_id: str
    bar: int
    time: datetime
    cash: float
    equity: float
    start_cash: float
    positions: tuple[HeldPosition, ...]


@dataclass(frozen=True, slots=True)
class BarReport:
    """One bar the agent finished: its book marked at the bar's close."""

    account: str
    run_id: str
    bar: int
    time: datetime
    equity: float
    cash: float
    exposure: float  # the gross value of the open positions
    positions: int  # how many symbols it holds
    realized_pnl: float = 0.0  # the run's realised P&L so far, net of commissions
    wins: int = 0  # round trips closed with a profit since the agent started (restored: not)
    losses: int = 0  # and the others
    daily_loss_halted: bool = False  # the daily loss kill switch is in force
    drawdown_halted: bool = False  # the drawdown halt is in force (until a reset)


@dataclass(frozen=True, slots=True)
class DecisionsMade:
    """The decisions the strategy made on one bar, before they are sized and sent."""

    account: str
    run_id: str
    bar: int
    time: datetime
    decisions: tuple[Decision, ...]
    strategy_seconds: float  # the agent's time in its strategy so far, this bar's included


@dataclass(frozen=True, slots=True)
class DecisionOutcome:
    """A decision judged once its horizon passed: was the side it took right?"""

    account: str
    symbol: str
    confidence: float  # as the decision stated it
    hit: bool


@dataclass(slots=True)
class AgentReport:
    """How an agent's run went, once ``Agent.run`` returns."""

    run_id: str
    status: str
    resumed: bool
    bars: int
    first_bar: int
    reconciliation: dict[str, Any]
    stats: dict[str, Any] | None = None


OnOpen = Callable[[str], Awaitable[None]]
OnBar = Callable[[BarReport], None]
OnDecisions = Callable[[DecisionsMade], None]
OnEvent = Callable[[Event], None]
OnOutcome = Callable[[DecisionOutcome], None]
OnForecast = Callable[[str, float], None]  # a model's name, the seconds its forecast took
# The seconds from a decision to the broker's acknowledgement of an order sent for it.
OnOrder = Callable[[float], None]
# True when the agent starts (or resumes) trading, False when it stops on purpose: told to
# stop, paused, the replay finished, interrupted by its owner. Never told for a failure.
OnRunning = Callable[[bool], None]


@dataclass(slots=True)
class Watchers:
    """Who is told what, in the order they started watching. A watcher runs inside the
    trading loop: it must be quick and must not raise."""

    opened: list[OnOpen] = field(default_factory=list)  # the run is open, before its first bar
    bars: list[OnBar] = field(default_factory=list)
    decisions: list[OnDecisions] = field(default_factory=list)
    events: list[OnEvent] = field(default_factory=list)
    outcomes: list[OnOutcome] = field(default_factory=list)
    forecasts: list[OnForecast] = field(default_factory=list)
    running: list[OnRunning] = field(default_factory=list)
    orders: list[OnOrder] = field(default_factory=list)

    def add(
        self,
        on_open: OnOpen | None,
        on_bar: OnBar | None,
        on_decisions: OnDecisions | None,
        on_event: OnEvent | None,
        on_outcome: OnOutcome | None = None,
        on_forecast: OnForecast | None = None,
        on_running: OnRunning | None = None,
        on_order: OnOrder | None = None,
    ) -> None:
        if on_open is not None:
            self.opened.append(on_open)
        if on_bar is not None:
            self.bars.append(on_bar)
        if on_decisions is not None:
            self.decisions.append(on_decisions)
        if on_event is not None:
            self.events.append(on_event)
        if on_outcome is not None:
            self.outcomes.append(on_outcome)
        if on_forecast is not None:
            self.forecasts.append(on_forecast)
        if on_running is not None:
            self.running.append(on_running)
        if on_order is not None:
            self.orders.append(on_order)
