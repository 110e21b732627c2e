"""How well a run's decision confidence matched what happened: read back from the journal.

The stored ``confidence`` is what the decision used (recalibrated on outcomes known at the
time, when the strategy does that); ``votes.raw_confidence`` is the model's own probability
before recalibration. Both are compared with the realized hit rate of decisions whose
horizon has passed, and both are measured for skill (``ffe.decide.skill``): a calibrated
confidence may still tell nothing about which decisions come true.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ffe.decide.calibration import ReliabilityTable, reliability_table
from ffe.decide.skill import Skill, confidence_skill
from ffe.domain.errors import FfeError

if TYPE_CHECKING:
    from ffe.store.database import Database


@dataclass(frozen=True, slots=True)
class Calibration:
    run_id: str
    strategy: str
    decisions: int
    resolved: int
    stated: ReliabilityTable  # the confidence the decisions used
    raw: ReliabilityTable | None  # the models' probability before recalibration
    stated_skill: Skill
    raw_skill: Skill | None

    def to_dict(self) -> dict[str, Any]:
        def table(t: ReliabilityTable | None) -> dict[str, Any] | None:
            if t is None:
                return None
            rows = [
                {
                    "low": r.low,
                    "high": r.high,
                    "count": r.count,
                    "mean_confidence": None if r.count == 0 else r.mean_confidence,
                    "hit_rate": None if r.count == 0 else r.hit_rate,
                }
                for r in t.rows
            ]
            return {"ece": t.ece, "brier": t.brier, "bins": rows}

        def skill(found: Skill | None) -> dict[str, Any] | None:
            return None if found is None else found.to_dict()

        return {
            "run_id": self.run_id,
            "strategy": self.strategy,
            "decisions": self.decisions,
            "resolved": self.resolved,
            "stated": table(self.stated),
            "raw": table(self.raw),
            "stated_skill": skill(self.stated_skill),
            "raw_skill": skill(self.raw_skill),
        }


async def load_calibration(db: Database, ref: str, bins: int = 10) -> Calibration:
    """The reliability of run ``ref``'s decisions (an id or a unique id prefix)."""
    from ffe.store.repositories import unit_of_work

    async with unit_of_work(db) as uow:
        run = await uow.runs.get(ref)
        rows = await uow.journal.decisions_with_outcomes(run.id)
    if not rows:
        raise FfeError(
            f"run {run.id} has no decisions: strategy {run.strategy!r} does not explain its "
            "decisions (try --strategy ensemble)"
        )
    resolved = [
        r
        for r in rows
        if r.hit is not None and r.confidence is not None and np.isfinite(r.confidence)
    ]
    if not resolved:
        raise FfeError(f"run {run.id}: none of its {len(rows)} decisions has an outcome yet")
    hit = np.array([bool(r.hit) for r in resolved], dtype=np.float64)
    decided = np.array([r.time.timestamp() for r in resolved])
    known = np.array([r.resolved_at.timestamp() for r in resolved])
    confidence = np.array([float(r.confidence) for r in resolved])
    stated = reliability_table(confidence, hit, bins=bins)
    stated_skill = confidence_skill(confidence, hit, decided, known, bins=bins)
    raws = [(r.votes or {}).get("raw_confidence") for r in resolved]
    raw, raw_skill = None, None
    if all(isinstance(v, int | float) for v in raws):
        raw_confidence = np.array(raws, dtype=np.float64)
        raw = reliability_table(raw_confidence, hit, bins=bins)
        raw_skill = confidence_skill(raw_confidence, hit, decided, known, bins=bins)
    return Calibration(
        run.id, run.strategy, len(rows), len(resolved), stated, raw, stated_skill, raw_skill
    )
