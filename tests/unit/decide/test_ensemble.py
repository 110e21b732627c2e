"""The decision engine: ``call`` and ``DecisionPolicy``, the ``ensemble`` strategy and the live
``EnsembleDecider``. Expected values come from scipy's lognormal and from recomputing the
Hedge weights and the mixture here, not from earlier runs."""

from __future__ import annotations

import itertools
import math
import re
from typing import Any, ClassVar

import numpy as np
import pytest
from arch.data import sp500
from scipy.stats import lognorm, norm

from ffe.decide import make_strategy
from ffe.decide.ensemble import EnsembleDecider, EnsembleStrategy
from ffe.decide.policy import DecisionPolicy, call
from ffe.decide.strategy import Explained
from ffe.domain import MarketData, StrategyError
from ffe.domain.orders import Decision
from ffe.forecast.base import Forecast, ForecastError, Series
from ffe.forecast.ensemble import combine
from ffe.forecast.models import make_forecaster

# Cheap enough for unit tests: one refit every 50 bars, no LightGBM, no process pool.
CHEAP = {"models": "naive,drift,garch", "window": 150, "refit_every": 50, "workers": 1}
CHEAP_NAMES = ("naive", "drift", "garch")
ETA, DISCOUNT = EnsembleStrategy.eta, EnsembleStrategy.discount  # the defaults, whatever they are
WINDOW, EVERY, MAX_WEIGHT, MIN_OUTCOMES = 150, 4, 0.5, 20


def _sp500(start: str, n_bars: int) -> MarketData:
    """``n_bars`` daily bars of the S&P 500 from ``start`` (2002 has rallies and slides)."""
    frame = sp500.load()
    first = int(frame.index.searchsorted(start))
    rows = frame.iloc[first : first + n_bars]
    columns = [rows[name].to_numpy()[:, None] for name in ("Open", "High", "Low", "Close")]
    return MarketData(("SP500",), rows.index.to_numpy(), *columns, np.ones((n_bars, 1)))


def _bar(market: MarketData, decision: Decision) -> int:
    (bar,) = np.flatnonzero(market.times == np.datetime64(decision.time.replace(tzinfo=None)))
    return int(bar)


@pytest.fixture(scope="module")
def market() -> MarketData:
    return _sp500("2002-01-01", 450)


@pytest.fixture(scope="module")
def strategy() -> EnsembleStrategy:
    return EnsembleStrategy(
        models="naive,drift,auto_ets,garch",
        window=WINDOW,
        refit_every=50,
        workers=1,
        every=EVERY,
        max_weight=MAX_WEIGHT,
        min_outcomes=MIN_OUTCOMES,
        eta=2.0,  # quick-moving weights: on these 450 bars the decisions take both sides
        discount=0.99,
    )


@pytest.fixture(scope="module")
def explained(strategy: EnsembleStrategy, market: MarketData) -> Explained:
    return strategy.explain(market.history())


@pytest.fixture(scope="module")
def only_holds(market: MarketData) -> Explained:
    """Threshold 1 (nothing is that sure) applied whatever the skill, flat holds, no
    recalibration."""
    strategy = EnsembleStrategy(
        **CHEAP, threshold=1.0, hold="flat", calibrate=False, confidence_gate="always"
    )
    return strategy.explain(market.history())


# --- call and DecisionPolicy ------------------------------------------------------------


@pytest.mark.parametrize(("mu", "sd", "side"), [(0.01, 0.02, 1), (-0.012, 0.03, -1)])
def test_call_when_distribution_given_then_expected_return_and_p_profit_are_lognormal(
    mu: float, sd: float, side: int
) -> None:
    policy = DecisionPolicy(cost_bps=25.0)
    cost = 0.0025
    ratio = lognorm(s=sd, scale=math.exp(mu))  # price after / price before

    made = call(mu, sd, 0.01, policy, 252.0)

    assert made.side == side
    if side > 0:
        assert made.expected_return == pytest.approx(ratio.mean() - 1 - cost, rel=1e-9)
        assert made.prob_profit == pytest.approx(ratio.sf(1 + cost), rel=1e-9)
    else:
        assert made.expected_return == pytest.approx(1 - ratio.mean() - cost, rel=1e-9)
        assert made.prob_profit == pytest.approx(ratio.cdf(1 - cost), rel=1e-9)


def test_call_when_short_not_allowed_then_long_side_even_when_falling() -> None:
    policy = DecisionPolicy(allow_short=False)
    ratio = lognorm(s=0.01, scale=math.exp(-0.05))

    made = call(-0.05, 0.01, 0.01, policy, 252.0)

    assert made.side == 1
    assert made.prob_profit == pytest.approx(ratio.sf(1.001), abs=1e-12)
    assert made.expected_return == pytest.approx(ratio.mean() - 1.001, rel=1e-9)
    assert made.expected_return < 0


@pytest.mark.parametrize(
    ("mu", "sd", "vol_bar", "max_weight", "binding"),
    [
        (0.01, 0.02, 0.02, 1.0, "volatility target"),
        (0.001, 0.05, 0.005, 1.0, "fractional Kelly"),
        (0.01, 0.02, 0.005, 0.3, "cap"),
        (-0.001, 0.05, 0.005, 1.0, "fractional Kelly"),  # a short is sized on |mu|
    ],
)
def test_call_size_is_smallest_of_vol_target_kelly_and_cap_and_says_which(
    mu: float, sd: float, vol_bar: float, max_weight: float, binding: str
) -> None:
    policy = DecisionPolicy(target_vol=0.15, kelly_fraction=0.5, max_weight=max_weight)
    by_vol = 0.15 / (vol_bar * math.sqrt(252))
    kelly = 0.5 * abs(mu) / sd**2
    candidates = {"volatility target": by_vol, "fractional Kelly": kelly, "cap": max_weight}

    made = call(mu, sd, vol_bar, policy, 252.0)

    assert made.size == pytest.approx(min(candidates.values()), rel=1e-12)
    assert made.sized_by == binding == min(candidates, key=candidates.__getitem__)
    assert made.vol_annual == pytest.approx(vol_bar * math.sqrt(252), rel=1e-12)
    assert made.kelly == pytest.approx(kelly, rel=1e-12)


@pytest.mark.parametrize("mu", [0.004, -0.004])
def test_call_when_cost_rises_then_probability_of_profit_falls(mu: float) -> None:
    probs = [call(mu, 0.02, 0.01, DecisionPolicy(cost_bps=bps), 252.0) for bps in (0, 10, 50, 200)]

    assert {made.side for made in probs} == {1 if mu > 0 else -1}
    assert all(a.prob_profit > b.prob_profit for a, b in itertools.pairwise(probs))
    assert all(a.expected_return > b.expected_return for a, b in itertools.pairwise(probs))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("threshold", 1.5),
        ("threshold", -0.1),
        ("threshold", math.nan),
        ("cost_bps", -1.0),
        ("cost_bps", 10_000.0),
        ("target_vol", 0.0),
        ("kelly_fraction", -0.5),
        ("max_weight", 0.0),
        ("hold", "x"),
    ],
)
def test_decision_policy_when_value_bad_then_strategy_error_names_the_field(
    field: str, value: Any
) -> None:
    with pytest.raises(StrategyError, match=rf"^ensemble: {field} must"):
        DecisionPolicy(**{field: value})


# --- the ensemble strategy ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"models": "naive,prophet"}, r"unknown model prophet; available: naive"),
        ({"every": 0}, r"every must be at least 1, got 0"),
        ({"window": 29}, r"window must be at least 30 bars, got 29"),
        ({"hold": "x"}, r"hold must be keep or flat, got 'x'"),
        ({"min_outcomes": 0}, r"min_outcomes must be at least 1, got 0"),
        ({"calibration_prior": 0}, r"calibration_prior must be positive, got 0"),
        ({"calibration_prior": -150}, r"calibration_prior must be positive, got -150"),
    ],
)
def test_ensemble_when_params_bad_then_strategy_error_says_what_to_fix(
    params: dict[str, object], message: str
) -> None:
    with pytest.raises(StrategyError, match=rf"^ensemble: {message}"):
        make_strategy("ensemble", params)


def test_ensemble_explain_when_compared_with_targets_then_equal(
    strategy: EnsembleStrategy, market: MarketData, explained: Explained
) -> None:
    targets = strategy.targets(market.history())

    np.testing.assert_array_equal(targets, explained.targets)
    for decision in explained.decisions:
        bar = _bar(market, decision)
        np.testing.assert_array_equal(targets[bar, 0], decision.target)


def test_ensemble_decisions_carry_confidence_horizon_rationale_and_votes(
    strategy: EnsembleStrategy, explained: Explained
) -> None:
    assert len(explained.decisions) > 50
    for decision in explained.decisions:
        voters = decision.details["models"]
        assert 0.0 <= decision.confidence <= 1.0
        assert decision.horizon == strategy.horizon
        assert decision.rationale.startswith("SP500: ")
        assert all(f" {name} " in decision.rationale for name, w in decision.votes if w > 0)
        assert [name for name, _ in decision.votes] == list(voters)
        assert set(voters) <= {"naive", "drift", "auto_ets", "garch"}
        assert math.fsum(weight for _, weight in decision.votes) == pytest.approx(1.0, abs=1e-12)
        # Trading days only: a year is 252 bars.
        vol_annual = decision.details["vol_bar"] * math.sqrt(252)
        assert decision.details["vol_annual"] == pytest.approx(vol_annual, rel=1e-12)


def test_ensemble_acting_decisions_within_max_weight_and_signed_by_side(
    explained: Explained,
) -> None:
    acting = [d for d in explained.decisions if d.details["action"] != "hold"]

    assert {d.details["action"] for d in acting} == {"buy", "sell"}
    for decision in acting:
        assert 0 < abs(decision.target) <= MAX_WEIGHT
        assert np.sign(decision.target) == decision.details["side"]
        assert decision.details["action"] == ("buy" if decision.target > 0 else "sell")
        if decision.details["confidence_use"]["gated"]:
            assert decision.confidence >= 0.55
        assert decision.details["expected_return"] > 0


def test_ensemble_holds_when_hold_keep_then_no_instruction(explained: Explained) -> None:
    holds = [d for d in explained.decisions if d.details["action"] == "hold"]

    assert holds
    assert all(math.isnan(d.target) for d in holds)
    assert all(d.rationale.startswith("SP500: hold.") for d in holds)


def test_ensemble_when_threshold_is_one_then_only_holds_and_flat_holds_are_zero(
    market: MarketData, only_holds: Explained
) -> None:
    bars = [_bar(market, d) for d in only_holds.decisions]

    assert only_holds.decisions
    assert {d.details["action"] for d in only_holds.decisions} == {"hold"}
    assert all(d.target == 0.0 for d in only_holds.decisions)
    assert (only_holds.targets[bars, 0] == 0.0).all()
    assert np.isnan(np.delete(only_holds.targets[:, 0], bars)).all()


def test_ensemble_decides_every_few_bars_from_the_end_of_the_first_window(
    market: MarketData, explained: Explained
) -> None:
    bars = [_bar(market, d) for d in explained.decisions]

    assert bars == list(range(WINDOW - 1, market.n_bars, EVERY))
    assert np.isnan(np.delete(explained.targets[:, 0], bars)).all()


def test_ensemble_when_strong_drift_and_low_noise_then_mostly_long() -> None:
    n_bars = 400
    steps = 0.002 + 0.005 * np.random.default_rng(7).standard_normal(n_bars)
    close = 100 * np.exp(np.cumsum(steps))[:, None]
    times = np.datetime64("2020-01-01", "ns") + np.arange(n_bars) * np.timedelta64(1, "D")
    rising = MarketData(("UP",), times, close, close, close, close, np.ones_like(close))

    decisions = EnsembleStrategy(**CHEAP).explain(rising.history()).decisions
    acting = [d for d in decisions if d.details["action"] != "hold"]

    assert len(acting) >= len(decisions) / 2
    assert sum(d.target > 0 for d in acting) >= 0.9 * len(acting)
    # Bars every calendar day: a year is 365 of them.
    vol_annual = acting[0].details["vol_bar"] * math.sqrt(365)
    assert acting[0].details["vol_annual"] == pytest.approx(vol_annual, rel=1e-12)


def test_ensemble_when_calibrate_false_then_confidence_is_raw(only_holds: Explained) -> None:
    assert all(d.confidence == d.details["raw_confidence"] for d in only_holds.decisions)


def test_ensemble_when_few_outcomes_known_then_confidence_stays_raw(
    strategy: EnsembleStrategy, market: MarketData, explained: Explained
) -> None:
    bars = [_bar(market, d) for d in explained.decisions]
    # An outcome is known once its horizon has passed, and only if that is inside the data.
    resolved = [b + strategy.horizon for b in bars if b + strategy.horizon < market.n_bars]
    known = [sum(r <= bar for r in resolved) for bar in bars]
    early = [d for d, n in zip(explained.decisions, known, strict=True) if n < MIN_OUTCOMES]
    later = [d for d, n in zip(explained.decisions, known, strict=True) if n >= MIN_OUTCOMES]

    assert early
    assert later
    for decision in early:
        assert decision.confidence == pytest.approx(decision.details["raw_confidence"], abs=1e-12)
    assert any(abs(d.confidence - d.details["raw_confidence"]) > 1e-6 for d in later)


# --- the live decider --------------------------------------------------------------------


class _Broken:
    """A forecaster that never manages to forecast."""

    name: ClassVar[str] = "broken"

    def min_history(self) -> int:
        return 1

    def fit(self, series: Series) -> None:
        pass

    def forecast(self, series: Series, horizon: int) -> Forecast:
        raise ForecastError("broken: no forecast today")


class _Fixed:
    """A forecaster with the same opinion whatever the data: +1% a bar, sd 2% a bar."""

    name: ClassVar[str] = "fixed"

    def min_history(self) -> int:
        return 1

    def fit(self, series: Series) -> None:
        pass

    def forecast(self, series: Series, horizon: int) -> Forecast:
        steps = np.arange(1, horizon + 1, dtype=np.float64)
        return Forecast.normal(0.01 * steps, 0.02 * np.sqrt(steps))


FIT_AT, N_DECISIONS = 200, 14


@pytest.fixture(scope="module")
def series(market: MarketData) -> Series:
    return Series("SP500", np.log(market.close[:, 0]), market.times)


@pytest.fixture(scope="module")
def decided(series: Series) -> list[Decision]:
    """One decision a bar after a refit at bar ``FIT_AT - 1``."""
    decider = EnsembleDecider(EnsembleStrategy(**CHEAP))
    assert decider.refit(series.upto(FIT_AT)) == []
    return [decider.decide(series.upto(FIT_AT + k)) for k in range(N_DECISIONS)]


def _crps(y: float, mean: float, sd: float) -> float:
    """Closed-form CRPS of N(mean, sd) at ``y`` (Gneiting and Raftery, 2007)."""
    z = (y - mean) / sd
    return sd * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi))


def test_decider_when_outcomes_arrive_then_weights_learn_only_from_known_ones(
    series: Series, decided: list[Decision]
) -> None:
    h, names = 5, list(CHEAP_NAMES)
    score = np.zeros(len(names))
    learned: set[int] = set()
    for k, decision in enumerate(decided):
        t = FIT_AT - 1 + k
        for j in range(k):
            origin = FIT_AT - 1 + j
            if origin + h <= t and j not in learned:  # its outcome bar has arrived
                learned.add(j)
                voted = decided[j].details["models"]
                outcome = series.values[origin + h] - series.values[origin]
                crps = np.array([_crps(outcome, voted[n]["mean"], voted[n]["sd"]) for n in names])
                score = DISCOUNT * score + crps / crps.mean()
        expected = np.exp(-ETA * (score - score.min()))
        expected /= expected.sum()

        assert [w for _, w in decision.votes] == pytest.approx(expected.tolist(), rel=1e-9)

    first = [decision.votes for decision in decided[:h]]
    assert first == [tuple((name, 1 / 3) for name in names)] * h
    assert decided[h].votes != decided[h - 1].votes


def test_decider_when_deciding_then_mean_and_sd_are_the_weighted_mixture(
    series: Series, decided: list[Decision]
) -> None:
    h = 5
    models = {name: make_forecaster(name, window=WINDOW, max_horizon=h) for name in CHEAP_NAMES}
    for model in models.values():
        model.fit(series.upto(FIT_AT))
    for k, decision in enumerate(decided):
        forecasts = [model.forecast(series.upto(FIT_AT + k), h) for model in models.values()]
        means = np.array([f.mean[-1] for f in forecasts])
        sds = np.array([f.sd[-1] for f in forecasts])
        weights = np.array([dict(decision.votes)[name] for name in models])

        mix_mean, mix_sd = combine(means[:, None], sds[:, None], weights[None, :])

        assert decision.details["mean"] == pytest.approx(mix_mean[0], rel=1e-9)
        assert decision.details["sd"] == pytest.approx(mix_sd[0], rel=1e-9)
        assert decision.details["vol_bar"] == pytest.approx(forecasts[-1].sd[0], rel=1e-9)


def test_decider_when_a_model_cannot_forecast_then_left_out_and_rest_renormalized(
    series: Series,
) -> None:
    decider = EnsembleDecider(EnsembleStrategy(**CHEAP), extra=[_Broken(), _Fixed()])
    decider.refit(series.upto(FIT_AT))

    decision = decider.decide(series.upto(FIT_AT))

    assert decider.names == ["naive", "drift", "garch", "broken", "fixed"]
    assert dict(decision.votes) == pytest.approx({n: 1 / 4 for n in (*CHEAP_NAMES, "fixed")})
    assert "broken" not in decision.details["models"]
    assert not re.search(r"broken \d", decision.rationale)  # no vote, only why it has none
    assert decision.rationale.endswith(
        "%). The broken voter failed (no_forecast: broken: no forecast today); the other "
        "models decided."
    )
    assert decision.details["llm_failure"] == {
        "voter": "broken",
        "reason": "no_forecast",
        "brief": "broken: no forecast today",
    }
    voted = decision.details["models"]
    means = np.array([voted[name]["mean"] for name in voted])
    sds = np.array([voted[name]["sd"] for name in voted])
    mix_mean, mix_sd = combine(means[:, None], sds[:, None], np.full((1, 4), 0.25))
    assert voted["fixed"]["mean"] == pytest.approx(0.05)
    assert decision.details["mean"] == pytest.approx(mix_mean[0], rel=1e-12)
    assert decision.details["sd"] == pytest.approx(mix_sd[0], rel=1e-12)


def test_decider_when_no_model_can_forecast_then_no_decision(series: Series) -> None:
    decider = EnsembleDecider(EnsembleStrategy(**{**CHEAP, "models": "garch"}), extra=[_Broken()])
    # garch cannot be fitted on prices that never move (it is tried again at each bar) and
    # broken never forecasts: no decision there, as the batch run makes none.
    flat = Series("SP500", np.full(FIT_AT, series.values[0]), series.times[:FIT_AT])

    assert decider.refit(flat) == ["garch"]
    assert decider.decide(flat) is None
    assert decider.decide(series.upto(FIT_AT + 1)) is not None  # garch fitted at the next bar


def test_decider_when_refit_on_the_strategy_schedule_then_same_decisions_as_strategy(
    market: MarketData, series: Series
) -> None:
    # No garch: the one-bar volatility then comes from the mixture of one-bar forecasts, and
    # auto_ets's one-bar mean is not its five-bar mean over five.
    params = {**CHEAP, "models": "naive,drift,auto_ets", "every": 1, "calibrate": False}
    strategy = EnsembleStrategy(**params)
    n_bars = 230
    batch = strategy.explain(market.select(0, n_bars).history()).decisions
    decider = EnsembleDecider(strategy)
    live = []
    for bar in range(WINDOW - 1, n_bars):
        if (bar - WINDOW + 1) % strategy.refit_every == 0:
            decider.refit(series.upto(bar + 1))
        live.append(decider.decide(series.upto(bar + 1)))

    assert len(live) == len(batch) == n_bars - WINDOW + 1
    for made, replayed in zip(batch, live, strict=True):
        assert replayed.time == made.time
        assert replayed.votes == made.votes
        assert replayed.details == made.details
        assert replayed.rationale == made.rationale
        np.testing.assert_array_equal(replayed.target, made.target)


def test_workers_when_inside_a_pools_worker_then_one_whatever_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A pool in each worker of a pool would multiply the processes past any cap.
    import importlib
    from pathlib import Path

    from ffe.compute import LocalExecutor, in_order

    monkeypatch.syspath_prepend(str(Path(__file__).parents[2] / "support"))
    work = importlib.import_module("executorwork")
    inside = in_order(LocalExecutor(2).map(work.ensemble_pool, range(2), 8), 2)

    assert all(count > 0 for count in inside)  # decided, without a pool of its own
    with pytest.raises(RuntimeError, match="pool was started"):  # outside one, 8 is a pool
        work.ensemble_pool(8, 0)


@pytest.mark.parametrize("combiner", ["hedge", "leader", "equal"])
def test_stepper_when_deciding_every_few_bars_with_recalibration_then_the_batch_decisions(
    market: MarketData, combiner: str
) -> None:
    """The agent's stepper, bar by bar, against the batch run at settings the equivalence
    above leaves out: decisions every 4 bars, the weights fed at every bar, the confidence
    recalibrated (from 20 outcomes on), for each combiner."""
    from ffe.agent.stepper import EnsembleStepper
    from ffe.domain.market import History

    params = {**CHEAP, "every": EVERY, "min_outcomes": MIN_OUTCOMES, "combiner": combiner}
    batch = EnsembleStrategy(**params).explain(market.history()).decisions
    stepper = EnsembleStepper(EnsembleStrategy(**params))
    live = []
    for length in range(WINDOW, market.n_bars + 1):
        live.extend(stepper.step(History(market, length))[1])

    assert len(batch) == math.ceil((market.n_bars - WINDOW + 1) / EVERY)
    recalibrated = [d.details["confidence_use"]["candidate"] for d in batch]
    assert any(c != d.details["prob_profit"] for c, d in zip(recalibrated, batch, strict=True))
    assert [(d.time, d.votes, d.confidence) for d in live] == [
        (d.time, d.votes, d.confidence) for d in batch
    ]
    assert [d.details for d in live] == [d.details for d in batch]
    if combiner == "leader":  # all the weight on one model once outcomes are known
        assert all(max(w for _, w in d.votes) == 1.0 for d in batch[5:])


def test_ensemble_when_combiner_unknown_then_strategy_error_names_the_choices() -> None:
    with pytest.raises(StrategyError, match="unknown combiner 'best': use one of hedge"):
        EnsembleStrategy(**CHEAP, combiner="best")


def test_decider_when_restored_from_another_combiner_then_refused(series: Series) -> None:
    hedged = EnsembleDecider(EnsembleStrategy(**CHEAP))
    hedged.refit(series.upto(FIT_AT))
    hedged.decide(series.upto(FIT_AT))
    leader = EnsembleDecider(EnsembleStrategy(**CHEAP, combiner="leader"))

    with pytest.raises(StrategyError, match="saved with combiner 'hedge', not 'leader'"):
        leader.restore(hedged.state())
