"""Outage: one warning per outage, and Redis tried once per pause while it is down."""

from __future__ import annotations

import logging

import pytest
from tests.support.clock import FakeClock

from ffe.kv import Outage


def test_should_try_when_up_then_always():
    outage = Outage(clock=FakeClock())

    assert [outage.should_try() for _ in range(3)] == [True, True, True]


def test_should_try_when_down_then_once_per_pause():
    clock = FakeClock()
    outage = Outage(retry_after_s=1.0, clock=clock)
    outage.failed(ConnectionError("refused"))

    within_pause = outage.should_try()
    clock.advance(1.0)
    after_pause = [outage.should_try(), outage.should_try()]

    assert not within_pause
    assert after_pause == [True, False]


def test_failed_when_repeated_then_one_warning_until_success(caplog: pytest.LogCaptureFixture):
    outage = Outage(clock=FakeClock())
    caplog.set_level(logging.INFO, logger="ffe.kv.outage")

    for _ in range(5):
        outage.failed(ConnectionError("refused"))
    outage.succeeded()
    outage.failed(ConnectionError("refused again"))

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "refused" in warnings[0].getMessage()
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    assert outage.down
