"""Binary contracts (prediction markets such as Kalshi's) and their settlement.

A binary contract pays 1 (in the account currency) per YES contract if its event happens and
0 if it does not, so its YES price lies in [0, 1] and reads as the market's probability.
Quantities count contracts, signed in YES terms: +10 holds ten YES contracts; -10 is short
ten YES, which is what holding ten NO contracts amounts to (a NO pays 1 - the YES payout).
At expiry the venue settles the market: every position closes at 1 (result yes) or 0 (no).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from ffe.domain.errors import DataError

RESULTS: Final = ("yes", "no")


def settlement_price(result: str) -> float:
    """The YES price a market settles at for ``result`` (``yes`` 1, ``no`` 0)."""
    if result not in RESULTS:
        raise DataError(f"a binary market settles 'yes' or 'no', not {result!r}")
    return 1.0 if result == "yes" else 0.0


def check_probability(price: float, what: str = "a binary contract's price") -> float:
    """``price`` if it lies in [0, 1]; DataError otherwise."""
    if not (math.isfinite(price) and 0.0 <= price <= 1.0):
        raise DataError(f"{what} must lie in [0, 1] (a probability); got {price!r}")
    return price


@dataclass(frozen=True, slots=True)
class BinaryContract:
    """One binary market: ``symbol`` is its ticker, ``event`` the ticker of the event that
    groups it with its sibling markets (the risk limits per event add those up). ``result``
    is ``yes`` or ``no`` once the market is determined, None before."""

    symbol: str
    event: str
    expiry: datetime | None = None
    status: str = "active"
    result: str | None = None

    def __post_init__(self) -> None:
        if self.result is not None and self.result not in RESULTS:
            raise DataError(f"market {self.symbol}: result {self.result!r} is not yes or no")

    @property
    def settled(self) -> bool:
        return self.result is not None

    @property
    def settlement_price(self) -> float | None:
        """1 or 0 once settled, None before."""
        return None if self.result is None else settlement_price(self.result)

    def settled_by(self, moment: datetime) -> float | None:
        """The settlement price if the market has a result and closes by ``moment``, else
        None (a run that stops before the close keeps its position open)."""
        if self.expiry is None or self.expiry > moment:
            return None
        return self.settlement_price


@dataclass(frozen=True, slots=True)
class Settlement:
    """A market settled: the position of ``quantity`` contracts (signed, YES terms) in
    ``symbol`` closed at ``price`` (1 or 0) at ``time``, with no commission."""

    symbol: str
    time: datetime
    quantity: float
    price: float

    @property
    def payout(self) -> float:
        """Cash the settlement credits (negative for a short YES position settled at 1)."""
        return self.quantity * self.price
