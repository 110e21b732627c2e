"""The HTML report of a study: the best parameters with their out-of-sample value beside the
holdout's, the caveats (deflated Sharpe ratio, an edge warning), and Optuna's own plots:
optimization history, parameter importance, slices, contours and the segment-by-segment
values pruning compared. One self-contained file, plotly.js inline once."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from html import escape
from typing import TYPE_CHECKING, Any

from ffe.backtest.html import figures_html, header, page, section

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)


def render_tune_report(study: optuna.Study) -> str:
    """A full HTML page for ``study``, as its storage holds it."""
    from ffe.tune.storage import RESULT_ATTR, SETUP_ATTR

    setup = dict(study.user_attrs.get(SETUP_ATTR, {}))
    result = dict(study.user_attrs.get(RESULT_ATTR, {}))
    title = f"{setup.get('strategy', 'study')} tuning: {study.study_name}"
    subtitle = (
        f"{result.get('trials', len(study.trials))} trials by {setup.get('metric', 'value')} "
        f"over the walk-forward's out-of-sample bars ({setup.get('walk_forward', '')})"
    )
    shown = {
        k: setup[k] for k in ("sampler", "pruner", "seed", "batch_size", "holdout") if k in setup
    }
    source = setup.get("strategy_file")
    if isinstance(source, dict):  # a strategy from a file: which text was tuned
        shown["strategy file"] = f"{source.get('path')}:{source.get('class')}"
        shown["sha256"] = source.get("sha256")
    body = header(title, subtitle, shown) + section("Best trial", findings_html(result))
    plots = _plots(study)
    for (heading, _), html in zip(
        plots, figures_html([f for _, f in plots], "ffe-tune"), strict=True
    ):
        body += section(heading, html)
    return page(title, body)


def findings_html(result: Mapping[str, Any]) -> str:
    """The best trial, its holdout score, and the caveats, as HTML."""
    best = result.get("best")
    if not best:
        return '<p class="note">No trial finished with a value yet.</p>'
    metric = str(result.get("metric", "value"))
    rows = [
        ("parameters", ", ".join(f"{k}={v}" for k, v in best["params"].items())),
        (f"{metric}, out of sample (tuning)", _number(best.get("value"))),
    ]
    holdout = result.get("holdout")
    holdout_text = "no holdout kept" if not holdout else _number(holdout.get("value"))
    rows.append((f"{metric}, holdout (never seen by a trial)", holdout_text))
    counts = result.get("counts", {})
    rows.append(("trials", ", ".join(f"{n} {state}" for state, n in counts.items())))
    items = "".join(f"<div><dt>{escape(k)}</dt><dd>{escape(v)}</dd></div>" for k, v in rows)
    return f'<dl class="stats">{items}</dl>' + "".join(
        f'<p class="note">{escape(note)}</p>' for note in caveats(result)
    )


def caveats(result: Mapping[str, Any]) -> list[str]:
    """What a reader must know before trusting the best trial, as sentences."""
    notes = []
    for name in result.get("edges", []):
        notes.append(
            f"warning: the best {name} sits on the edge of its range; the best may lie "
            "beyond it: widen the range and tune again"
        )
    deflated = result.get("deflated_sharpe")
    if deflated and deflated.get("probability") is not None:
        notes.append(
            f"deflated Sharpe ratio: {deflated['probability']:.0%} probability that the best "
            f"trial's true Sharpe ratio is above zero, after picking the best of "
            f"{deflated['n_trials']} trials (its Sharpe ratio "
            f"{_number(deflated.get('sharpe_annualised'))} against "
            f"{_number(deflated.get('expected_max_sharpe_annualised'))} expected from the best "
            "of that many unskilled trials; annualised)"
        )
    return notes


def _plots(study: optuna.Study) -> list[tuple[str, Any]]:
    """Optuna's figures that this study has the trials for, each with its heading."""
    from optuna import visualization as vis

    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not complete:
        return []
    names = sorted(complete[0].params)
    wanted: list[tuple[str, Any]] = [
        ("Optimization history", lambda: vis.plot_optimization_history(study)),
        ("Values segment by segment (what pruning compared)", lambda: _intermediate(study)),
        ("Slices: the value against each parameter", lambda: vis.plot_slice(study)),
    ]
    if len(names) >= 2 and len(complete) >= 2:
        wanted.insert(1, ("Parameter importance", lambda: _importances(study)))
        wanted.append(("Contours", lambda: vis.plot_contour(study, params=names[:2])))
    plots = []
    for heading, make in wanted:
        try:
            plots.append((heading, make()))
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # too few trials for it
            log.info("no %s plot for study %s: %s", heading, study.study_name, exc)
    return plots


def _importances(study: optuna.Study) -> Any:
    from optuna import importance, visualization

    # Seeded, so the same study draws the same bars.
    evaluator = importance.FanovaImportanceEvaluator(seed=0)
    return visualization.plot_param_importances(study, evaluator=evaluator)


def _intermediate(study: optuna.Study) -> Any:
    from optuna import visualization

    return visualization.plot_intermediate_values(study)


def _number(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.4f}"
    return "—"
