"""Pre-trade risk checks. Each check returns a denial or nothing; the engine returns a verdict
for every intent instead of raising, so a denial is recorded like any other outcome.

Orders that only reduce a position always pass: a risk limit must never trap a position.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ffe.domain.orders import Approved, Denied, OrderIntent, Verdict

if TYPE_CHECKING:
    from ffe.risk.rules import RiskContext

log = logging.getLogger(__name__)
_TOLERANCE = 1e-9
# Pickling: each check pickles through its __init__ (``__reduce__``). Compiled with mypyc (the
# optional fast build), a frozen dataclass cannot be restored field by field, and a sweep
# sends its risk engine to worker processes.


class AccountState:
    """What the checks see: equity, peak equity and positions projected with the intents
    approved so far in the current batch. ``context`` is the live agent's day-to-day state
    (see ``ffe.risk.rules``); None in a backtest, where the checks that read it allow all."""

    __slots__ = ("context", "equity", "gross_exposure", "halted", "peak_equity", "positions")

    def __init__(
        self,
        equity: float,
        peak_equity: float,
        positions: dict[str, float] | None = None,
        gross_exposure: float = 0.0,
        halted: bool = False,
        context: RiskContext | None = None,
    ) -> None:
        self.equity = equity
        self.peak_equity = peak_equity
        self.positions = positions if positions is not None else {}
        self.gross_exposure = gross_exposure
        self.halted = halted
        self.context = context

    @property
    def drawdown(self) -> float:
        """Fraction below the peak, as a positive number (0.25 is 25% down)."""
        if self.peak_equity <= 0:
            return 0.0
        return max(0.0, 1.0 - self.equity / self.peak_equity)

    def position_after(self, intent: OrderIntent) -> tuple[float, float]:
        before = self.positions.get(intent.symbol, 0.0)
        return before, before + intent.quantity


def reduces_only(before: float, after: float) -> bool:
    """True when the order shrinks a position toward zero without flipping it."""
    return abs(after) <= abs(before) and after * before >= 0


def reductions_first(intents: list[OrderIntent], account: AccountState) -> None:
    """Put the orders that only shrink a position first (a stable sort, in place), so they
    free room under the limits for the orders that follow them."""
    if len(intents) > 1:
        intents.sort(key=lambda i: not reduces_only(*account.position_after(i)))


class RiskCheck(Protocol):
    """One pre-trade rule."""

    @property
    def name(self) -> str:
        """Short identifier shown with every denial."""
        ...

    def check(self, intent: OrderIntent, account: AccountState) -> Denied | None:
        """A denial with its reason, or None to let the intent through."""
        ...


@dataclass(frozen=True, slots=True)
class MaxPositionPct:
    """No position larger than ``limit`` times equity."""

    limit: float
    name: str = "max_position_pct"

    def allows(self, value: float, equity: float) -> bool:
        """Whether a position worth ``value`` (absolute) fits at ``equity`` (the sweep's
        batch kernel asks this directly, with no intent to build)."""
        return value <= self.limit * equity * (1 + _TOLERANCE)

    def check(self, intent: OrderIntent, account: AccountState) -> Denied | None:
        after = account.positions.get(intent.symbol, 0.0) + intent.quantity
        value = abs(after) * intent.reference_price
        if self.allows(value, account.equity):
            return None
        share = value / account.equity if account.equity > 0 else float("inf")
        return Denied(
            intent,
            self.name,
            f"position in {intent.symbol} would be {share:.1%} of equity, limit {self.limit:.1%}",
        )

    def __reduce__(self) -> tuple[type[MaxPositionPct], tuple[float, str]]:
        return type(self), (self.limit, self.name)  # see "Pickling" above


@dataclass(frozen=True, slots=True)
class MaxGrossLeverage:
    """Sum of absolute position values no larger than ``limit`` times equity."""

    limit: float
    name: str = "max_gross_leverage"

    def allows(self, gross: float, equity: float) -> bool:
        """Whether gross exposure ``gross`` fits at ``equity`` (see ``MaxPositionPct``)."""
        return gross <= self.limit * equity * (1 + _TOLERANCE)

    def check(self, intent: OrderIntent, account: AccountState) -> Denied | None:
        before = account.positions.get(intent.symbol, 0.0)
        after = before + intent.quantity
        gross = account.gross_exposure + (abs(after) - abs(before)) * intent.reference_price
        if self.allows(gross, account.equity):
            return None
        leverage = gross / account.equity if account.equity > 0 else float("inf")
        return Denied(
            intent, self.name, f"gross leverage would be {leverage:.2f}x, limit {self.limit:.2f}x"
        )

    def __reduce__(self) -> tuple[type[MaxGrossLeverage], tuple[float, str]]:
        return type(self), (self.limit, self.name)  # see "Pickling" above


@dataclass(frozen=True, slots=True)
class MaxDrawdownHalt:
    """Once equity is ``limit`` below its peak, trading halts: only reducing orders pass."""

    limit: float
    name: str = "max_drawdown"

    def check(self, intent: OrderIntent, account: AccountState) -> Denied | None:
        if not account.halted and account.drawdown < self.limit:
            return None
        return Denied(
            intent,
            self.name,
            f"trading halted: drawdown reached {account.drawdown:.1%}, limit {self.limit:.1%}",
        )

    def __reduce__(self) -> tuple[type[MaxDrawdownHalt], tuple[float, str]]:
        return type(self), (self.limit, self.name)  # see "Pickling" above


class RiskEngine:
    """Runs every check on every intent; the first denial wins."""

    def __init__(self, checks: Iterable[RiskCheck] = (), max_drawdown: float | None = None):
        self.checks: tuple[RiskCheck, ...] = tuple(checks)
        self.max_drawdown = max_drawdown
        if max_drawdown is not None:
            self.checks = (*self.checks, MaxDrawdownHalt(max_drawdown))

    @classmethod
    def from_limits(
        cls, *, max_position_pct: float, max_gross_leverage: float, max_drawdown: float | None
    ) -> RiskEngine:
        checks: tuple[RiskCheck, ...] = (
            MaxPositionPct(max_position_pct),
            MaxGrossLeverage(max_gross_leverage),
        )
        return cls(checks, max_drawdown=max_drawdown)

    def evaluate(self, intents: Sequence[OrderIntent], account: AccountState) -> list[Verdict]:
        """A verdict per intent, in order; approved intents update the projected account."""
        verdicts: list[Verdict] = []
        positions, checks = account.positions, self.checks
        for intent in intents:
            before = positions.get(intent.symbol, 0.0)
            after = before + intent.quantity
            denied = None
            # Checks inlined rather than in a helper: this runs for every order of a backtest.
            if abs(after) <= abs(before) and after * before >= 0:
                pass  # reduces only: always allowed
            elif account.equity <= 0:
                denied = Denied(intent, "equity", "account equity is not positive")
            else:
                for check in checks:
                    denied = check.check(intent, account)
                    if denied is not None:
                        break
            if denied is None:
                account.gross_exposure += (abs(after) - abs(before)) * intent.reference_price
                positions[intent.symbol] = after
                verdicts.append(Approved(intent))
            else:
                log.info("order denied %s: %s", intent.client_id, denied.reason)
                verdicts.append(denied)
        return verdicts
