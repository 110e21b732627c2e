"""The analysis behind ``/api/v1/analysis/{symbol}``: shape, bands, point in time, the decision
(recomputed here from the models and the policy functions) and the errors that say what to
fix. Expected indicator values are computed by hand or with plain numpy."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import numpy as np
import pytest

from ffe.agent.stepper import EnsembleStepper
from ffe.data.synthetic import SyntheticMarket
from ffe.decide.analysis import DEFAULT_MODELS, analyse
from ffe.decide.ensemble import EnsembleStrategy
from ffe.decide.indicators import rsi
from ffe.decide.policy import DecisionPolicy, call, make_decision
from ffe.decide.trust import Trust
from ffe.domain import DataError, MarketData, StrategyError
from ffe.domain.market import History
from ffe.forecast.base import LEVELS, Series
from ffe.forecast.ensemble import combine
from ffe.forecast.models import make_forecaster

SYMBOL = "SYN0000"
N_BARS, WINDOW, HORIZON = 320, 200, 5


def _market(close: np.ndarray, start: str = "2021-01-04") -> MarketData:
    """Business-day bars of one symbol ``X`` (no weekend bars, as equities have)."""
    closes = np.asarray(close, dtype=np.float64)[:, None]
    times = np.busday_offset(np.datetime64(start, "D"), np.arange(len(closes)))
    return MarketData(
        ("X",),
        times.astype("datetime64[ns]"),
        closes,
        closes * 1.01,
        closes * 0.99,
        closes,
        np.ones(closes.shape),
    )


@pytest.fixture(scope="module")
def walk() -> MarketData:
    """A random walk with GARCH volatility on business days."""
    return SyntheticMarket(1, N_BARS, seed=7).to_market()


@pytest.fixture(scope="module")
def result(walk: MarketData) -> dict[str, Any]:
    return analyse(walk, SYMBOL, window=WINDOW)


# --- shape -------------------------------------------------------------------------------


def test_analyse_when_random_walk_then_every_section_is_there_and_json_ready(
    walk: MarketData, result: dict[str, Any]
) -> None:
    assert set(result) == {
        "symbol",
        "as_of",
        "price",
        "timeframe",
        "forecast",
        "indicators",
        "decision",
        "errors",
    }
    assert result["symbol"] == SYMBOL
    assert result["as_of"] == walk.time_of(N_BARS - 1).isoformat()
    assert result["as_of"].endswith("+00:00")
    assert result["price"] == walk.close[-1, 0]
    assert result["timeframe"] == "1d"
    assert result["errors"] == []
    assert set(result["indicators"]) == {"sma20", "sma50", "rsi14", "vol20", "ret20"}
    assert set(result["decision"]) == {"action", "target", "confidence", "rationale"}
    assert result["decision"]["action"] in ("buy", "sell", "hold")
    assert result["decision"]["rationale"].startswith(f"{SYMBOL}: ")
    # allow_nan=False: NaN or infinity anywhere fails here.
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_analyse_forecast_lists_each_model_with_weights_summing_to_one(
    result: dict[str, Any],
) -> None:
    forecast = result["forecast"]
    models = forecast["models"]

    assert forecast["horizon"] == HORIZON
    assert [model["name"] for model in models] == list(DEFAULT_MODELS)
    assert sum(model["weight"] for model in models) == pytest.approx(1.0)
    assert all(0 < model["weight"] < 1 and math.isfinite(model["mean"]) for model in models)
    # The replayed bars taught the weights something: they are no longer equal.
    assert len({round(model["weight"], 6) for model in models}) > 1


def test_analyse_when_no_feedback_then_equal_weights(walk: MarketData) -> None:
    out = analyse(walk, SYMBOL, window=WINDOW, feedback=0)

    assert [m["weight"] for m in out["forecast"]["models"]] == pytest.approx([0.25] * 4)


def test_analyse_bands_are_ordered_and_widen_with_the_step(result: dict[str, Any]) -> None:
    path = result["forecast"]["path"]

    assert [row["step"] for row in path] == list(range(1, HORIZON + 1))
    for row in path:
        assert row["lower95"] < row["lower80"] < row["mean"] < row["upper80"] < row["upper95"]
    for level in LEVELS:
        widths = [row[f"upper{level}"] - row[f"lower{level}"] for row in path]
        assert all(b > a for a, b in itertools.pairwise(widths))


def test_analyse_path_times_skip_weekends_for_business_day_bars(walk: MarketData) -> None:
    # Cut after the last Friday: the five bars after it run Monday to Friday.
    fridays = [bar for bar in range(N_BARS) if walk.time_of(bar).weekday() == 4]
    cut = fridays[-1] + 1

    out = analyse(walk.select(0, cut), SYMBOL, window=WINDOW, feedback=0)

    days = [row["time"][:10] for row in out["forecast"]["path"]]
    monday = np.datetime64(walk.time_of(cut - 1).date()) + np.timedelta64(3, "D")
    assert days == [str(monday + np.timedelta64(k, "D")) for k in range(5)]


def test_analyse_path_times_step_plainly_when_bars_fall_on_weekends(make_market: Any) -> None:
    # Calendar days, weekends included (as crypto trades).
    rng = np.random.default_rng(1)
    market = make_market(100 * np.exp(np.cumsum(0.01 * rng.standard_normal(150))))

    out = analyse(market, "S0", models=("naive", "drift"), window=100, feedback=0)

    last = np.datetime64(market.time_of(149).replace(tzinfo=None), "s")
    expected = [str(last + np.timedelta64(k, "D")) + "+00:00" for k in range(1, 6)]
    assert [row["time"] for row in out["forecast"]["path"]] == expected


# --- point in time -----------------------------------------------------------------------


def test_analyse_when_bars_after_the_cut_are_poisoned_then_nothing_changes(
    walk: MarketData,
) -> None:
    cut = 280
    close = walk.close.copy()
    close[cut:] *= np.linspace(0.2, 5.0, N_BARS - cut)[:, None]
    poisoned = MarketData(
        walk.symbols, walk.times, walk.open, walk.high * 5, walk.low * 0.2, close, walk.volume
    )
    models = ("naive", "drift", "garch")

    clean = analyse(walk.select(0, cut), SYMBOL, models=models, window=WINDOW, feedback=42)
    dirty = analyse(poisoned.select(0, cut), SYMBOL, models=models, window=WINDOW, feedback=42)

    assert dirty == clean
    assert clean["as_of"] == walk.time_of(cut - 1).isoformat()
    assert clean["price"] == walk.close[cut - 1, 0]


# --- the decision ------------------------------------------------------------------------


def test_analyse_decision_is_what_the_ensemble_policy_functions_give(
    walk: MarketData,
) -> None:
    policy = DecisionPolicy(threshold=0.5, hold="flat")
    out = analyse(walk, SYMBOL, window=WINDOW, policy=policy, feedback=0)

    series = Series(SYMBOL, np.log(walk.close[:, 0]), walk.times)
    forecasts = []
    for name in DEFAULT_MODELS:
        model = make_forecaster(name, window=WINDOW, max_horizon=HORIZON)
        model.fit(series)
        forecasts.append(model.forecast(series, HORIZON))
    means = np.array([f.mean for f in forecasts])
    sds = np.array([f.sd for f in forecasts])
    weights = np.full(4, 0.25)
    mix_mean, mix_sd = combine(means[:, None, :], sds[:, None, :], weights[None, :])
    mu, sd = float(mix_mean[0, -1]), float(mix_sd[0, -1])
    vol_bar = float(sds[-1, 0])  # garch's one-bar sd
    made = call(mu, sd, vol_bar, policy, 252.0)
    expected = make_decision(
        SYMBOL,
        walk.time_of(N_BARS - 1),
        list(DEFAULT_MODELS),
        weights,
        means[:, -1],
        sds[:, -1],
        mu,
        sd,
        vol_bar,
        HORIZON,
        made,
        Trust(made.prob_profit, False, False, made.prob_profit, 0, None, None),
        policy,
    )

    assert out["decision"] == {
        "action": expected.details["action"],
        "target": pytest.approx(expected.target, rel=1e-9),
        "confidence": pytest.approx(expected.confidence, rel=1e-9),
        "rationale": expected.rationale,
    }
    close = walk.close[-1, 0]
    last = out["forecast"]["path"][-1]
    assert last["mean"] == pytest.approx(close * math.exp(mu), rel=1e-9)
    assert last["upper95"] == pytest.approx(close * math.exp(mu + 1.959964 * sd), rel=1e-6)
    assert [m["mean"] for m in out["forecast"]["models"]] == pytest.approx(means[:, -1].tolist())


def test_analyse_decision_with_feedback_is_the_paper_agents_at_the_last_bar() -> None:
    # The agent starts at the end of the first window; 105 bars later (five refits of 21,
    # 21 decisions every 5) is its last bar, as the analysis counts its replay back from it.
    feedback = 105
    market = SyntheticMarket(1, WINDOW + feedback, seed=11).to_market()
    strategy = EnsembleStrategy(models=",".join(DEFAULT_MODELS), window=WINDOW, workers=1)
    stepper = EnsembleStepper(strategy)
    for length in range(WINDOW, market.n_bars + 1):
        _, decisions = stepper.step(History(market, length))
    (agent,) = decisions

    out = analyse(market, SYMBOL, window=WINDOW, feedback=feedback)

    weights = {m["name"]: m["weight"] for m in out["forecast"]["models"]}
    assert weights == pytest.approx(dict(agent.votes), rel=1e-12)
    assert out["decision"]["rationale"] == agent.rationale
    assert out["decision"]["confidence"] == agent.confidence


def test_analyse_when_trending_then_buys_and_targets_more_than_when_flat() -> None:
    rng = np.random.default_rng(3)
    steps = np.arange(N_BARS)
    trend = 100 * np.exp(np.cumsum(0.003 + 0.01 * rng.standard_normal(N_BARS)))
    flat = 100 * np.exp(0.02 * np.sin(steps / 4) + 0.002 * rng.standard_normal(N_BARS))
    policy = DecisionPolicy(hold="flat")

    rising = analyse(_market(trend), "X", window=WINDOW, policy=policy)
    level = analyse(_market(flat), "X", window=WINDOW, policy=policy)

    assert rising["decision"]["action"] == "buy"
    assert level["decision"]["action"] == "hold"
    assert rising["decision"]["target"] > level["decision"]["target"] == 0.0
    assert rising["forecast"]["path"][-1]["mean"] > rising["price"]


# --- models that fail --------------------------------------------------------------------


def test_analyse_when_a_model_fails_then_left_out_with_its_message_and_rest_renormalized() -> None:
    # Constant prices: GARCH's optimizer cannot converge on returns that are all zero.
    out = analyse(_market(np.full(150, 50.0)), "X", window=120)

    assert out["errors"] == ["garch: the optimizer did not converge"]
    models = out["forecast"]["models"]
    assert [m["name"] for m in models] == ["naive", "drift", "auto_ets"]
    assert sum(m["weight"] for m in models) == pytest.approx(1.0)
    assert out["decision"]["action"] == "hold"
    assert "garch" not in out["decision"]["rationale"]


def test_analyse_when_no_model_can_forecast_then_strategy_error_with_the_reasons() -> None:
    with pytest.raises(StrategyError, match="X: no model could forecast: garch: the optimizer"):
        analyse(_market(np.full(150, 50.0)), "X", models=("garch",), window=120)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"models": ("naive", "prophet")}, "unknown model prophet; available: naive"),
        ({"models": ()}, "name each model once"),
        ({"models": ("naive", "naive")}, "name each model once"),
        ({"horizon": 0}, "horizon must be at least 1"),
        ({"feedback": -1}, "feedback must be at least 0"),
    ],
)
def test_analyse_when_parameters_bad_then_strategy_error_says_which(
    walk: MarketData, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(StrategyError, match=message):
        analyse(walk, SYMBOL, **kwargs)


# --- data errors -------------------------------------------------------------------------


def test_analyse_when_symbol_unknown_then_data_error_names_the_ones_there(
    walk: MarketData,
) -> None:
    with pytest.raises(DataError, match=r"'AAPL' is not in this market data \(it has SYN0000\)"):
        analyse(walk, "AAPL")


def test_analyse_when_too_few_bars_then_data_error_says_how_many_needed_and_present() -> None:
    market = _market(np.linspace(100, 110, 60))

    with pytest.raises(DataError) as caught:
        analyse(market, "X")

    message = str(caught.value)
    assert "X: 60 usable bars" in message
    assert "need at least 100" in message
    assert "leave out garch" in message


def test_analyse_when_a_broken_bar_then_only_the_bars_after_it_count() -> None:
    close = np.linspace(100, 110, 200)
    close[150] = 0.0  # history before this bar is not used

    with pytest.raises(DataError, match="X: 49 usable bars"):
        analyse(_market(close), "X")


@pytest.mark.parametrize("last", [math.nan, 0.0, -5.0])
def test_analyse_when_last_close_not_a_positive_price_then_data_error(last: float) -> None:
    close = np.linspace(100, 110, 200)
    close[-1] = last

    with pytest.raises(DataError, match=r"the last close, at 2021-.*, is .*, not a positive price"):
        analyse(_market(close), "X")


def test_analyse_when_market_has_no_bars_then_data_error(walk: MarketData) -> None:
    with pytest.raises(DataError, match="no bars"):
        analyse(walk.select(0, 0), SYMBOL)


# --- indicators --------------------------------------------------------------------------


def test_analyse_indicators_equal_plain_numpy_at_the_last_bar(
    walk: MarketData, result: dict[str, Any]
) -> None:
    close = walk.close[:, 0]
    returns = np.diff(np.log(close[-21:]))

    assert result["indicators"] == {
        "sma20": pytest.approx(close[-20:].mean(), rel=1e-12),
        "sma50": pytest.approx(close[-50:].mean(), rel=1e-12),
        "rsi14": pytest.approx(rsi(close, 14)[-1], rel=1e-12),
        "vol20": pytest.approx(returns.std(ddof=1) * math.sqrt(252), rel=1e-12),
        "ret20": pytest.approx(close[-1] / close[-21] - 1, rel=1e-12),
    }
    assert 0 < result["indicators"]["rsi14"] < 100


def test_analyse_when_history_shorter_than_an_indicator_then_it_is_none() -> None:
    out = analyse(_market(np.linspace(100, 110, 40)), "X", models=("naive",), window=40)

    assert out["indicators"]["sma50"] is None
    assert out["indicators"]["sma20"] == pytest.approx(np.linspace(100, 110, 40)[-20:].mean())


def test_rsi_when_hand_computed_with_wilder_smoothing_then_equal() -> None:
    # Changes +1, -0.5, +1, +0.5, -1, +0.5. Window 3: the first averages are gain 2/3 and
    # loss 1/6 (RSI 80); then avg = (2 * avg + change) / 3: 11/18 and 1/9 (RS 5.5),
    # 11/27 and 11/27 (50), 71/162 and 44/162.
    values = np.array([10, 11, 10.5, 11.5, 12, 11, 11.5])

    out = rsi(values, 3)

    np.testing.assert_array_equal(np.isnan(out), [True] * 3 + [False] * 4)
    np.testing.assert_allclose(out[3:], [80, 100 - 100 / 6.5, 50, 7100 / 115], rtol=1e-12)


def test_rsi_when_prices_only_rise_fall_or_stay_then_100_0_and_50() -> None:
    rising, falling, flat = np.arange(1.0, 30), np.arange(30.0, 1, -1), np.full(30, 7.0)

    assert rsi(rising, 14)[-1] == 100.0
    assert rsi(falling, 14)[-1] == 0.0
    assert rsi(flat, 14)[-1] == 50.0


def test_rsi_columns_start_at_their_own_first_price() -> None:
    values = np.array([10, 11, 10.5, 11.5, 12, 11, 11.5])
    late = np.concatenate([[np.nan, np.nan], values[:-2]])

    out = rsi(np.column_stack([values, late]), 3)

    np.testing.assert_array_equal(out[:, 0], rsi(values, 3))
    np.testing.assert_array_equal(out[2:, 1], rsi(values[:-2], 3))
    assert np.isnan(out[:5, 1]).all()


def test_rsi_when_window_below_one_then_value_error() -> None:
    with pytest.raises(ValueError, match="window must be at least 1"):
        rsi(np.arange(10.0), 0)


def test_stepper_when_resumed_between_refits_then_it_decides_at_once() -> None:
    # A restarted agent (or one resumed after a restore) makes a new stepper whose first bar
    # is past origin 0 and not a refit bar: its models are fitted there, not left unfitted.
    market = SyntheticMarket(1, WINDOW + 30, seed=11).to_market()
    strategy = EnsembleStrategy(models=",".join(DEFAULT_MODELS), window=WINDOW, workers=1)
    resumed = EnsembleStepper(strategy)
    length = WINDOW + 10  # origin 10: a decision bar (every 5), not a refit bar (every 21)

    _, decisions = resumed.step(History(market, length))

    assert len(decisions) == 1
