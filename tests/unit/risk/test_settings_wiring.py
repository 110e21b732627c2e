"""The ``risk`` settings wired by the composition root: the live rules when configured, the
broker's circuit breaker, and limits that are refused with the key's name."""

from __future__ import annotations

import os

import pytest

from ffe import bootstrap
from ffe.config import load_settings
from ffe.domain.defaults import DEFAULTS
from ffe.domain.errors import ConfigError
from ffe.risk.rules import LossCooldown, MaxDailyLoss, MaxTradesPerDay, MinConfidence, StaleData


@pytest.fixture(autouse=True)
def _no_config(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No config files and no FFE settings from the environment of the run."""
    for name in list(os.environ):
        if name.upper().startswith("FFE__RISK") or name.upper() == "FFE_CONFIG_DIR":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_risk_engine_when_defaults_then_emergency_halt_position_limits_and_drawdown_halt():
    engine = bootstrap.risk_engine(load_settings())

    names = [check.name for check in engine.checks]

    assert names == ["emergency_halt", "max_position_pct", "max_gross_leverage", "max_drawdown"]
    assert engine.max_drawdown == DEFAULTS.max_drawdown


def test_risk_engine_when_live_rules_configured_then_each_check_built_with_its_limit():
    settings = load_settings(
        risk={
            "max_daily_loss": 0.03,
            "max_trades_per_day": 20,
            "min_confidence": 0.6,
            "max_bar_age_s": 90,
            "loss_cooldown_bars": 4,
            "max_drawdown": 0.2,
        }
    )

    checks = bootstrap.risk_engine(settings).checks

    assert [c.name for c in checks] == [
        "emergency_halt",
        "max_daily_loss",
        "stale_data",
        "max_trades_per_day",
        "loss_cooldown",
        "min_confidence",
        "max_position_pct",
        "max_gross_leverage",
        "max_drawdown",
    ]
    assert checks[1] == MaxDailyLoss(0.03)
    assert checks[2] == StaleData(90.0)
    assert checks[3] == MaxTradesPerDay(20)
    assert checks[4] == LossCooldown(4)
    assert checks[5] == MinConfidence(0.6)


def test_risk_engine_when_env_sets_daily_loss_then_check_present(monkeypatch):
    monkeypatch.setenv("FFE__RISK__MAX_DAILY_LOSS", "0.05")

    checks = bootstrap.risk_engine(load_settings()).checks

    assert MaxDailyLoss(0.05) in checks


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_daily_loss", 1.5),
        ("max_daily_loss", 0),
        ("max_trades_per_day", 0),
        ("min_confidence", -0.1),
        ("max_bar_age_s", 0),
        ("loss_cooldown_bars", 0),
        ("broker_failures", 0),
        ("broker_window_s", 0),
        ("broker_cooldown_s", -1),
    ],
)
def test_load_settings_when_live_limit_out_of_range_then_error_names_key(key, value):
    with pytest.raises(ConfigError, match=f"risk.{key}"):
        load_settings(risk={key: value})


def test_broker_breaker_when_defaults_then_opens_after_five_failures():
    breaker = bootstrap.broker_breaker(load_settings())

    for _ in range(4):
        breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()

    assert breaker.state == "open"
    assert breaker.retry_in() == pytest.approx(30.0, abs=1.0)


def test_broker_breaker_when_configured_then_threshold_and_cooldown_used():
    settings = load_settings(risk={"broker_failures": 2, "broker_cooldown_s": 120})
    breaker = bootstrap.broker_breaker(settings, name="paper")

    breaker.record_failure()
    breaker.record_failure()

    assert breaker.state == "open"
    assert breaker.name == "paper"
    assert breaker.retry_in() == pytest.approx(120.0, abs=1.0)
