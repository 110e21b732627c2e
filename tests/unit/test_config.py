"""Settings precedence, validation and masking."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ffe.config import load_settings, masked
from ffe.domain.defaults import DEFAULTS
from ffe.domain.errors import ConfigError


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory and no FFE settings from the environment of the run."""
    for name in list(os.environ):
        if name.upper().startswith("FFE__") or name.upper() == "FFE_CONFIG_DIR":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_settings_when_no_files_nor_env_then_defaults():
    settings = load_settings()

    assert settings.backtest.cash == DEFAULTS.cash
    assert settings.backtest.fill_at == "next_open"
    assert settings.risk.max_drawdown == DEFAULTS.max_drawdown
    assert settings.database.url is None
    assert settings.database_url() == f"sqlite:///{(settings.data.dir / 'ffe.db').as_posix()}"


def test_load_settings_when_config_yaml_then_overrides_defaults(config_dir):
    write(config_dir, "config.yaml", "backtest:\n  cash: 500\n")

    settings = load_settings()

    assert settings.backtest.cash == 500.0
    assert settings.backtest.commission == DEFAULTS.commission  # other keys keep defaults


def test_load_settings_when_local_yaml_then_overrides_config_yaml_key_by_key(config_dir):
    write(config_dir, "config.yaml", "backtest:\n  cash: 500\n  commission: 0.01\n")
    write(config_dir, "config.local.yaml", "backtest:\n  cash: 700\n")

    settings = load_settings()

    assert settings.backtest.cash == 700.0
    assert settings.backtest.commission == 0.01


def test_load_settings_when_env_then_overrides_both_files(config_dir, monkeypatch):
    write(config_dir, "config.yaml", "backtest:\n  cash: 500\n  fill_at: close\n")
    write(config_dir, "config.local.yaml", "backtest:\n  cash: 700\n")
    monkeypatch.setenv("FFE__BACKTEST__CASH", "900")

    settings = load_settings()

    assert settings.backtest.cash == 900.0
    assert settings.backtest.fill_at == "close"


def test_load_settings_when_env_key_lower_case_then_still_read(monkeypatch):
    monkeypatch.setenv("FFE__risk__max_drawdown", "0.25")

    assert load_settings().risk.max_drawdown == 0.25


def test_load_settings_when_alias_json_in_yaml_then_logging_json_format(config_dir):
    write(config_dir, "config.yaml", "logging:\n  level: INFO\n  json: true\n")

    settings = load_settings()

    assert settings.logging.level == "INFO"
    assert settings.logging.json_format is True


def test_load_settings_when_config_dir_set_then_files_read_there_not_cwd(
    config_dir, tmp_path_factory, monkeypatch
):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    write(config_dir, "config.yaml", "backtest:\n  cash: 500\n")
    write(elsewhere, "config.yaml", "backtest:\n  cash: 600\n")
    monkeypatch.setenv("FFE_CONFIG_DIR", str(elsewhere))

    assert load_settings().backtest.cash == 600.0


def test_load_settings_when_empty_yaml_then_defaults(config_dir):
    write(config_dir, "config.yaml", "")

    assert load_settings().backtest.cash == 10_000.0


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("backtest:\n  cahs: 5\n", "backtest.cahs"),
        ("bogus_section:\n  x: 1\n", "bogus_section"),
    ],
)
def test_load_settings_when_unknown_key_in_yaml_then_error_names_key(config_dir, text, key):
    write(config_dir, "config.yaml", text)

    with pytest.raises(ConfigError, match=rf"{key}: unknown key"):
        load_settings()


def test_load_settings_when_unknown_key_in_env_then_error_names_key(monkeypatch):
    monkeypatch.setenv("FFE__BACKTEST__CAHS", "5")

    with pytest.raises(ConfigError, match=r"backtest\.cahs: unknown key"):
        load_settings()


def test_load_settings_when_unknown_section_in_env_then_error_names_key(monkeypatch):
    monkeypatch.setenv("FFE__BACKTST__CASH", "5")

    with pytest.raises(ConfigError, match="backtst"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        ("FFE__BACKTEST__CASH", "-5", "backtest.cash"),
        ("FFE__BACKTEST__FILL_AT", "bogus", "backtest.fill_at"),
        ("FFE__RISK__MAX_DRAWDOWN", "1.5", "risk.max_drawdown"),
    ],
)
def test_load_settings_when_invalid_env_value_then_error_names_key_and_value(
    monkeypatch, name, value, key
):
    monkeypatch.setenv(name, value)

    with pytest.raises(ConfigError, match=rf"{key}: .*\(got '{value}'\)"):
        load_settings()


def test_load_settings_when_invalid_yaml_value_then_error_names_key(config_dir):
    write(config_dir, "config.local.yaml", "backtest:\n  cash: -5\n")

    with pytest.raises(ConfigError, match=r"backtest\.cash: Input should be greater than 0"):
        load_settings()


def test_load_settings_when_yaml_unparsable_then_error_names_file(config_dir):
    write(config_dir, "config.local.yaml", "backtest: [1\n")

    with pytest.raises(ConfigError, match=r"config\.local\.yaml: not valid YAML"):
        load_settings()


def test_load_settings_when_yaml_top_level_not_mapping_then_error_names_file(config_dir):
    write(config_dir, "config.yaml", "- backtest\n- risk\n")

    with pytest.raises(ConfigError, match=r"config\.yaml: the top level must be a mapping"):
        load_settings()


def test_load_settings_when_env_sets_whole_section_to_non_json_then_config_error(monkeypatch):
    monkeypatch.setenv("FFE__DATABASE", "postgresql://app:hunter2@db/ffe")

    with pytest.raises(ConfigError, match="database"):
        load_settings()


def test_load_settings_when_database_section_is_a_url_then_error_hides_password(config_dir):
    write(config_dir, "config.yaml", "database: postgresql://app:hunter2@db/ffe\n")

    with pytest.raises(ConfigError, match="database") as caught:
        load_settings()

    assert "hunter2" not in str(caught.value)


def test_masked_when_database_url_has_password_then_password_hidden_rest_kept(monkeypatch):
    monkeypatch.setenv("FFE__DATABASE__URL", "postgresql://app:p@ss:w0rd@db.example:5432/ffe")

    shown = masked(load_settings())

    assert shown["database"]["url"] == "postgresql://app:***@db.example:5432/ffe"


@pytest.mark.parametrize(
    "url",
    ["sqlite:///ffe.db", "postgresql://app@db.example/ffe", "postgresql://db.example/ffe"],
)
def test_masked_when_url_has_no_password_then_unchanged(monkeypatch, url):
    monkeypatch.setenv("FFE__DATABASE__URL", url)

    assert masked(load_settings())["database"]["url"] == url


def test_masked_when_password_in_query_string_then_hidden(monkeypatch):
    monkeypatch.setenv(
        "FFE__DATABASE__URL", "postgresql://db.example/ffe?user=app&password=hunter2"
    )

    assert "hunter2" not in str(masked(load_settings()))


def test_masked_when_alpha_vantage_key_set_then_hidden(monkeypatch):
    monkeypatch.setenv("FFE__DATA__ALPHA_VANTAGE_KEY", "SECRETKEY123")

    shown = masked(load_settings())

    assert shown["data"]["alpha_vantage_key"] == "***"
    assert "SECRETKEY123" not in str(shown)


def test_masked_when_no_alpha_vantage_key_then_none_and_other_values_plain():
    shown = masked(load_settings())

    assert shown["data"]["alpha_vantage_key"] is None
    assert shown["backtest"]["cash"] == 10_000.0
    assert shown["logging"]["json"] is False  # dumped under its alias


def test_load_settings_when_old_analysis_keys_in_yaml_then_read_as_precompute(config_dir):
    write(
        config_dir, "config.yaml", "api:\n  analysis_symbols: [NASDAQ]\n  analysis_interval_s: 60\n"
    )

    settings = load_settings()

    assert settings.precompute.symbols == ["NASDAQ"]
    assert settings.precompute.interval_s == 60.0
    assert settings.api.analysis_symbols is None  # one place to read them from


def test_load_settings_when_old_and_new_analysis_keys_then_new_ones_win(config_dir, monkeypatch):
    write(config_dir, "config.yaml", "precompute:\n  symbols: [SP500, NASDAQ]\n")
    monkeypatch.setenv("FFE__API__ANALYSIS_SYMBOLS", "[]")
    monkeypatch.setenv("FFE__API__ANALYSIS_INTERVAL_S", "30")

    settings = load_settings()

    assert settings.precompute.symbols == ["SP500", "NASDAQ"]
    assert settings.precompute.interval_s == 30.0  # not set under its new name: the old one


def test_load_settings_when_precompute_health_port_out_of_range_then_error_names_key(
    monkeypatch,
):
    monkeypatch.setenv("FFE__PRECOMPUTE__HEALTH_PORT", "70000")

    with pytest.raises(ConfigError, match=r"precompute\.health_port"):
        load_settings()


def test_load_settings_when_jobs_stale_s_under_three_heartbeats_then_error_says_why(
    monkeypatch,
):
    monkeypatch.setenv("FFE__JOBS__HEARTBEAT_S", "5")
    monkeypatch.setenv("FFE__JOBS__STALE_S", "10")

    with pytest.raises(ConfigError, match=r"jobs\.stale_s must be at least 3 heartbeats \(15 s"):
        load_settings()


def test_masked_when_listen_url_has_password_then_hidden(monkeypatch):
    monkeypatch.setenv("FFE__DATABASE__LISTEN_URL", "postgresql://ffe:s3cret@db:5432/ffe")

    shown = masked(load_settings())

    assert shown["database"]["listen_url"] == "postgresql://ffe:***@db:5432/ffe"


def test_load_settings_when_executor_from_env_then_ray_with_its_address(monkeypatch):
    monkeypatch.setenv("FFE__COMPUTE__EXECUTOR", "ray")
    monkeypatch.setenv("FFE__COMPUTE__RAY_ADDRESS", "ray-head:6380")

    compute = load_settings().compute

    assert (compute.executor, compute.ray_address) == ("ray", "ray-head:6380")


def test_load_settings_when_executor_unknown_then_error_names_key_and_choices(monkeypatch):
    monkeypatch.setenv("FFE__COMPUTE__EXECUTOR", "dask")

    with pytest.raises(ConfigError, match=r"compute\.executor.*'local' or 'ray'"):
        load_settings()


def test_load_settings_when_command_line_overrides_compute_then_other_keys_kept(monkeypatch):
    monkeypatch.setenv("FFE__COMPUTE__MAX_WORKERS", "3")

    compute = load_settings(compute={"executor": "ray", "ray_address": "head:6380"}).compute

    assert (compute.max_workers, compute.executor, compute.ray_address) == (3, "ray", "head:6380")


@pytest.mark.parametrize("text", ["none", "null", "None"])
def test_load_settings_when_env_says_none_then_the_risk_limit_is_off(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv("FFE__RISK__MAX_DRAWDOWN", text)

    assert load_settings().risk.max_drawdown is None


def test_load_settings_when_env_limit_is_not_a_number_then_error_names_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FFE__RISK__MAX_DRAWDOWN", "off")

    with pytest.raises(ConfigError, match=r"risk\.max_drawdown"):
        load_settings()
