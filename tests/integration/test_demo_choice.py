"""The demo's strategy (``ffe.domain.defaults.DEMO``, what `make run` trades) is what its sweep
picks on the bars before the replay: the choice never saw the replayed period."""

from __future__ import annotations

from pathlib import Path

import pytest

from ffe import bootstrap
from ffe.config import Settings
from ffe.domain.defaults import DEMO
from ffe.service import backtests
from ffe.service.markets import MarketSpec


def test_demo_choice_when_swept_before_the_replay_then_the_same_parameters(
    tmp_path: Path,
) -> None:
    components = bootstrap.components(Settings(data={"dir": tmp_path}))
    market = MarketSpec((DEMO.symbol,), start=DEMO.chosen_from, end=DEMO.chosen_to)
    request = backtests.SweepRequest(DEMO.strategy, dict(DEMO.grid), DEMO.metric, market, workers=1)
    outcome = backtests.sweep(components, request)
    assert outcome.best.params == dict(DEMO.params)
    assert outcome.best.stats["end"] < DEMO.replay_start  # nothing of the replay was used


def test_demo_sweep_command_when_printed_then_names_the_window() -> None:
    command = DEMO.sweep_command()
    assert f"--end {DEMO.chosen_to}" in command
    assert "--param fast=10,20,30,40,50" in command
    assert DEMO.chosen_to < DEMO.replay_start


@pytest.mark.parametrize("arg", DEMO.param_args())
def test_demo_param_args_when_made_then_key_equals_value(arg: str) -> None:
    key, _, value = arg.partition("=")
    assert dict(DEMO.params)[key] == int(value)
