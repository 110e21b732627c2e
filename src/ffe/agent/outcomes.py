"""The outcomes of an agent's decisions: a decision that names its horizon, side, cost or
confidence is checked once its horizon has passed, and whether it was right is journaled
beside it (what the ensemble's weights and the calibration report learn from).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ffe.agent.journal import AgentJournal, PendingDecision
from ffe.domain.market import MarketData
from ffe.domain.orders import Decision
from ffe.runs.outcome_status import is_scored


@dataclass(slots=True)
class _Outcome:
    decision: PendingDecision
    bar: int
    symbol: int
    horizon: int
    side: int
    cost: float
    confidence: float


class OutcomeWatch:
    """Decisions waiting for their horizon to pass. ``on_judged`` (symbol, stated confidence,
    hit), when set, is told each outcome as it is journaled."""

    def __init__(self, journal: AgentJournal) -> None:
        self.journal = journal
        self.waiting: list[_Outcome] = []
        self.on_judged: Callable[[str, float, bool], None] | None = None

    def track(self, pending: PendingDecision, decision: Decision, bar: int, symbol: int) -> None:
        """Watch ``decision`` (made at ``bar`` on column ``symbol``) if it asks to be judged:
        plain targets (horizon 1, full confidence, no details) are not."""
        if not is_scored(decision.details, decision.horizon, decision.confidence):
            return
        side = int(decision.details.get("side", 1 if decision.target > 0 else -1))
        cost = float(decision.details.get("cost", 0.0))
        outcome = _Outcome(pending, bar, symbol, decision.horizon, side, cost, decision.confidence)
        self.waiting.append(outcome)

    def resolve(self, bar: int, marks: Any, market: MarketData) -> None:
        """Journal the outcome of every decision whose horizon ended by ``bar``; one without
        a positive mark at either end is dropped unjudged."""
        keep, judged = [], self.on_judged
        for outcome in self.waiting:
            later = outcome.bar + outcome.horizon
            if later > bar:
                keep.append(outcome)
                continue
            start, end = marks.item(outcome.bar, outcome.symbol), marks.item(later, outcome.symbol)
            if not (start > 0 and end > 0):
                continue
            realized = math.log(end / start)
            cost = outcome.cost
            hit = realized > math.log1p(cost) if outcome.side > 0 else realized < math.log1p(-cost)
            self.journal.outcome(
                outcome.decision,
                {
                    "horizon": outcome.horizon,
                    "realized_return": realized,
                    "hit": bool(hit),
                    "resolved_at": market.time_of(later),
                },
            )
            if judged is not None:
                judged(market.symbols[outcome.symbol], outcome.confidence, bool(hit))
        self.waiting = keep
