"""Risk rules of the live agent: limits that need to know about the trading day, recent
trades and the data feed, not just the account.

The agent keeps one ``RiskContext`` and tells it what happens (a new bar, an order sent, a
trade closed, the confidence of the decision being checked); the checks below read it through
``AccountState.context``. Without a context (a backtest) every one of them allows everything,
so the backtest behaves as before. Like every check, these only see orders that add risk: the
engine lets reducing orders through before asking any check.

Days are UTC calendar days of the bar time, so a replay rolls its days over exactly as the
live agent did.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from ffe.domain.orders import Denied, OrderIntent
from ffe.risk.engine import AccountState, RiskCheck


@dataclass(slots=True)
class RiskContext:
    """What the agent has seen so far: bars, the current trading day, trades and halts.

    ``bar`` counts bars seen; ``bar_time`` is the newest bar's time and ``now`` the clock the
    agent trades on (the wall clock live, the bar time in a replay). ``day_start_equity`` is
    the equity as the UTC day opened, before its trades. ``last_loss_bar`` holds, per symbol,
    the bar at which its last losing trade closed. ``confidence`` is the confidence of the
    decision being checked, per symbol.
    """

    bar: int = 0
    bar_time: datetime | None = None
    now: datetime | None = None
    equity: float = math.nan
    day_start_equity: float | None = None
    trades_today: int = 0
    daily_halt_reason: str | None = None
    emergency_halt_reason: str | None = None
    last_loss_bar: dict[str, int] = field(default_factory=dict)
    confidence: dict[str, float] = field(default_factory=dict)

    @property
    def day(self) -> date | None:
        """The current trading day (UTC date of the newest bar), None before the first bar."""
        return None if self.bar_time is None else self.bar_time.date()

    def on_bar(self, bar: int, bar_time: datetime, now: datetime, equity: float) -> None:
        """A new bar arrived. On the first bar of a UTC day, start the day: remember the
        equity it opens with, reset the trade count and lift the daily loss halt."""
        bar_time, now = _utc(bar_time, "bar_time"), _utc(now, "now")
        if self.bar_time is None or bar_time.date() != self.bar_time.date():
            self.day_start_equity = equity
            self.trades_today = 0
            self.daily_halt_reason = None
        self.bar, self.bar_time, self.now, self.equity = bar, bar_time, now, equity

    def update_equity(self, equity: float) -> None:
        """The account's equity now (after fills, or marked to a new price)."""
        self.equity = equity

    def on_order_sent(self, symbol: str) -> None:
        """An order went to the broker. Trades are counted for the whole account, not per
        ``symbol``; the symbol is taken so the agent's call reads like the event."""
        self.trades_today += 1

    def on_trade_closed(self, symbol: str, pnl: float) -> None:
        """A round trip in ``symbol`` closed; a loss starts that symbol's cooldown."""
        if pnl < 0:
            self.last_loss_bar[symbol] = self.bar

    def set_confidence(self, symbol: str, confidence: float) -> None:
        """The confidence of the decision whose orders are about to be checked."""
        self.confidence[symbol] = confidence

    def emergency_stop(self, reason: str) -> None:
        """Emergency stop: refuse every order that adds risk until ``reset_emergency()``."""
        self.emergency_halt_reason = reason

    def reset_emergency(self) -> None:
        """Lift the emergency stop. Nothing else lifts it, not even a restart."""
        self.emergency_halt_reason = None

    def to_dict(self) -> dict[str, Any]:
        """The context as JSON-ready data, for the agent to persist across restarts."""
        return {
            "bar": self.bar,
            "bar_time": _iso(self.bar_time),
            "now": _iso(self.now),
            "equity": _json_float(self.equity),
            "day_start_equity": self.day_start_equity,
            "trades_today": self.trades_today,
            "daily_halt_reason": self.daily_halt_reason,
            "emergency_halt_reason": self.emergency_halt_reason,
            "last_loss_bar": dict(self.last_loss_bar),
            "confidence": {s: _json_float(c) for s, c in self.confidence.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RiskContext:
        """Restore a context saved by ``to_dict``. Missing keys take their defaults, so a
        state saved by an older version still loads."""
        start = data.get("day_start_equity")
        return cls(
            bar=int(data.get("bar", 0)),
            bar_time=_parse_time(data.get("bar_time")),
            now=_parse_time(data.get("now")),
            equity=_float(data.get("equity")),
            day_start_equity=None if start is None else float(start),
            trades_today=int(data.get("trades_today", 0)),
            daily_halt_reason=data.get("daily_halt_reason"),
            emergency_halt_reason=data.get("emergency_halt_reason"),
            last_loss_bar={str(k): int(v) for k, v in data.get("last_loss_bar", {}).items()},
            confidence={str(k): _float(v) for k, v in data.get("confidence", {}).items()},
        )


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _parse_time(text: str | None) -> datetime | None:
    return None if text is None else _utc(datetime.fromisoformat(text), "saved time")


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else value


def _float(value: float | None) -> float:
    """JSON has no NaN: ``to_dict`` writes it as None."""
    return math.nan if value is None else float(value)


def _positive(value: float, name: str) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")


# -- checks -------------------------------------------------------------------------------
# Each pickles through its __init__ (``__reduce__``), like the checks in ffe.risk.engine: a
# sweep sends its risk engine to worker processes.


@dataclass(frozen=True, slots=True)
class EmergencyHalt:
    """While the context's emergency stop is set, nothing that adds risk passes."""

    name: str = "emergency_halt"

    def check(self, intent: OrderIntent, account: AccountState) -> Denied | None:
        context = account.context
        if context is None or context.emergency_halt_reason is None:
            return None
        return Denied(intent, self.name, f"emergency stop: {context.emergency_halt_reason}")

    def __reduce__(self) -> tuple[type[EmergencyHalt], tuple[str]]:
        return type(self), (self.name,)


@dataclass(frozen=True, slots=True)
class MaxDailyLoss:
    """Kill switch: once equity is ``limit`` (a fraction) below the day's opening equity,
    nothing that adds risk passes until the next UTC day. The agent polls ``tripped`` every
    bar, so the switch trips even when no order is checked, and then flattens."""

    limit: float
    name: str = "max_daily_loss"

    def __post_init__(self) -> None:
        if not 0 < self.limit <= 1:
            raise ValueError(f"max daily loss must be in (0, 1], got {self.limit}")

    def tripped(self, context: RiskContext) -> bool:
        """Whether trading is halted for the rest of the day; trips it at the context's
        equity if the loss limit is reached."""
        return self._latch(context, context.equity)

    def _latch(self, context: RiskContext, equity: float) -> bool:
        if context.daily_halt_reason is not None:
            return True
        start = context.day_start_equity
        if start is None or start <= 0 or not equity <= start * (1 - self.limit):
            return False
        context.daily_halt_reason = (
            f"daily loss limit hit: equity {equity:,.2f} is {1 - equity / start:.1%} below "
            f"the day's opening {start:,.2f}, limit {self.limit:.1%}; halted until the next "
            "UTC day"
        )
        return True

    def check(self, intent: OrderIntent, account: AccountState) -> Denied | None:
        context = account.context
        if context is None or not self._latch(context, account.equity):
            return None
        return Denied(intent, self.name, context.daily_halt_reason or "daily loss limit hit")

    def __reduce__(self) -> tuple[type[MaxDailyLoss], tuple[float, str]]:
        return type(self), (self.limit, self.name)


def daily_loss_tripped(checks: Iterable[RiskCheck], context: RiskContext) -> bool:
    """Whether a ``MaxDailyLoss`` among ``checks`` (e.g. ``RiskEngine.checks``) halts the day,
    tripping it at the context's equity. The agent asks every bar and flattens when it does."""
    return any(c.tripped(context) for c in checks if isinstance(c, MaxDailyLoss))


@dataclass(frozen=True, slots=True)
class MaxTradesPerDay:
    """No more than ``limit`` orders sent per UTC day. Counts orders sent (``on_order_sent``),
    so the intents approved within one batch are not counted against each other."""

    limit: int
    name: str = "max_trades_per_day"

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"max trades per day must be at least 1, got {self.limit}")

    def check(self, intent: OrderIntent, account: AccountState) -> Denied | None:
        context = account.context
        if context is None or context.trades_today < self.limit:
            return None
        return Denied(
            intent,
            self.name,
            f"{context.trades_today} orders sent today ({context.day} UTC), limit {self.limit}",
        )

    def __reduce__(self) -> tuple[type[MaxTradesPerDay], tuple[int, str]]:
        return type(self), (self.limit, self.name)


@dataclass(frozen=True, slots=True)
class MinConfidence:
    """No new risk on a decision less confident than ``threshold``.

    A symbol without a confidence counts as fully confident (1.0): rule-based strategies
    are certain by construction and never set one. A NaN confidence is denied.
    """

    threshold: float
    name: str = "min_confidence"

    def __post_init__(self) -> None:
        if not 0 <= self.threshold <= 1:
            raise ValueError(f"min confidence must be in [0, 1], got {self.threshold}")

    def check(self, intent: OrderIntent, account: AccountState) -> Denied | None:
        context = account.context
        if context is None:
            return None
        confidence = context.confidence.get(intent.symbol, 1.0)
        if confidence >= self.threshold:
            return None
        return Denied(
            intent,
            self.name,
            f"decision confidence for {intent.symbol} is {confidence:.2f}, "
            f"minimum {self.threshold:.2f}",
        )

    def __reduce__(self) -> tuple[type[MinConfidence], tuple[float, str]]:
        return type(self), (self.threshold, self.name)


@dataclass(frozen=True, slots=True)
class StaleData:
    """No new risk on a bar older than ``max_age_s`` seconds (a stalled feed). In a replay
    ``now`` is the bar time, so this never trips there. Before the first bar, nothing that
    adds risk passes: there is no price to trust."""

    max_age_s: float
    name: str = "stale_data"

    def __post_init__(self) -> None:
        _positive(self.max_age_s, "max bar age")

    def check(self, intent: OrderIntent, account: AccountState) -> Denied | None:
        context = account.context
        if context is None:
            return None
        if context.bar_time is None or context.now is None:
            return Denied(intent, self.name, "no bar received yet")
        age = (context.now - context.bar_time).total_seconds()
        if age <= self.max_age_s:
            return None
        return Denied(
            intent,
            self.name,
            f"newest bar ({context.bar_time:%Y-%m-%d %H:%M:%S} UTC) is {age:,.0f}s old, "
            f"limit {self.max_age_s:,.0f}s",
        )

    def __reduce__(self) -> tuple[type[StaleData], tuple[float, str]]:
        return type(self), (self.max_age_s, self.name)


@dataclass(frozen=True, slots=True)
class LossCooldown:
    """After a losing trade closes in a symbol, no new risk in that symbol for ``bars`` bars
    (counting the bar of the loss)."""

    bars: int
    name: str = "loss_cooldown"

    def __post_init__(self) -> None:
        if self.bars < 1:
            raise ValueError(f"loss cooldown must be at least 1 bar, got {self.bars}")

    def check(self, intent: OrderIntent, account: AccountState) -> Denied | None:
        context = account.context
        if context is None:
            return None
        lost_at = context.last_loss_bar.get(intent.symbol)
        if lost_at is None or context.bar - lost_at >= self.bars:
            return None
        remaining = self.bars - (context.bar - lost_at)
        return Denied(
            intent,
            self.name,
            f"cooling down after a losing trade in {intent.symbol} at bar {lost_at}: "
            f"{remaining} more bar(s), cooldown {self.bars}",
        )

    def __reduce__(self) -> tuple[type[LossCooldown], tuple[int, str]]:
        return type(self), (self.bars, self.name)
