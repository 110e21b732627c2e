"""The answers of a run's trader views (its round trips and calendar returns), as the spec
describes them; kept beside ``ffe.api.schemas``, whose ``Answer``, ``Page`` and
``RoundTrip`` (the live account's trades are the same) they use."""

from __future__ import annotations

from typing import Any, Literal

from ffe.api.account_schemas import RoundTrip
from ffe.api.schemas import Answer, Page


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
