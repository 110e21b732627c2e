"""Where a journaled decision's outcome stands, in words a person reads on the Decisions page:
resolved (the return over its horizon, right or wrong), pending (how many bars it still waits,
and when it resolves), unresolved (its horizon passed and nothing was scored, and why), or not
scored at all (the strategy states no horizon, confidence, side or cost to judge it by).

The agent scores a decision (``ffe.agent.outcomes``) when ``is_scored`` says so; the same rule
reads a journaled row here, so the page explains exactly what the agent did.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# What ``ffe.runs.journal.decision_row`` adds to a decision's details in ``votes``.
_ROW_KEYS = frozenset({"weights", "horizon"})

UNSCORED = (
    "not scored: this strategy's decisions are plain targets (a one-bar horizon, full "
    "confidence, no side or cost), so the agent judges no outcome for them; strategies that "
    "state a horizon or a confidence (such as the ensemble) are scored"
)


def is_scored(details: Mapping[str, Any], horizon: int, confidence: float | None) -> bool:
    """Whether the agent judges a decision's outcome: it states something to judge it by."""
    return bool(details) or horizon != 1 or (confidence is not None and confidence != 1.0)


def scored_horizon(votes: Mapping[str, Any] | None, confidence: float | None) -> int | None:
    """The horizon (bars) a journaled decision is scored over; None when it is not scored."""
    votes = votes or {}
    horizon = votes.get("horizon")
    if not isinstance(horizon, int) or horizon < 1:
        return None  # journaled before horizons were recorded, or by something else
    details = {k: v for k, v in votes.items() if k not in _ROW_KEYS}
    if details.get("keep") is True:  # a hold that kept the position: the row marked it so
        details.pop("keep")
        details.pop("action", None)
    return horizon if is_scored(details, horizon, confidence) else None


@dataclass(frozen=True, slots=True)
class OutcomeStatus:
    """A decision's outcome as the page shows it; ``text`` says it in one sentence."""

    state: str  # resolved | pending | unresolved | unscored
    text: str
    horizon: int | None = None
    bars_left: int | None = None
    resolves_at: datetime | None = None
    estimated: bool = False  # resolves_at extrapolated from the bar spacing, not a bar's time
    realized_return: float | None = None
    hit: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "text": self.text,
            "horizon": self.horizon,
            "bars_left": self.bars_left,
            "resolves_at": None if self.resolves_at is None else self.resolves_at.isoformat(),
            "estimated": self.estimated,
            "realized_return": self.realized_return,
            "hit": self.hit,
        }


def unscored() -> OutcomeStatus:
    return OutcomeStatus("unscored", UNSCORED)


def resolved(horizon: int, realized_return: float | None, hit: bool | None) -> OutcomeStatus:
    """A scored outcome: the (log) return over ``horizon`` bars and whether it was right."""
    if realized_return is None or not math.isfinite(realized_return):
        return OutcomeStatus("resolved", f"over {_bars(horizon)}: no return", horizon, 0)
    verdict = {True: "right", False: "wrong", None: "not judged"}[hit]
    moved = f"{math.expm1(realized_return):+.2%}"
    text = f"{verdict}: the price moved {moved} over {_bars(horizon)}"
    return OutcomeStatus("resolved", text, horizon, 0, None, False, realized_return, hit)


def waiting(
    horizon: int,
    decided: datetime,
    later: Sequence[datetime],
    step: timedelta | None,
    run_open: bool,
) -> OutcomeStatus:
    """A scored decision made at bar time ``decided`` with no outcome yet. ``later`` are the
    times of the run's bars after it (at most ``horizon`` of them); ``step`` the run's recent
    bar spacing, to say when a bar not yet seen should come; ``run_open`` whether an agent
    still trades the run."""
    left = horizon - len(later)
    if left <= 0:
        ended = later[horizon - 1]
        text = (
            f"unresolved: its {_bars(horizon)} ended at {_when(ended)} and no outcome was "
            "recorded: the agent stopped or restarted while it waited (waiting decisions "
            "are not carried over a restart), or a price at either end was missing"
        )
        return OutcomeStatus("unresolved", text, horizon, 0, ended)
    last = later[-1] if later else decided
    at = None if step is None else last + step * left
    when = "" if at is None else f", about {_when(at)}"
    if not run_open:
        text = (
            f"pending, and will stay so: the run ended {_bars(left)} before its "
            f"{_bars(horizon)} horizon; it resolves only if an agent resumes this run"
        )
        return OutcomeStatus("pending", text, horizon, left, at, at is not None)
    text = f"pending: resolves after {_bars(left)} more (horizon {_bars(horizon)}){when}"
    return OutcomeStatus("pending", text, horizon, left, at, at is not None)


def _bars(n: int) -> str:
    return f"{n} bar" if n == 1 else f"{n} bars"


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")
