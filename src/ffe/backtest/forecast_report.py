"""The HTML report of ``ffe forecast bench``: scores per horizon, skill against the random
walk, and how the ensemble's weights moved over time."""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np

from ffe.backtest.html import figure_html, header, page, section
from ffe.forecast.evaluate import BEST, ENSEMBLE, EQUAL, LEADER, BenchResult, Score
from ffe.forecast.models import BASELINE

_COLUMNS = (
    "Model|n|MASE|CRPS (bp)|Coverage 80%|Coverage 95%|DM vs random walk|p-value"
    "|DM CRPS vs ensemble|p-value|DM SE vs ensemble|p-value"
)


def render_forecast_report(result: BenchResult) -> str:
    title = f"Forecast benchmark: {result.symbol}"
    subtitle = (
        f"Rolling origins {result.first_origin} to {result.last_origin}; every model refitted "
        f"on the last {result.window} bars every {result.refit_every} bars and scored only on "
        "bars after each origin."
    )
    sections = [section("Skill against the random walk", figure_html(_figure(result)))]
    for horizon in sorted({score.horizon for score in result.scores}):
        rows = [score for score in result.scores if score.horizon == horizon]
        sections.append(section(f"{horizon} bar(s) ahead", _table(rows)))
    sections.append(
        section(
            "How to read this",
            "<p>CRPS skill is 1 minus the model's mean CRPS over the random walk's: above 0 "
            "is better than the random walk. The Diebold-Mariano test compares squared "
            "errors with the random walk's; a negative statistic with p below 0.05 is "
            "significant skill. The last four columns compare each row with the ensemble, on "
            "CRPS and on squared error (SE): a negative statistic means smaller losses than the "
            f"ensemble's, a positive one larger. <b>{escape(ENSEMBLE)}</b> learns its weights "
            "only from "
            f"outcomes known at the time; <b>{escape(EQUAL)}</b> averages the models; "
            f"<b>{escape(LEADER)}</b> follows the model with the best CRPS so far; "
            f"<b>{escape(BEST)}</b> is the model with the best CRPS over the whole sample, "
            "picked knowing the future.</p>",
        )
    )
    body = header(title, subtitle, {}) + "".join(sections)
    return page(title, body)


def _figure(result: BenchResult) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    horizons = sorted(result.weights)
    figure = make_subplots(
        rows=2,
        cols=1,
        subplot_titles=(
            "CRPS skill over the random walk (higher is better)",
            f"Ensemble weights over time ({horizons[-1]} bar(s) ahead)",
        ),
        vertical_spacing=0.12,
    )
    for horizon in horizons:
        rows = [s for s in result.scores if s.horizon == horizon]
        baseline = next(s.crps for s in rows if s.model == BASELINE)
        names = [s.model for s in rows if s.model != BASELINE]
        skill = [1 - s.crps / baseline for s in rows if s.model != BASELINE]
        figure.add_trace(go.Bar(name=f"h={horizon}", x=names, y=skill), row=1, col=1)
    weights = result.weights[horizons[-1]]
    times = result.times.astype("datetime64[ms]").astype(object)
    stride = max(1, len(times) // 1500)
    for k, model in enumerate(result.models):
        figure.add_trace(
            go.Scatter(
                x=times[::stride],
                y=np.round(weights[::stride, k], 4),
                name=model,
                stackgroup="weights",
                mode="lines",
                line={"width": 0.5},
            ),
            row=2,
            col=1,
        )
    figure.update_layout(template="plotly_dark", height=760, barmode="group")
    figure.update_yaxes(tickformat=".1%", row=1, col=1)
    figure.update_yaxes(tickformat=".0%", range=[0, 1], row=2, col=1)
    return figure


def _table(rows: list[Score]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in _COLUMNS.split("|"))
    body = []
    for s in rows:
        name = s.model + (f" ({s.note})" if s.note else "")
        cells = (
            escape(name),
            f"{s.n:,}",
            f"{s.mase:.3f}",
            f"{s.crps * 1e4:.2f}",
            f"{s.coverage_80:.1%}",
            f"{s.coverage_95:.1%}",
            _stat(s.dm_statistic),
            _p(s.dm_p_value),
            _stat(s.dm_crps_vs_ensemble),
            _p(s.dm_crps_vs_ensemble_p),
            _stat(s.dm_se_vs_ensemble),
            _p(s.dm_se_vs_ensemble_p),
        )
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _stat(value: float | None) -> str:
    return "" if value is None else f"{value:+.2f}"


def _p(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"
