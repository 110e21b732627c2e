from __future__ import annotations

import re
from pathlib import Path

from ffe.backtest.html import with_inline_library
from ffe.backtest.walkforward import WalkForwardSpec
from ffe.compute import LocalExecutor
from ffe.data import SyntheticMarket
from ffe.tune.report import caveats, render_tune_report
from ffe.tune.space import parse_space
from ffe.tune.storage import load_study
from ffe.tune.study import TuneSpec, run_study

# A figure's call names its div; plotly.js's own help text has "Plotly.newPlot(gd, ..." too.
FIGURE_CALL = re.compile(r'Plotly\.newPlot\(\s*"ffe-tune-\d+"')
PLOTLY_JS = "plotly.js v"  # the banner at the top of the embedded library


def test_render_when_study_then_best_holdout_caveats_and_optunas_plots_once_each(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{(tmp_path / 'tune.db').as_posix()}"
    spec = TuneSpec(
        "sma_cross", parse_space(["fast=2..10", "slow=12..40"]), WalkForwardSpec(200, 100),
        trials=12, batch_size=4,
    )  # fmt: skip
    market = SyntheticMarket(1, 700, seed=11).to_market()
    run_study(market, spec, LocalExecutor(1), url, "r")

    html = render_tune_report(load_study(url, "r"))

    for heading in ("Best trial", "Optimization history", "Parameter importance", "Slices",
                    "Contours", "segment by segment"):  # fmt: skip
        assert heading in html
    assert "holdout (never seen by a trial)" in html
    assert "deflated Sharpe ratio" in html
    assert len(FIGURE_CALL.findall(html)) == 5
    assert html.count(PLOTLY_JS) == 0  # loaded from beside the report, or inlined once:
    assert with_inline_library(html).count(PLOTLY_JS) == 1


def test_render_when_no_trial_finished_then_says_so_without_plots(tmp_path: Path) -> None:
    url = f"sqlite:///{(tmp_path / 'tune.db').as_posix()}"
    spec = TuneSpec(
        "sma_cross", parse_space(["fast=30..40", "slow=12..20"]), WalkForwardSpec(200, 100),
        trials=2, batch_size=2,
    )  # fmt: skip
    market = SyntheticMarket(1, 700, seed=11).to_market()
    run_study(market, spec, LocalExecutor(1), url, "none")  # fast > slow: every trial fails

    html = render_tune_report(load_study(url, "none"))

    assert "No trial finished" in html
    assert not FIGURE_CALL.findall(html)


def test_caveats_when_edges_and_deflated_sharpe_then_a_sentence_each() -> None:
    result = {
        "edges": ["fast"],
        "deflated_sharpe": {"probability": 0.42, "n_trials": 200, "sharpe_annualised": 0.9,
                            "expected_max_sharpe_annualised": 0.8},
    }  # fmt: skip

    notes = caveats(result)

    assert notes[0].startswith("warning: the best fast sits on the edge")
    assert "42% probability" in notes[1]
    assert "best of 200 trials" in notes[1]
