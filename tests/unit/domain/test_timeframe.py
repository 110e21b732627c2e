"""Parsing bar timeframes."""

from __future__ import annotations

import pytest

from ffe.domain.errors import DataError
from ffe.domain.timeframe import Timeframe


@pytest.mark.parametrize(
    ("text", "count", "unit", "seconds"),
    [
        ("30s", 30, "s", 30),
        ("15m", 15, "m", 900),
        ("4h", 4, "h", 14_400),
        ("1d", 1, "d", 86_400),
        ("1w", 1, "w", 604_800),
        (" 1D ", 1, "d", 86_400),  # surrounding blanks and upper case are forgiven
    ],
)
def test_parse_when_valid_then_count_unit_and_seconds(text, count, unit, seconds):
    timeframe = Timeframe.parse(text)

    assert (timeframe.count, timeframe.unit) == (count, unit)
    assert timeframe.seconds == seconds


def test_str_when_parsed_then_round_trips():
    assert str(Timeframe.parse("15m")) == "15m"


@pytest.mark.parametrize("text", ["", "d", "1", "0d", "1y", "1.5h", "-1d", "1 d", "1dd"])
def test_parse_when_invalid_then_error_quotes_input_and_says_what_to_use(text):
    with pytest.raises(DataError) as caught:
        Timeframe.parse(text)

    message = str(caught.value)
    assert repr(text) in message
    assert "use a count and a unit, like 1d, 4h, 15m" in message


def test_parse_when_upper_case_m_then_refused_not_read_as_minutes():
    with pytest.raises(DataError):
        Timeframe.parse("1M")
