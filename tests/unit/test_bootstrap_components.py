"""What the composition root hands out instead of settings: option values read from them,
objects built from them on request, and all of it able to cross into a job's process."""

from __future__ import annotations

import pickle
from typing import Any

from pydantic import SecretStr

from ffe import bootstrap
from ffe.config import Settings


def _settings(**sections: Any) -> Settings:
    return Settings(**sections)


def test_components_when_pickled_then_equal_and_build_from_the_same_settings():
    made = bootstrap.components(
        _settings(compute={"max_workers": 3}, backtest={"cash": 1234.0, "commission": 0.01})
    )

    again = pickle.loads(pickle.dumps(made))

    assert again == made
    assert again.backtest_config().cash == 1234.0
    assert again.backtest_config().fill.commission == 0.01
    assert again.strategy_params("ensemble", {}) == {"workers": 3}


def test_backtest_config_when_overrides_given_then_they_win_and_none_keeps_the_setting():
    made = bootstrap.components(_settings(backtest={"cash": 500.0, "slippage_bps": 2.0}))

    config = made.backtest_config(cash=None, commission=0.002, slippage_bps=None)

    assert config.cash == 500.0
    assert config.fill.commission == 0.002
    assert config.fill.slippage_bps == 2.0


def test_risk_engine_when_asked_twice_then_two_engines():
    made = bootstrap.components(_settings(risk={"max_drawdown": 0.2}))

    first, second = made.risk_engine(), made.risk_engine()

    assert first is not second  # an engine keeps state: no use case shares one


def test_api_options_when_built_then_the_settings_values_and_no_secret_in_repr():
    settings = _settings(
        api={
            "secret_key": "s3cr3t-value-that-must-not-show",
            "cors_origins": ["https://desk.example"],
            "environment": "production",
        },
        agent={"account": "main", "broker": "oanda"},
        jobs={"in_api": True},
    )

    options = bootstrap.components(settings).api

    assert options.cors_origins == ("https://desk.example",)
    assert options.production
    assert options.account == "main"
    assert options.mode == "live"
    assert options.run_jobs
    assert options.data_dir == settings.data.dir
    assert "s3cr3t" not in repr(options)
    assert "s3cr3t" not in repr(bootstrap.components(settings))


def test_worker_options_when_time_limits_set_then_one_per_kind():
    options = bootstrap.worker_options(_settings(jobs={"time_limit_s": {"sweep": 42.0}}))

    assert options.time_limit_s("sweep") == 42.0
    assert options.time_limit_s("backtest") == Settings().jobs.time_limit_s.backtest


def test_wake_options_when_redis_url_blank_then_nothing_to_wake_on_redis():
    blank = bootstrap.worker_options(_settings(redis={"url": "  "})).wake
    set_ = bootstrap.worker_options(_settings(redis={"url": "redis://r:6379/0"})).wake

    assert not blank.redis  # make_backends treats a blank URL as none: in process
    assert set_.redis


def test_wake_options_when_listen_url_set_then_kept_secret():
    listen = "postgresql://ffe:pw@db/ffe"
    wake = bootstrap.worker_options(_settings(database={"listen_url": listen})).wake

    assert wake.listen_url == SecretStr(listen)
    assert "pw@" not in repr(wake)
    assert wake.journal_url.get_secret_value().startswith("sqlite")


def test_queue_policy_when_built_then_the_jobs_settings():
    policy = bootstrap.queue_policy(_settings(jobs={"max_attempts": 5, "stale_s": 90.0}))

    assert (policy.max_attempts, policy.stale_s) == (5, 90.0)


def test_precompute_options_when_built_then_the_precompute_settings():
    options = bootstrap.components(
        _settings(precompute={"symbols": ["SP500", "NASDAQ"], "interval_s": 60.0})
    ).precompute

    assert options.symbols == ("SP500", "NASDAQ")
    assert options.interval_s == 60.0
    assert not options.in_api
