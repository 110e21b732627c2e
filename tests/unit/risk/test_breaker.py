"""The circuit breaker: closed, open after failures in a window, half-open after a cooldown."""

from __future__ import annotations

import pytest
from tests.support.clock import FakeClock

from ffe.domain.errors import FfeError
from ffe.risk.breaker import CircuitBreaker, CircuitOpenError


def breaker(clock: FakeClock, threshold: int = 3) -> CircuitBreaker:
    return CircuitBreaker(
        failure_threshold=threshold, window_s=10.0, cooldown_s=30.0, clock=clock, name="svc"
    )


def fail(cb: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        cb.record_failure()


def test_breaker_when_new_then_closed_and_allows_calls():
    cb = breaker(FakeClock())

    assert cb.state == "closed"
    assert cb.allow()


def test_breaker_when_failures_below_threshold_then_stays_closed():
    cb = breaker(FakeClock())

    fail(cb, 2)

    assert cb.state == "closed"
    assert cb.allow()


def test_breaker_when_threshold_failures_in_window_then_open_and_refuses():
    cb = breaker(FakeClock())

    fail(cb, 3)

    assert cb.state == "open"
    assert not cb.allow()


def test_breaker_when_failures_spread_beyond_window_then_stays_closed():
    clock = FakeClock()
    cb = breaker(clock)

    for _ in range(5):
        cb.record_failure()
        clock.advance(6.0)  # only two failures are ever within 10 s of each other

    assert cb.state == "closed"


def test_breaker_when_success_between_failures_in_window_then_failures_still_count():
    cb = breaker(FakeClock())

    fail(cb, 2)
    cb.record_success()
    cb.record_failure()

    assert cb.state == "open"


def test_check_when_open_then_circuit_open_error_with_time_to_wait():
    clock = FakeClock()
    cb = breaker(clock)
    fail(cb, 3)
    clock.advance(10.0)

    with pytest.raises(CircuitOpenError, match="svc: circuit open") as caught:
        cb.check()

    assert isinstance(caught.value, FfeError)
    assert caught.value.retry_in_s == pytest.approx(20.0)


def test_breaker_when_cooldown_passed_then_half_open_lets_one_probe_through():
    clock = FakeClock()
    cb = breaker(clock)
    fail(cb, 3)

    clock.advance(30.0)

    assert cb.state == "half_open"
    assert cb.allow()
    assert not cb.allow()  # a second caller waits for the probe's outcome


def test_breaker_when_probe_succeeds_then_closed_and_failures_forgotten():
    clock = FakeClock()
    cb = breaker(clock)
    fail(cb, 3)
    clock.advance(30.0)
    assert cb.allow()

    cb.record_success()
    cb.record_failure()

    assert cb.state == "closed"
    assert cb.allow()


def test_breaker_when_probe_fails_then_open_for_another_cooldown():
    clock = FakeClock()
    cb = breaker(clock)
    fail(cb, 3)
    clock.advance(30.0)
    assert cb.allow()

    cb.record_failure()

    assert cb.state == "open"
    assert not cb.allow()
    clock.advance(29.0)
    assert cb.state == "open"
    clock.advance(1.0)
    assert cb.state == "half_open"


def test_breaker_when_probe_never_reports_then_another_probe_after_cooldown():
    clock = FakeClock()
    cb = breaker(clock)
    fail(cb, 3)
    clock.advance(30.0)
    assert cb.allow()

    clock.advance(30.0)

    assert cb.allow()


def test_retry_in_when_closed_then_zero_and_when_open_then_rest_of_cooldown():
    clock = FakeClock()
    cb = breaker(clock)
    assert cb.retry_in() == 0.0

    fail(cb, 3)
    clock.advance(12.5)

    assert cb.retry_in() == pytest.approx(17.5)


def test_breaker_when_failure_reported_while_open_then_cooldown_not_extended():
    clock = FakeClock()
    cb = breaker(clock)
    fail(cb, 3)
    clock.advance(20.0)

    cb.record_failure()  # a call that started before the breaker opened
    clock.advance(10.0)

    assert cb.state == "half_open"


@pytest.mark.parametrize(
    "options",
    [{"failure_threshold": 0}, {"window_s": 0.0}, {"cooldown_s": -1.0}],
)
def test_breaker_when_bad_options_then_value_error(options):
    with pytest.raises(ValueError, match="must be"):
        CircuitBreaker(**options)
