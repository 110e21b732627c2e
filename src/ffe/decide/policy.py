"""From a forecast distribution to a decision: side, expected return net of costs,
probability of a profit, size and a rationale a trader can read (see ``ffe.decide.ensemble``
for the rules in words)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scipy.stats import norm

from ffe.decide.trust import Trust
from ffe.domain.errors import StrategyError
from ffe.domain.market import FloatArray
from ffe.domain.orders import Decision


@dataclass(frozen=True, slots=True)
class DecisionPolicy:
    """How a forecast distribution becomes a position (see the module docstring)."""

    threshold: float = 0.55
    cost_bps: float = 10.0
    target_vol: float = 0.15
    kelly_fraction: float = 0.5
    max_weight: float = 1.0
    allow_short: bool = True
    hold: str = "keep"

    def __post_init__(self) -> None:
        checks = (
            (0 <= self.threshold <= 1, f"threshold must be in [0, 1], got {self.threshold}"),
            (0 <= self.cost_bps < 10_000, f"cost_bps must be in [0, 10000), got {self.cost_bps}"),
            (self.target_vol > 0, f"target_vol must be positive, got {self.target_vol}"),
            (self.kelly_fraction > 0, f"kelly_fraction must be positive: {self.kelly_fraction}"),
            (self.max_weight > 0, f"max_weight must be positive, got {self.max_weight}"),
            (self.hold in ("keep", "flat"), f"hold must be keep or flat, got {self.hold!r}"),
        )
        for ok, message in checks:
            if not ok:
                raise StrategyError(f"ensemble: {message}")


@dataclass(frozen=True, slots=True)
class Call:
    """The numbers of one decision before calibration."""

    side: int  # +1 long, -1 short, 0 none
    expected_return: float  # net of costs, for the chosen side
    prob_profit: float
    size: float  # unsigned fraction of equity
    sized_by: str
    vol_annual: float
    kelly: float


def call(mu: float, sd: float, vol_bar: float, policy: DecisionPolicy, per_year: float) -> Call:
    """The side, expected net return, probability of a profit and size for N(mu, sd)."""
    cost = policy.cost_bps / 1e4
    sd = max(sd, 1e-12)
    gross = math.exp(mu + sd * sd / 2) - 1
    p_long = float(norm.sf((math.log1p(cost) - mu) / sd))
    p_short = float(norm.cdf((math.log1p(-cost) - mu) / sd)) if policy.allow_short else 0.0
    side = 1 if p_long >= p_short else -1
    prob = p_long if side > 0 else p_short
    expected = side * gross - cost
    vol_annual = vol_bar * math.sqrt(per_year)
    by_vol = policy.target_vol / vol_annual if vol_annual > 0 else policy.max_weight
    kelly = policy.kelly_fraction * abs(mu) / (sd * sd)
    size, sized_by = min(
        (by_vol, "volatility target"), (kelly, "fractional Kelly"), (policy.max_weight, "cap")
    )
    return Call(side, expected, prob, size, sized_by, vol_annual, kelly)


def rationale(
    symbol: str,
    action: str,
    target: float,
    horizon: int,
    made: Call,
    trust: Trust,
    policy: DecisionPolicy,
    votes: Sequence[tuple[str, float, float]],
) -> str:
    """One paragraph a trader can read: what, why, and who voted how."""
    side = "long" if made.side > 0 else "short"
    head = {
        "buy": f"{symbol}: go long {target:.0%} of equity",
        "sell": f"{symbol}: go short {abs(target):.0%} of equity",
        "hold": f"{symbol}: hold",
    }[action]
    gate = f"threshold {policy.threshold:.0%}" if trust.gated else trust.reason()
    reason = (
        f"{side} has P(profit) {made.prob_profit:.1%} over {horizon} bars, confidence "
        f"{trust.stated:.1%} ({gate}), expected return net of costs "
        f"{made.expected_return:+.2%}"
    )
    sizing = (
        f"; sized by {made.sized_by} (volatility {made.vol_annual:.1%} a year)"
        if action != "hold"
        else ""
    )
    ranked = sorted(votes, key=lambda vote: -vote[1])
    voters = ", ".join(f"{name} {weight:.0%} ({mean:+.2%})" for name, weight, mean in ranked)
    return f"{head}. {reason}{sizing}. Votes (weight, forecast): {voters}."


def make_decision(
    symbol: str,
    time: datetime,
    models: Sequence[str],
    weights: FloatArray,
    means: FloatArray,
    sds: FloatArray,
    mu: float,
    sd: float,
    vol_bar: float,
    horizon: int,
    raw: Call,
    trust: Trust,
    policy: DecisionPolicy,
) -> Decision:
    """The decision for ``raw``: it acts when its expected net return and size are positive
    and, where ``trust`` says the confidence gates, its confidence reaches the threshold."""
    confident = trust.stated >= policy.threshold or not trust.gated
    act = confident and raw.expected_return > 0 and raw.size > 0
    if act:
        target = raw.side * raw.size
        action = "buy" if raw.side > 0 else "sell"
    else:
        target = math.nan if policy.hold == "keep" else 0.0
        action = "hold"
    votes = [
        (name, float(weights[k]), float(means[k]))
        for k, name in enumerate(models)
        if weights[k] > 0 and math.isfinite(means[k])
    ]
    details: dict[str, Any] = {
        "action": action,
        "side": raw.side,
        "cost": policy.cost_bps / 1e4,
        "mean": mu,
        "sd": sd,
        "expected_return": raw.expected_return,
        "prob_profit": raw.prob_profit,
        "raw_confidence": raw.prob_profit,
        "confidence_use": trust.to_dict(),
        "vol_bar": vol_bar,
        "vol_annual": raw.vol_annual,
        "kelly": raw.kelly,
        "sized_by": raw.sized_by,
        "models": {
            name: {"weight": w, "mean": m, "sd": float(sds[models.index(name)])}
            for name, w, m in votes
        },
    }
    return Decision(
        time=time,
        symbol=symbol,
        target=target,
        confidence=trust.stated,
        rationale=rationale(symbol, action, target, horizon, raw, trust, policy, votes),
        votes=tuple((name, w) for name, w, _ in votes),
        horizon=horizon,
        details=details,
    )
