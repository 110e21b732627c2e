"""How well a run's decision confidence matched what happened: read back from the journal.

The stored ``confidence`` is what the decision used (recalibrated on outcomes known at the
time, when the strategy does that); ``votes.raw_confidence`` is the model's own probability
before recalibration. Both are compared with the realized hit rate of decisions whose
horizon has passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ffe.decide.calibration import ReliabilityTable, reliability_table
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

        return {
            "run_id": self.run_id,
            "strategy": self.strategy,
            "decisions": self.decisions,
            "resolved": self.resolved,
            "stated": table(self.stated),
            "raw": table(self.raw),
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
    stated = reliability_table([float(r.confidence) for r in resolved], hit, bins=bins)
    raws = [(r.votes or {}).get("raw_confidence") for r in resolved]
    raw = (
        reliability_table(np.array(raws, dtype=np.float64), hit, bins=bins)
        if all(isinstance(v, int | float) for v in raws)
        else None
    )
    return Calibration(run.id, run.strategy, len(rows), len(resolved), stated, raw)
