"""``ffe config show`` end to end, through the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ffe.cli.app import app

runner = CliRunner()
PASSWORD = "hunter2-s3cret"


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Read config files from an empty directory and no FFE settings from the environment."""
    for name in list(os.environ):
        if name.upper().startswith("FFE__"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FFE_CONFIG_DIR", str(tmp_path))
    return tmp_path


def test_config_show_when_default_then_yaml_with_every_section_and_key():
    result = runner.invoke(app, ["config", "show"])

    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.stdout)
    assert list(shown) == [
        "data",
        "backtest",
        "risk",
        "logging",
        "database",
        "llm",
        "agent",
        "kalshi",
        "notify",
        "api",
        "jobs",
        "redis",
        "compute",
        "precompute",
        "tune",
        "strategies",
    ]
    assert shown["strategies"] == {"files": []}  # strategy files the operator offers
    assert shown["tune"] == {"storage_url": None, "batch_size": 8, "max_trials": 500}
    assert shown["precompute"]["symbols"] == ["SP500"]
    assert shown["precompute"]["in_api"] is False  # `ffe run` turns it on for itself
    assert shown["jobs"]["time_limit_s"]["sweep"] > 0
    assert shown["compute"]["max_workers"] is None  # the machine's cores
    assert shown["backtest"]["cash"] == 10_000.0
    assert shown["backtest"]["fill_at"] == "next_open"
    assert "max_drawdown" in shown["risk"]
    assert shown["database"]["url"].startswith("sqlite:///")
    assert shown["database"]["url"].endswith("/ffe.db")


def test_config_show_when_config_yaml_then_its_values_shown(config_dir):
    (config_dir / "config.yaml").write_text("backtest:\n  cash: 1234.5\n", encoding="utf-8")

    result = runner.invoke(app, ["config", "show"])

    assert result.exit_code == 0, result.output
    assert "cash: 1234.5" in result.stdout


def test_config_show_when_json_then_parses_with_same_values(monkeypatch):
    monkeypatch.setenv("FFE__RISK__MAX_DRAWDOWN", "0.3")

    result = runner.invoke(app, ["config", "show", "--json"])

    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["risk"]["max_drawdown"] == 0.3
    assert shown["logging"] == {"level": "WARNING", "json": False}


@pytest.mark.parametrize("as_json", [False, True], ids=["yaml", "json"])
def test_config_show_when_database_password_in_env_then_never_printed(monkeypatch, as_json):
    monkeypatch.setenv("FFE__DATABASE__URL", f"postgresql://app:{PASSWORD}@db.example/ffe")

    result = runner.invoke(app, ["config", "show", *(["--json"] if as_json else [])])

    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert "postgresql://app:***@db.example/ffe" in result.stdout


def test_config_show_when_unknown_key_in_config_yaml_then_exit_2_naming_key(config_dir):
    (config_dir / "config.yaml").write_text("backtest:\n  cahs: 5\n", encoding="utf-8")

    result = runner.invoke(app, ["config", "show"])

    assert result.exit_code == 2
    assert "backtest.cahs: unknown key" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""
