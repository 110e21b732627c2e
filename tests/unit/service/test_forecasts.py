"""The forecast benchmark use case: a typed request in, the scores out, progress counted in
forecasts, and bad input refused before any bar loads."""

from __future__ import annotations

import pytest

from ffe import bootstrap
from ffe.bootstrap import Components
from ffe.config import load_settings
from ffe.domain.errors import ConfigError, DataError
from ffe.forecast.base import ForecastError
from ffe.service.forecasts import BenchRequest, bench

# Two years of the bundled S&P 500: a few hundred origins, quick to fit.
SMALL = BenchRequest(
    "SP500", (1, 5), "drift", window=250, refit_every=63, start="2015-01-01", end="2016-12-31"
)


@pytest.fixture
def components(monkeypatch: pytest.MonkeyPatch) -> Components:
    monkeypatch.setenv("FFE__COMPUTE__MAX_WORKERS", "1")  # every block in this process
    return bootstrap.components(load_settings())


def test_bench_when_one_model_then_scored_with_the_random_walk_at_each_horizon(
    components: Components,
) -> None:
    seen: list[tuple[int, int]] = []

    result = bench(components, SMALL, lambda done, total: seen.append((done, total)))

    assert result.symbol == "SP500"
    assert (result.window, result.refit_every) == (250, 63)
    scored = {(score.horizon, score.model) for score in result.scores}
    assert {(1, "naive"), (1, "drift"), (5, "naive"), (5, "drift")} <= scored
    total = seen[0][1]
    assert seen[0] == (0, total)
    assert seen[-1] == (total, total)
    assert total > 2 * 200  # two models, about 250 origins each
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_bench_when_unknown_model_then_refused_before_bars_load(components: Components) -> None:
    request = BenchRequest("NOPE", models="drift,nope")

    with pytest.raises(ForecastError, match="unknown model nope"):
        bench(components, request)


def test_bench_when_unknown_symbol_then_data_error_naming_it(components: Components) -> None:
    with pytest.raises(DataError, match="NOPE"):
        bench(components, BenchRequest("NOPE", models="drift"))


def test_bench_when_no_horizon_then_config_error_saying_so(components: Components) -> None:
    with pytest.raises(ConfigError, match="no horizon to score"):
        bench(components, BenchRequest("SP500", (), "drift"))


def test_bench_when_too_few_bars_for_the_window_then_config_error(components: Components) -> None:
    request = BenchRequest("SP500", (1,), "drift", window=1000, start="2016-01-01")

    with pytest.raises(ConfigError, match="not enough for a 1000-bar window"):
        bench(components, request)
