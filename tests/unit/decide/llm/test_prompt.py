"""Point-in-time prompts: only bars up to the origin, and no clue to the period when anonymized."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ffe.decide.llm.debate import advocate_prompt, judge_prompt
from ffe.decide.llm.prompt import describe_series, single_prompt
from ffe.decide.llm.schema import LlmView
from ffe.forecast.base import Series

YEAR = re.compile(r"(?<!\d)(19|20)\d\d(?!\d)")


def _text(messages) -> str:
    return "\n".join(m["content"] for m in messages)


@pytest.mark.parametrize("anonymize", [True, False])
def test_prompt_when_bars_after_origin_change_then_prompt_unchanged(make_series, anonymize):
    full = make_series(300)
    poisoned = Series(full.symbol, full.values.copy(), full.times)
    poisoned.values[200:] = np.log(1e9)  # the future, poisoned

    before = single_prompt(full.upto(200), 5, anonymize=anonymize)
    after = single_prompt(poisoned.upto(200), 5, anonymize=anonymize)

    assert before == after


@pytest.mark.parametrize("anonymize", [True, False])
def test_prompt_when_origin_bar_changes_then_prompt_changes(make_series, anonymize):
    full = make_series(300)
    moved = Series(full.symbol, full.values.copy(), full.times)
    moved.values[199] += 0.05

    assert single_prompt(full.upto(200), 5, anonymize=anonymize) != single_prompt(
        moved.upto(200), 5, anonymize=anonymize
    )


def test_prompt_when_anonymized_then_neither_symbol_nor_year_nor_price_level(make_series):
    series = make_series(300, symbol="SP500", start="2008-09-01")
    last_price = f"{np.exp(series.values[-1]):.2f}"

    text = _text(single_prompt(series, 5, anonymize=True))

    assert "SP500" not in text
    assert YEAR.search(text) is None
    assert last_price not in text
    assert "ASSET" in text
    assert "t-0: 100.00" in text
    assert "t-9:" in text


def test_prompt_when_not_anonymized_then_symbol_dates_and_prices(make_series):
    series = make_series(300, symbol="SP500", start="2008-09-01")

    text = _text(single_prompt(series, 5, anonymize=False))

    assert "SP500" in text
    assert np.datetime_as_string(series.times[-1], unit="D") in text
    assert f"{np.exp(series.values[-1]):.2f}" in text


def test_describe_series_when_history_long_then_every_lookback_and_volatility(make_series):
    series = make_series(300)

    text = describe_series(series, 5)

    for lookback in ("over 1 bar:", "over 5 bars:", "over 21 bars:", "over 63 bars:", "252 bars:"):
        assert lookback in text
    assert "last 21 bars:" in text
    assert "last 63 bars:" in text
    assert "bars of 1 day" in text


def test_describe_series_when_change_over_5_bars_then_exact_percentage(make_series):
    series = make_series(40)
    expected = np.expm1(series.values[-1] - series.values[-6]) * 100

    text = describe_series(series, 5)

    assert f"over 5 bars: {expected:+.2f}%" in text


def test_describe_series_when_history_short_then_only_available_lookbacks(make_series):
    text = describe_series(make_series(10), 3)

    assert "over 5 bars:" in text
    assert "over 21 bars:" not in text
    assert "per bar" in text


def test_describe_series_when_leading_nans_then_ignored(make_series):
    series = make_series(50)
    series.values[:5] = np.nan

    text = describe_series(series, 5)

    assert "nan" not in text.lower()


def test_describe_series_when_fewer_than_two_prices_then_value_error(make_series):
    with pytest.raises(ValueError, match="at least 2 prices"):
        describe_series(make_series(1), 5)


def test_debate_prompts_when_anonymized_then_no_symbol_and_judge_sees_both_views(make_series):
    series = make_series(300, symbol="NASDAQ", start="2000-01-03")
    facts = describe_series(series, 5, anonymize=True)
    bull = LlmView(
        direction="up", expected_return_pct=2, uncertainty_pct=3, confidence=0.7, rationale="b1"
    )
    bear = LlmView(
        direction="down", expected_return_pct=-2, uncertainty_pct=3, confidence=0.6, rationale="b2"
    )

    texts = [
        _text(advocate_prompt("bull", facts, 5)),
        _text(advocate_prompt("bear", facts, 5)),
        _text(judge_prompt(facts, 5, bull, bear)),
    ]

    assert all("NASDAQ" not in t and YEAR.search(t) is None for t in texts)
    assert "going up" in texts[0]
    assert "going down" in texts[1]
    assert '"rationale":"b1"' in texts[2]
    assert '"rationale":"b2"' in texts[2]
