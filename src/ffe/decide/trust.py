"""Whether a decision's confidence earns its use: recalibrated only where that helped, and a
gate only where it has skill.

Two choices, made afresh at each decision from the outcomes known by then, so each is chosen
on earlier decisions and applied to the next (a walk forward, with no look-ahead):

- **Recalibrate?** The isotonic recalibration (``ffe.decide.calibration``) is stated only
  when, over the decisions whose outcome is known, the recalibrated confidences they were
  given score a lower Brier than their raw ones. Each of those came from a fit on outcomes
  known before it, so the comparison is out of sample.
- **Gate?** The decision policy holds below its confidence threshold only when the stated
  confidence has shown skill on the known outcomes: at least ``min_outcomes`` of them, an AUC
  above 0.5 at p < 0.05 (two-sided Mann-Whitney) and a Brier score below the expanding base
  rate's: the test of ``ffe.decide.skill``, without its ECE band. Without skill the
  threshold is not applied and a decision acts on its expected return net of costs alone
  (``mode="always"`` gates regardless, as before this rule). Sizing never uses confidence.

``ConfidenceTrust`` makes the choices one decision at a time, for the batch run and the live
agent alike (the same numbers on the same decisions), and carries them across a restart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ffe.decide.calibration import LiveRecalibrator, OnlineRecalibrator
from ffe.decide.skill import SIGNIFICANCE, auc_test
from ffe.domain.errors import StrategyError

RECALIBRATE_EVERY = 20  # decisions between refits of the isotonic map and skill tests
MODES = ("skill", "always")


@dataclass(frozen=True, slots=True)
class Trust:
    """One decision's confidence and how far it is trusted.

    ``stated``: the confidence the decision states (recalibrated or raw); ``recalibrated``:
    whether it is the recalibrated one; ``candidate``: the recalibrated one (the raw one while
    there is no fit); ``gated``: whether the threshold applies; ``known``:
    outcomes known when it was decided; ``auc``/``auc_p``: the stated confidence's AUC on them
    and its p-value (None before both outcomes have occurred)."""

    stated: float
    recalibrated: bool
    gated: bool
    candidate: float
    known: int
    auc: float | None
    auc_p: float | None

    def reason(self) -> str:
        """Why the threshold does or does not apply, in words."""
        if self.gated and self.auc is not None and self.auc_p is not None:
            return f"skill shown on {self.known} outcomes: AUC {self.auc:.2f}, p {self.auc_p:.2g}"
        if self.gated:
            return "gated regardless of skill"
        if self.auc is None or self.auc_p is None:
            return f"not gating: skill not measurable on {self.known} outcomes"
        return (
            f"not gating: no skill shown on {self.known} outcomes "
            f"(AUC {self.auc:.2f}, p {self.auc_p:.2g})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "recalibrated": self.recalibrated,
            "candidate": self.candidate,
            "gated": self.gated,
            "known": self.known,
            "auc": self.auc,
            "auc_p": self.auc_p,
        }


class ConfidenceTrust:
    """The two choices of the module docstring, one decision at a time, in time order.

    ``decide`` takes a decision's raw and recalibrated confidence and when its outcome will be
    known; ``settle`` records that outcome once known, which must happen before a decision at
    or after that time is taken (``unsettled`` lists those due)."""

    def __init__(self, min_outcomes: int, mode: str = "skill", every: int = 20) -> None:
        if mode not in MODES:
            raise StrategyError(f"confidence_gate must be one of {', '.join(MODES)}, got {mode!r}")
        if min_outcomes < 1:
            raise StrategyError(f"min_outcomes must be at least 1, got {min_outcomes}")
        self.min_outcomes = min_outcomes
        self.mode = mode
        self.every = every  # decisions between skill tests (a Mann-Whitney test is not free)
        self._skilled: tuple[float | None, float | None, bool] = (None, None, False)
        self._raw: list[float] = []
        self._candidate: list[float] = []
        self._stated: list[float] = []
        self._base: list[float] = []  # the expanding base rate when each was decided
        self._decided: list[int] = []
        self._known: list[int] = []
        self._hit: list[float | None] = []

    def __len__(self) -> int:
        return len(self._raw)

    def unsettled(self, by: int) -> list[int]:
        """Decisions whose outcome is known by time ``by`` and not yet settled."""
        due = np.flatnonzero(np.asarray(self._known, dtype=np.int64) <= by).tolist()
        return [j for j in due if self._hit[j] is None]

    def decided_at(self, index: int) -> int:
        return self._decided[index]

    def settle(self, index: int, hit: bool) -> None:
        self._hit[index] = 1.0 if hit else 0.0

    def decide(self, raw: float, candidate: float, decided_at: int, known_at: int) -> Trust:
        if self._decided and decided_at < self._decided[-1]:
            raise ValueError("decided_at must be non-decreasing: decide in time order")
        pick = np.flatnonzero(np.asarray(self._known, dtype=np.int64) <= decided_at)
        outcomes = [self._hit[j] for j in pick.tolist()]
        if any(h is None for h in outcomes):
            raise ValueError("an outcome known by now was not settled: settle() it first")
        hits = np.array(outcomes, dtype=np.float64)
        recalibrate = False
        if hits.size:
            raw_loss = np.sum((np.asarray(self._raw)[pick] - hits) ** 2)
            cand_loss = np.sum((np.asarray(self._candidate)[pick] - hits) ** 2)
            recalibrate = bool(cand_loss < raw_loss)
        stated = candidate if recalibrate else raw
        if len(self._raw) % self.every == 0:  # the skill test's cadence, as the refits'
            self._skilled = self._skill(pick, hits)
        auc, auc_p, skilled = self._skilled
        self._raw.append(float(raw))
        self._candidate.append(float(candidate))
        self._stated.append(float(stated))
        self._base.append(float(hits.mean()) if hits.size else 0.5)
        self._decided.append(int(decided_at))
        self._known.append(int(known_at))
        self._hit.append(None)
        gated = self.mode == "always" or skilled
        return Trust(
            float(stated), recalibrate, gated, float(candidate), int(hits.size), auc, auc_p
        )

    def _skill(
        self, pick: np.ndarray[Any, Any], hits: np.ndarray[Any, Any]
    ) -> tuple[float | None, float | None, bool]:
        stated = np.asarray(self._stated, dtype=np.float64)[pick]
        auc, p = auc_test(stated, hits)
        if auc is None or p is None:
            return None, None, False
        base = np.asarray(self._base, dtype=np.float64)[pick]
        beats_base = np.mean((stated - hits) ** 2) < np.mean((base - hits) ** 2)
        skilled = hits.size >= self.min_outcomes and auc > 0.5 and p < SIGNIFICANCE
        return auc, p, bool(skilled and beats_base)

    def state(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "skilled": list(self._skilled),
            "raw": list(self._raw),
            "candidate": list(self._candidate),
            "stated": list(self._stated),
            "base": list(self._base),
            "decided": list(self._decided),
            "known": list(self._known),
            "hit": list(self._hit),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        auc, auc_p, skilled = state["skilled"]
        self._skilled = (auc, auc_p, bool(skilled))
        self._raw = [float(v) for v in state["raw"]]
        self._candidate = [float(v) for v in state["candidate"]]
        self._stated = [float(v) for v in state["stated"]]
        self._base = [float(v) for v in state["base"]]
        self._decided = [int(v) for v in state["decided"]]
        self._known = [int(v) for v in state["known"]]
        self._hit = [None if h is None else float(h) for h in state["hit"]]


@dataclass(frozen=True, slots=True)
class ConfidenceRule:
    """How the ensemble states and uses its confidence: recalibrate (isotonic, trusted with
    weight n / (n + ``prior``) after n outcomes) or not, and the gate's ``mode``."""

    horizon: int
    cost: float
    calibrate: bool = True
    min_outcomes: int = 50
    prior: float = 200.0
    mode: str = "skill"

    def hits(self, side: np.ndarray[Any, Any], realized: np.ndarray[Any, Any]) -> Any:
        """Whether each decision's side made a profit net of costs over the horizon."""
        threshold = np.where(side > 0, math.log1p(self.cost), -math.log1p(-self.cost))
        return side * realized > threshold

    def batch(
        self,
        raw: np.ndarray[Any, Any],
        side: np.ndarray[Any, Any],
        decided_at: np.ndarray[Any, Any],
        realized: np.ndarray[Any, Any],
        never: int,
    ) -> list[Trust]:
        """Every decision's ``Trust`` over a whole history, each from the outcomes known when
        it was made; ``realized`` is NaN where the outcome lies past the data, and ``never``
        a time after every decision."""
        known = np.isfinite(realized)
        hit = np.where(known, self.hits(side, np.nan_to_num(realized)), False)
        known_at = np.where(known, decided_at + self.horizon, never)
        candidate = raw
        if self.calibrate:
            recalibrator = OnlineRecalibrator(RECALIBRATE_EVERY, min_samples=self.min_outcomes)
            fitted = recalibrator.recalibrate(raw, decided_at, known_at, hit.astype(int))
            n_known = np.searchsorted(np.sort(known_at), decided_at, side="right")
            weight = n_known / (n_known + self.prior)
            candidate = weight * fitted + (1 - weight) * raw
        trust = ConfidenceTrust(self.min_outcomes, self.mode, RECALIBRATE_EVERY)
        out = []
        for i in range(len(raw)):
            for j in trust.unsettled(int(decided_at[i])):
                trust.settle(j, bool(hit[j]))
            out.append(trust.decide(raw[i], candidate[i], int(decided_at[i]), int(known_at[i])))
        return out


class LiveConfidence:
    """``ConfidenceRule.batch`` one decision at a time, for an agent deciding as bars arrive:
    the same numbers on the same decisions, and a ``state`` to carry across a restart."""

    def __init__(self, rule: ConfidenceRule) -> None:
        self.rule = rule
        self._recalibrator = LiveRecalibrator(RECALIBRATE_EVERY, rule.min_outcomes)
        self._trust = ConfidenceTrust(rule.min_outcomes, rule.mode, RECALIBRATE_EVERY)
        self._sides: list[int] = []

    def decide(self, values: np.ndarray[Any, Any], raw: float, side: int) -> Trust:
        """The ``Trust`` of a decision taken on the last of ``values`` (log prices so far)."""
        rule, t = self.rule, len(values) - 1
        for j in self._trust.unsettled(t):
            origin = self._trust.decided_at(j)
            realized = float(values[origin + rule.horizon] - values[origin])
            hit = bool(rule.hits(np.array([self._sides[j]]), np.array([realized]))[0])
            self._trust.settle(j, hit)
            if rule.calibrate:
                self._recalibrator.settle(j, hit)
        candidate = raw
        if rule.calibrate:
            fitted, known = self._recalibrator.decide(raw, t, t + rule.horizon)
            weight = known / (known + rule.prior)
            candidate = weight * fitted + (1 - weight) * raw
        self._sides.append(side)
        return self._trust.decide(raw, candidate, t, t + rule.horizon)

    def state(self) -> dict[str, Any]:
        return {
            "calibration": self._recalibrator.state(),
            "sides": list(self._sides),
            "trust": self._trust.state(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Take back a ``state()``; from a state saved before the trust was kept, the decisions
        so far count with their raw confidence as the one stated."""
        if "calibration" in state:
            self._recalibrator.restore(state["calibration"])
            self._sides = [int(side) for side in state["sides"]]
        if "trust" in state:
            self._trust.restore(state["trust"])
        elif "calibration" in state:
            saved = state["calibration"]
            conf = [float(c) for c in saved["conf"]]
            self._trust.restore(
                {
                    "skilled": [None, None, False],
                    "raw": conf,
                    "candidate": conf,
                    "stated": conf,
                    "base": [0.5] * len(conf),
                    "decided": saved["decided"],
                    "known": saved["known"],
                    "hit": saved["hit"],
                }
            )
