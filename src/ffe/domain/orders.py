"""Decisions, order intents, orders, fills and risk verdicts."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"

    @classmethod
    def of(cls, quantity: float) -> Side:
        return cls.BUY if quantity > 0 else cls.SELL


@dataclass(frozen=True, slots=True)
class Decision:
    """What a strategy wants: hold ``target`` (signed fraction of equity) in ``symbol``.

    ``target`` is NaN for a hold (no new instruction). ``votes`` are each model's weight;
    ``details`` holds the numbers behind the decision (expected return, probability of a
    profit, each model's forecast), JSON-ready, and is journaled with it. ``horizon`` is the
    number of bars after which the decision's outcome is judged.
    """

    time: datetime
    symbol: str
    target: float
    confidence: float = 1.0
    rationale: str = ""
    votes: tuple[tuple[str, float], ...] = ()
    horizon: int = 1
    details: Mapping[str, Any] = field(default_factory=dict)


def action_of(target: float) -> str:
    """A decision's target as a word: buy (long), sell (short), flat, or hold (NaN: keep the
    position as it is)."""
    if not math.isfinite(target):
        return "hold"
    if target == 0:
        return "flat"
    return "buy" if target > 0 else "sell"


class OrderIntent(NamedTuple):
    """A market order the engine would like to send, before the risk check.

    A named tuple rather than a dataclass: immutable all the same, and several times cheaper
    to create in the backtest's hot loop.
    """

    client_id: str
    time: datetime
    symbol: str
    quantity: float  # signed: positive buys, negative sells
    reference_price: float

    @property
    def side(self) -> Side:
        return Side.of(self.quantity)

    @property
    def notional(self) -> float:
        return abs(self.quantity) * self.reference_price


class Approved(NamedTuple):
    """The risk engine let the intent through."""

    intent: OrderIntent

    @property
    def approved(self) -> bool:
        return True


class Denied(NamedTuple):
    """The risk engine stopped the intent, and says which check and why."""

    intent: OrderIntent
    check: str
    reason: str

    @property
    def approved(self) -> bool:
        return False


Verdict = Approved | Denied


class OrderStatus(enum.Enum):
    PENDING = "pending"
    FILLED = "filled"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


@dataclass(slots=True)
class Order:
    """An order accepted by a broker. Mutable only in its status."""

    client_id: str
    symbol: str
    quantity: float
    submitted_at: datetime
    status: OrderStatus = OrderStatus.PENDING
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Fill:
    """An execution: ``quantity`` (signed) of ``symbol`` at ``price``, paying ``commission``."""

    client_id: str
    time: datetime
    symbol: str
    quantity: float
    price: float
    commission: float

    @property
    def side(self) -> Side:
        return Side.of(self.quantity)


@dataclass(frozen=True, slots=True)
class Trade:
    """A closed round trip: entry and exit of one lot (backtesting.py calls these trades)."""

    symbol: str
    entry_time: datetime
    exit_time: datetime
    entry_price: float
    exit_price: float
    quantity: float  # signed: positive for long, negative for short
    pnl: float  # net of the commissions attributed to this lot
    commission: float = field(default=0.0)

    @property
    def direction(self) -> str:
        return "long" if self.quantity > 0 else "short"

    @property
    def return_pct(self) -> float:
        """Price return of the trade in the trade's direction, before costs."""
        sign = 1.0 if self.quantity > 0 else -1.0
        return sign * (self.exit_price / self.entry_price - 1.0)
