"""Every place that states a trading default agrees with ``ffe.domain.defaults``: the settings
(as ``ffe config show --json`` prints them), the pipeline's configs, the command line's help,
the dashboard's form, docs/configuration.md and the README's example config. The API's answer
is checked in tests/integration/api/test_run_defaults.py."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ffe.agent.config import AgentConfig
from ffe.backtest.engine import BacktestConfig
from ffe.cli.app import app
from ffe.cli.backtest import CASH, COMMISSION, SLIPPAGE
from ffe.domain.defaults import DEFAULTS, WHOLE_UNITS, lot_for

ROOT = Path(__file__).resolve().parents[3]
BACKTEST = ("cash", "commission", "fixed_commission", "slippage_bps", "lot_size")
RISK = ("max_position_pct", "max_gross_leverage", "max_drawdown")


def _expected(section: str) -> dict[str, float | None]:
    names = BACKTEST if section == "backtest" else RISK
    return {name: getattr(DEFAULTS, name) for name in names}


@pytest.fixture
def no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No config file and no FFE settings from the environment of the run."""
    for name in list(os.environ):
        if name.upper().startswith("FFE__") or name.upper() == "FFE_CONFIG_DIR":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_when_chosen_then_costs_are_not_zero_and_a_drawdown_halt_is_on() -> None:
    assert DEFAULTS.commission > 0
    assert DEFAULTS.slippage_bps > 0
    assert 0 < DEFAULTS.lot_size < WHOLE_UNITS
    assert DEFAULTS.max_drawdown is not None


def test_config_show_json_when_nothing_set_then_backtest_and_risk_are_the_defaults(
    no_config: None,
) -> None:
    result = CliRunner().invoke(app, ["config", "show", "--json"])

    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    for section in ("backtest", "risk"):
        assert {k: shown[section][k] for k in _expected(section)} == _expected(section)
    assert shown["backtest"]["commission"] == DEFAULTS.commission


def test_pipeline_configs_when_not_given_then_the_defaults() -> None:
    backtest, agent = BacktestConfig(), AgentConfig()

    for config in (backtest, agent):
        assert (config.cash, config.lot_size) == (DEFAULTS.cash, DEFAULTS.lot_size)
    assert backtest.fill.commission == DEFAULTS.commission
    assert backtest.fill.slippage_bps == DEFAULTS.slippage_bps


def test_cli_cost_options_when_help_then_each_states_the_default() -> None:
    # None on the command line means the setting, whose default the help states.
    for option, value in ((CASH, DEFAULTS.cash), (COMMISSION, DEFAULTS.commission)):
        assert option.default is None
        assert f"default {value:g}]" in str(option.help)
    assert f"default {DEFAULTS.slippage_bps:g}]" in str(SLIPPAGE.help)


def test_dashboard_backtest_form_when_rendered_then_no_number_of_its_own() -> None:
    template = (ROOT / "src/ffe/web/templates/backtests.html").read_text(encoding="utf-8")
    script = (ROOT / "src/ffe/web/static/js/pages/backtests.js").read_text(encoding="utf-8")

    for name in ("cash", "commission", "slippage_bps"):
        [tag] = re.findall(rf'<input name="{name}"[^>]*>', template)
        assert "value=" not in tag, tag
    assert 'getJson("/backtests/defaults")' in script


def test_configuration_doc_when_read_then_its_table_states_the_defaults() -> None:
    text = (ROOT / "docs/configuration.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `((?:backtest|risk)\.\w+)` \| ([^|]+?) \|", text, re.M))

    for section in ("backtest", "risk"):
        for name, value in _expected(section).items():
            assert float(rows[f"{section}.{name}"]) == value, name


def test_readme_example_config_when_read_then_backtest_and_risk_are_the_defaults() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    [block] = re.findall(r"```yaml\n# config\.yaml\n(.*?)```", text, re.S)
    example = yaml.safe_load(block)

    for section in ("backtest", "risk"):
        stated = example[section]
        expected = {k: v for k, v in _expected(section).items() if k in stated}
        assert {k: stated[k] for k in expected} == expected
    assert set(example["backtest"]) >= {"cash", "commission", "slippage_bps", "lot_size"}


def test_lot_for_when_whole_units_only_then_at_least_one_unit() -> None:
    assert lot_for(DEFAULTS.lot_size, whole=True) == WHOLE_UNITS
    assert lot_for(5.0, whole=True) == 5.0
    assert lot_for(DEFAULTS.lot_size, whole=False) == DEFAULTS.lot_size


def test_cli_backtest_when_nothing_given_then_fractional_sizes_and_commission_paid(
    no_config: None,
) -> None:
    args = ["backtest", "run", "--synthetic", "1", "--bars", "300", "--json", "--no-record"]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    sizes = [abs(trade["size"]) for trade in data["trades"]]
    assert sizes
    assert all(size != round(size) for size in sizes)  # not whole units
    assert data["stats"]["commissions"] > 0
