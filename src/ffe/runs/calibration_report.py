"""A reliability diagram of a run's decisions as a self-contained HTML page."""

from __future__ import annotations

from html import escape
from typing import Any

from ffe.backtest.html import figure_html, header, page, section
from ffe.runs.calibration import Calibration


def render_calibration_report(result: Calibration) -> str:
    title = f"Calibration of run {result.run_id}"
    subtitle = (
        f"{result.strategy}: {result.resolved:,} of {result.decisions:,} decisions resolved. "
        f"ECE {result.stated.ece:.3f}"
        + ("" if result.raw is None else f" (before recalibration {result.raw.ece:.3f})")
    )
    skill = f"<p>{escape(result.stated_skill.verdict())}.</p>"
    if result.raw_skill is not None:
        skill += f"<p>Before recalibration: {escape(result.raw_skill.verdict())}.</p>"
    body = (
        header(title, subtitle, {})
        + section("Reliability", figure_html(_figure(result)))
        + section("Skill", skill)
    )
    return page(title, body)


def _figure(result: Calibration) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure()
    figure.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], name="perfect", line={"dash": "dash", "color": "#999"})
    )
    tables = [("used by the decisions", result.stated)]
    if result.raw is not None:
        tables.append(("models' own", result.raw))
    for name, table in tables:
        rows = [r for r in table.rows if r.count > 0]
        figure.add_trace(
            go.Scatter(
                x=[r.mean_confidence for r in rows],
                y=[r.hit_rate for r in rows],
                mode="lines+markers",
                name=f"{name} (ECE {table.ece:.3f})",
                text=[f"{r.count} decisions" for r in rows],
                marker={"size": [6 + min(r.count, 400) ** 0.5 for r in rows]},
            )
        )
    figure.update_layout(
        template="plotly_dark",
        height=560,
        xaxis={"title": "confidence", "tickformat": ".0%", "range": [0, 1]},
        yaxis={"title": "realized hit rate", "tickformat": ".0%", "range": [0, 1]},
    )
    return figure
