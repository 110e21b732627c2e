"""The answers of a run's trader views (its round trips and calendar returns), as the spec
describes them; kept beside ``ffe.api.schemas``, whose ``Answer`` and ``Page`` they extend."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ffe.api.schemas import Answer, Page


class RoundTrip(Answer):
    """A position from flat to flat, or still open and valued at ``mark_price``: average entry
    and exit prices, all it bought (or sold short) as ``quantity``, ``pnl`` net of commissions
    (null: open without a mark) and ``pnl_pct`` of entry price times quantity (docs/api.md)."""

    symbol: str
    direction: Literal["long", "short"]
    status: Literal["open", "closed"]
    entry_time: datetime
    entry_price: float
    exit_time: datetime | None
    exit_price: float | None
    quantity: float
    closed_quantity: float
    pnl: float | None
    pnl_pct: float | None
    unrealized_pnl: float | None
    commission: float
    duration_s: float | None
    mark_time: datetime | None
    mark_price: float | None


class RoundTripPage(Page):
    """A run's round trips, oldest entry first, and what they were derived from."""

    items: list[RoundTrip]
    source: Literal["fills", "trades"]


class CalendarReturns(Answer):
    """A run's returns (fractions) by UTC day, month and year: ``{"period", "value"}``."""

    run_id: str
    daily: list[dict[str, Any]]
    monthly: list[dict[str, Any]]
    yearly: list[dict[str, Any]]
