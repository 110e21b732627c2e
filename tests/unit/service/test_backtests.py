"""The backtest use cases: a typed request in, a typed outcome out, progress counted in the
use case's own unit, and bad input refused before any bar loads."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ffe import bootstrap
from ffe.backtest.walkforward import WalkForwardSpec
from ffe.bootstrap import Components
from ffe.config import load_settings
from ffe.domain.errors import ConfigError, DataError
from ffe.service import backtests
from ffe.service.backtests import BacktestRequest, SweepRequest
from ffe.service.markets import MarketSpec
from ffe.service.progress import ReportProgress

SYNTHETIC = MarketSpec(synthetic=1, bars=600, seed=3)
PARAMS = {"fast": 5, "slow": 20}


@pytest.fixture
def components(monkeypatch: pytest.MonkeyPatch) -> Components:
    monkeypatch.setenv("FFE__COMPUTE__MAX_WORKERS", "1")  # every point in this process
    return bootstrap.components(load_settings())


def _counted() -> tuple[list[tuple[int, int]], ReportProgress]:
    seen: list[tuple[int, int]] = []
    return seen, lambda done, total: seen.append((done, total))


def test_run_when_not_recorded_then_result_and_one_run_of_progress(components: Components) -> None:
    seen, progress = _counted()
    request = BacktestRequest("sma_cross", PARAMS, SYNTHETIC, record=False)

    outcome = backtests.run(components, request, progress)

    assert outcome.result.params == PARAMS
    assert outcome.result.market.n_bars == 600
    assert outcome.result.stats.n_trades > 0
    assert (outcome.walked, outcome.run_id, outcome.unrecorded) == (None, None, None)
    assert seen == [(0, 1), (1, 1)]


def test_run_when_costs_given_then_they_override_the_settings(components: Components) -> None:
    request = BacktestRequest(
        "sma_cross", PARAMS, SYNTHETIC, backtests.Costs(cash=5_000, fill="close"), record=False
    )

    config = backtests.run(components, request).result.config

    assert config.cash == 5_000
    assert config.fill.at == "close"


def test_run_when_walk_forward_then_segments_counted_and_joined_result(
    components: Components,
) -> None:
    seen, progress = _counted()
    spec = WalkForwardSpec(train=200, test=100)
    request = BacktestRequest("sma_cross", PARAMS, SYNTHETIC, walk_forward=spec, record=False)

    outcome = backtests.run(components, request, progress)

    assert outcome.walked is not None
    assert outcome.result is outcome.walked.backtest
    segments = len(outcome.walked.segments)
    assert segments == len(spec.windows(600))
    assert seen == [(done, segments) for done in range(segments + 1)]


def test_run_when_walk_forward_too_long_then_config_error_before_progress(
    components: Components,
) -> None:
    seen, progress = _counted()
    spec = WalkForwardSpec(train=500, test=300)
    request = BacktestRequest("sma_cross", PARAMS, SYNTHETIC, walk_forward=spec, record=False)

    with pytest.raises(ConfigError):
        backtests.run(components, request, progress)

    assert seen == []


def test_run_when_unknown_symbol_then_data_error_naming_it(components: Components) -> None:
    seen, progress = _counted()
    request = BacktestRequest("sma_cross", PARAMS, MarketSpec(("NOPE",)), record=False)

    with pytest.raises(DataError, match="NOPE"):
        backtests.run(components, request, progress)

    assert seen == []


def test_run_when_recorded_under_an_id_twice_then_one_run(components: Components) -> None:
    run_id = "ef" * 16
    request = BacktestRequest(
        "sma_cross", PARAMS, SYNTHETIC, run_id=run_id, extra_config={"source": "test"}
    )

    first = backtests.run(components, request)
    again = backtests.run(components, request)

    assert first.run_id == again.run_id == run_id
    assert first.unrecorded is None
    runs, config, trades = asyncio.run(_stored(components, run_id))
    assert runs == 1
    assert config["source"] == "test"
    assert trades == len(first.result.trades)  # the second try added none


async def _stored(components: Components, run_id: str) -> tuple[int, dict[str, Any], int]:
    """How many runs the journal holds, and run ``run_id``'s config and number of trades."""
    from sqlalchemy import func, select

    from ffe.runs.journal import load_backtest
    from ffe.store.models import Run

    db = await components.open_journal()
    try:
        async with db.session() as session:
            runs = int(await session.scalar(select(func.count()).select_from(Run)) or 0)
        stored = await load_backtest(db, run_id)
        return runs, stored.run.config, len(stored.trades)
    finally:
        await db.dispose()


def test_run_when_journal_unreachable_then_result_kept_and_error_handed_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Port 9 (discard) has nothing listening on loopback: the journal is down.
    monkeypatch.setenv("FFE__DATABASE__URL", "postgresql://ffe@127.0.0.1:9/ffe")
    request = BacktestRequest("sma_cross", PARAMS, SYNTHETIC)

    outcome = backtests.run(bootstrap.components(load_settings()), request)

    assert outcome.result.stats.n_trades > 0
    assert outcome.run_id is None
    assert outcome.unrecorded is not None
    assert "the run was not recorded" in str(outcome.unrecorded)


def test_sweep_when_grid_then_every_point_ranked_best_first(components: Components) -> None:
    seen, progress = _counted()
    request = SweepRequest(
        "sma_cross", {"fast": [3, 5, 10], "slow": [20, 40]}, "annual_volatility", SYNTHETIC
    )

    outcome = backtests.sweep(components, request, progress)

    assert (outcome.direction, outcome.names) == ("minimize", ("fast", "slow"))
    volatility = [row.stats["annual_volatility"] for row in outcome.ranked]
    assert len(volatility) == 6
    assert len(set(volatility)) > 1
    assert volatility == sorted(volatility)
    assert outcome.best is outcome.ranked[0]
    assert outcome.failed == ()
    assert outcome.source == {}  # a built-in: no file to record
    assert seen == [(done, 6) for done in range(7)]


def test_sweep_when_a_point_cannot_run_then_it_fails_last_and_the_rest_rank(
    components: Components,
) -> None:
    request = SweepRequest("sma_cross", {"fast": [5, 50], "slow": [20]}, "sharpe", SYNTHETIC)

    outcome = backtests.sweep(components, request)

    assert [row.params for row in outcome.ranked] == [{"fast": 5, "slow": 20}]
    assert [row.params for row in outcome.failed] == [{"fast": 50, "slow": 20}]
    assert outcome.rows[-1].error
    assert outcome.best is not None
    assert outcome.best.params == {"fast": 5, "slow": 20}


@pytest.mark.parametrize(
    ("metric", "message"),
    [("n_trades", "cannot rank by 'n_trades'"), ("shrp", "cannot rank by 'shrp'")],
)
def test_sweep_when_metric_unrankable_then_refused_before_bars_load(
    components: Components, metric: str, message: str
) -> None:
    seen, progress = _counted()
    # An unknown symbol too: the metric is refused before the bars are looked for.
    request = SweepRequest("sma_cross", {"fast": [5]}, metric, MarketSpec(("NOPE",)))

    with pytest.raises(ConfigError, match=message):
        backtests.sweep(components, request, progress)

    assert seen == []


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({}, "the grid has no parameters"),
        ({"fast": [5], "slow": []}, "grid parameter 'slow' has no values"),
        ({"fast": list(range(400)), "slow": list(range(400))}, "160,000 combinations"),
    ],
)
def test_sweep_when_bad_grid_then_config_error_before_bars_load(
    components: Components, grid: dict[str, list[int]], message: str
) -> None:
    request = SweepRequest("sma_cross", grid, "sharpe", MarketSpec(("NOPE",)))

    with pytest.raises(ConfigError, match=message):
        backtests.sweep(components, request)


def test_sweep_when_unknown_symbol_then_data_error_naming_it(components: Components) -> None:
    request = SweepRequest("sma_cross", {"fast": [5]}, "sharpe", MarketSpec(("NOPE",)))

    with pytest.raises(DataError, match="NOPE"):
        backtests.sweep(components, request)
