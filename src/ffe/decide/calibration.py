"""Is a decision's stated confidence honest? Reliability tables and online recalibration.

A confidence ``c`` is calibrated when decisions stated at ``c`` come true a fraction ``c``
of the time. ``reliability_table`` measures that after the fact. ``OnlineRecalibrator`` maps
stated confidences to calibrated ones with an isotonic regression fitted only on outcomes
already known when each decision was made, so a backtest can use it without look-ahead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.isotonic import IsotonicRegression

from ffe.domain.market import FloatArray

_IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    """Decisions whose confidence fell in ``[low, high)`` (the last bin also holds 1).

    ``mean_confidence`` and ``hit_rate`` are NaN when ``count`` is 0."""

    low: float
    high: float
    count: int
    mean_confidence: float
    hit_rate: float


@dataclass(frozen=True, slots=True)
class ReliabilityTable:
    """Stated confidence against realized hit rate, bin by bin.

    ``ece`` (expected calibration error) is ``Σ_bins (count / n) · |hit_rate -
    mean_confidence|``; ``brier`` is the mean of ``(confidence - hit)²``. Both: lower is
    better, 0 is perfect."""

    rows: tuple[ReliabilityBin, ...]
    ece: float
    brier: float


def _outcomes(confidence: npt.ArrayLike, hit: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Confidences in [0, 1] and hits as 0.0/1.0, one each per decision."""
    conf = np.asarray(confidence, dtype=np.float64)
    hits = np.asarray(hit, dtype=np.float64)
    if conf.ndim != 1 or hits.ndim != 1:
        raise ValueError("confidence and hit must be 1-D arrays, one value per decision")
    if len(conf) != len(hits):
        raise ValueError(f"{len(conf)} confidences but {len(hits)} hits: pass one per decision")
    if len(conf) == 0:
        raise ValueError("no decisions: pass at least one confidence and hit")
    if not np.isfinite(conf).all():
        raise ValueError("confidence holds NaN or infinite values: drop those decisions")
    if conf.min() < 0 or conf.max() > 1:
        raise ValueError(
            f"confidence must lie in [0, 1], got values from {conf.min()} to {conf.max()}"
        )
    if not np.isin(hits, (0.0, 1.0)).all():
        raise ValueError("hit must be boolean or 0/1 (drop decisions whose outcome is unknown)")
    return conf, hits


def reliability_table(
    confidence: npt.ArrayLike, hit: npt.ArrayLike, bins: int = 10
) -> ReliabilityTable:
    """Bin decisions by confidence into ``bins`` equal-width bins over [0, 1] and compare."""
    conf, hits = _outcomes(confidence, hit)
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    edges = np.arange(bins + 1) / bins
    index = np.minimum(np.searchsorted(edges, conf, side="right") - 1, bins - 1)
    count = np.bincount(index, minlength=bins)
    filled = count > 0
    mean_conf = np.full(bins, np.nan)
    hit_rate = np.full(bins, np.nan)
    np.divide(np.bincount(index, conf, bins), count, out=mean_conf, where=filled)
    np.divide(np.bincount(index, hits, bins), count, out=hit_rate, where=filled)
    gaps = count[filled] * np.abs(hit_rate[filled] - mean_conf[filled])
    rows = tuple(
        ReliabilityBin(
            float(edges[k]), float(edges[k + 1]), int(count[k]), mean_conf[k], hit_rate[k]
        )
        for k in range(bins)
    )
    return ReliabilityTable(
        rows=rows,
        ece=float(gaps.sum() / len(conf)),
        brier=float(np.mean((conf - hits) ** 2)),
    )


@dataclass(frozen=True, slots=True)
class OnlineRecalibrator:
    """Recalibrates each decision's confidence from the outcomes known when it was made.

    The outcome of decision ``j`` may be used for decision ``i`` when ``known_at[j] <=
    decided_at[i]``: an outcome revealed at time index ``k`` is usable by a decision made
    at ``k`` or later (decisions are taken once the bar at ``decided_at`` is complete).
    The map is a non-decreasing isotonic regression of hit on confidence, clipped to
    [0, 1]. It is refitted when ``refit_every`` decisions have passed since the last fit
    and new outcomes have arrived; decisions in between reuse the last fit, which only
    ever holds outcomes known earlier. Until ``min_samples`` outcomes are known, the raw
    confidence is returned.
    """

    refit_every: int = 20
    min_samples: int = 50

    def __post_init__(self) -> None:
        if self.refit_every < 1:
            raise ValueError(f"refit_every must be at least 1, got {self.refit_every}")
        if self.min_samples < 1:
            raise ValueError(f"min_samples must be at least 1, got {self.min_samples}")

    def recalibrate(
        self,
        confidence: npt.ArrayLike,
        decided_at: npt.ArrayLike,
        known_at: npt.ArrayLike,
        hit: npt.ArrayLike,
    ) -> FloatArray:
        """Calibrated confidence in [0, 1] for each decision, in the order given.

        ``decided_at`` (non-decreasing) and ``known_at`` are integer time indices, with
        ``known_at[j] > decided_at[j]``; give outcomes never known a ``known_at`` past the
        last decision (their hit is then never read, but must still be 0 or 1).
        """
        conf, hits = _outcomes(confidence, hit)
        decided, known = _times(decided_at, known_at, len(conf))
        by_known = np.argsort(known, kind="stable")
        n_known = np.searchsorted(known[by_known], decided, side="right")
        calibrated = conf.copy()
        for start, stop, used in self._fits(n_known):
            model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
            train = by_known[:used]
            model.fit(conf[train], hits[train])
            calibrated[start:stop] = model.predict(conf[start:stop])
        return calibrated

    def _fits(self, n_known: _IntArray) -> list[tuple[int, int, int]]:
        """Runs ``[start, stop)`` of decisions served by one fit on the first ``used``
        outcomes in order of ``known_at``."""
        starts: list[int] = []
        used: list[int] = []
        for i, available in enumerate(n_known.tolist()):
            if available < self.min_samples or (used and available == used[-1]):
                continue
            if starts and i - starts[-1] < self.refit_every:
                continue
            starts.append(i)
            used.append(available)
        if not starts:  # never enough known outcomes: every confidence stays raw
            return []
        stops = [*starts[1:], len(n_known)]
        return list(zip(starts, stops, used, strict=True))


def _times(
    decided_at: npt.ArrayLike, known_at: npt.ArrayLike, n: int
) -> tuple[_IntArray, _IntArray]:
    decided = np.asarray(decided_at)
    known = np.asarray(known_at)
    for name, array in (("decided_at", decided), ("known_at", known)):
        if array.shape != (n,) or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{name} must be {n} integer time indices, one per decision")
    if (np.diff(decided) < 0).any():
        raise ValueError("decided_at must be non-decreasing: pass decisions in time order")
    if (known <= decided).any():
        raise ValueError("known_at must be after decided_at: an outcome is known only later")
    return decided.astype(np.intp), known.astype(np.intp)


class LiveRecalibrator:
    """``OnlineRecalibrator`` one decision at a time, for an agent deciding as bars arrive: the
    same fits on the same outcomes, so the same numbers as ``recalibrate`` over the same
    decisions (with ``known_at`` non-decreasing in decision order, as it is for decisions
    judged a fixed number of bars later).

    ``decide`` takes a decision's raw confidence and time indices and returns its calibrated
    confidence and how many outcomes were known for it; ``settle`` records an outcome once it
    is known, which must happen before a decision at or after its ``known_at`` is taken.
    ``state``/``restore`` carry it across a restart as JSON; the fit is remade from them."""

    def __init__(self, refit_every: int = 20, min_samples: int = 50) -> None:
        self._rule = OnlineRecalibrator(refit_every, min_samples)  # validates both
        self._conf: list[float] = []
        self._decided: list[int] = []
        self._known: list[int] = []
        self._hit: list[float | None] = []
        self._start: int | None = None  # decision index of the newest fit
        self._used = 0  # outcomes it was fitted on
        self._model: IsotonicRegression | None = None

    def __len__(self) -> int:
        return len(self._conf)

    def decide(self, confidence: float, decided_at: int, known_at: int) -> tuple[float, int]:
        if not known_at > decided_at:
            raise ValueError("known_at must be after decided_at: an outcome is known only later")
        if self._decided and decided_at < self._decided[-1]:
            raise ValueError("decided_at must be non-decreasing: decide in time order")
        i = len(self._conf)
        available = int(np.count_nonzero(np.asarray(self._known, dtype=np.int64) <= decided_at))
        rule = self._rule
        fitted = self._start is not None
        if (
            available >= rule.min_samples
            and not (fitted and available == self._used)
            and not (fitted and i - int(self._start or 0) < rule.refit_every)
        ):
            self._fit(available)
            self._start = i
        calibrated = confidence
        if self._model is not None:
            calibrated = float(self._model.predict(np.array([confidence]))[0])
        self._conf.append(float(confidence))
        self._decided.append(int(decided_at))
        self._known.append(int(known_at))
        self._hit.append(None)
        return calibrated, available

    def unsettled(self, by: int) -> list[int]:
        """Indices of the decisions whose outcome is known by time ``by`` but not settled."""
        return [j for j, k in enumerate(self._known) if k <= by and self._hit[j] is None]

    def decided_at(self, index: int) -> int:
        return self._decided[index]

    def settle(self, index: int, hit: bool) -> None:
        self._hit[index] = 1.0 if hit else 0.0

    def _fit(self, used: int) -> None:
        order = np.argsort(np.asarray(self._known, dtype=np.int64), kind="stable")[:used]
        hits = [self._hit[j] for j in order.tolist()]
        if any(h is None for h in hits):
            raise ValueError("an outcome known by now was not settled: settle() it first")
        model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        model.fit(np.asarray(self._conf, dtype=np.float64)[order], np.asarray(hits, np.float64))
        self._model, self._used = model, used

    def state(self) -> dict[str, Any]:
        return {
            "conf": list(self._conf),
            "decided": list(self._decided),
            "known": list(self._known),
            "hit": list(self._hit),
            "start": self._start,
            "used": self._used,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self._conf = [float(c) for c in state["conf"]]
        self._decided = [int(d) for d in state["decided"]]
        self._known = [int(k) for k in state["known"]]
        self._hit = [None if h is None else float(h) for h in state["hit"]]
        start = state["start"]
        self._start = None if start is None else int(start)
        self._model, self._used = None, 0
        if self._start is not None:
            self._fit(int(state["used"]))
