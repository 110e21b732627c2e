"""The HTML report of a parameter sweep: every run ranked by a metric, and a line chart or
heatmap of the metric over the grid."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from html import escape
from typing import Any

from ffe.backtest.html import SORT_SCRIPT, figure_html, header, page, section
from ffe.backtest.objective import DIRECTIONS, Direction, describe, is_better, rank_key
from ffe.backtest.report import format_value, stat_label


def render_sweep_report(
    *,
    title: str,
    param_names: Sequence[str],
    rows: Sequence[Mapping[str, object]],
    metric: str,
    direction: Direction | None = None,
    source: Mapping[str, Any] | None = None,
) -> str:
    """A full HTML page: every run of a sweep ranked by ``metric`` (best first, the best being
    the largest or the smallest as ``direction`` says), and a chart of the grid. ``source``: a
    file strategy's ``strategy_file`` record (path, class, SHA-256), shown in the header.

    ``direction`` defaults to the metric's own (``ffe.backtest.objective.DIRECTIONS``), and to
    maximize for a score that is not a statistic of ours.
    """
    direction = direction or DIRECTIONS.get(metric, "maximize")
    ranked = sorted(rows, key=lambda row: rank_key(_metric_of(row, metric), direction))
    chart = _sweep_chart(param_names, rows, metric, direction)
    sections = []
    if chart:
        sections.append(section(f"{stat_label(metric)[0]} over the grid", chart))
    table = _sweep_table(param_names, ranked, metric, direction)
    sections.append(section(f"Runs ({len(rows):,})", table))
    named = stat_label(metric)[0]
    subtitle = f"{len(rows):,} runs ranked by {named} ({describe(direction)}), best first"
    shown = {}
    if source:
        shown = {"strategy file": f"{source['path']}:{source['class']}", "sha256": source["sha256"]}
    body = header(title, subtitle, shown) + "".join(sections)
    return page(title, body, script=SORT_SCRIPT)


def _metric_of(row: Mapping[str, object], metric: str) -> float:
    value = row.get(metric)
    if isinstance(value, numbers.Real):
        return float(value)
    return math.nan


def _value_key(value: object) -> tuple[int, float, str]:
    """Sort key for parameter values: numbers numerically, then anything else as text."""
    if isinstance(value, numbers.Real):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _sweep_table(
    param_names: Sequence[str],
    rows: Sequence[Mapping[str, object]],
    metric: str,
    direction: Direction,
) -> str:
    others = [key for row in rows for key in row if key not in param_names and key != metric]
    columns = [*param_names, metric, *dict.fromkeys(others)]
    order = f" data-order={'desc' if direction == 'maximize' else 'asc'}"
    kinds = {name: "param" if name in param_names else stat_label(name)[1] for name in columns}
    head = "".join(
        f'<th{order if name == metric else ""} title="{escape(name)}">'
        f"{escape(_heading(name, kinds))}</th>"
        for name in columns
    )
    body = "".join(
        "<tr>" + "".join(_sweep_cell(row.get(name), kinds[name]) for name in columns) + "</tr>"
        for row in rows
    )
    table = f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    note = '<p class="note">Click a column header to sort by it.</p>'
    return f'<div class="table-wrap">{table}</div>{note}'


def _heading(name: str, kinds: Mapping[str, str]) -> str:
    """A column's header: a parameter as named, a statistic by its readable name."""
    return name if kinds[name] == "param" else stat_label(name)[0]


def _sweep_cell(value: object, kind: str) -> str:
    """A cell: parameters as given, statistics as the backtest report shows them
    (percentages with %, ratios with two decimals, counts whole); the raw number sorts."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
        if math.isnan(number):
            return '<td data-value="">—</td>'
        if kind == "param":
            text = f"{number:,.0f}" if isinstance(value, numbers.Integral) else f"{number:g}"
        else:
            text = format_value(number, kind)
        return f'<td data-value="{number!r}">{escape(text)}</td>'
    text = "" if value is None else str(value)
    return f'<td class="text" data-value="{escape(text)}">{escape(text)}</td>'


def _sweep_chart(
    param_names: Sequence[str],
    rows: Sequence[Mapping[str, object]],
    metric: str,
    direction: Direction,
) -> str:
    if not param_names or not rows:
        return ""
    if len(param_names) == 1:
        return _line_chart(param_names[0], rows, metric, direction)
    if len(param_names) == 2:
        return _heatmap(param_names[0], param_names[1], rows, metric, direction)
    effect = {name: _effect(name, rows, metric, direction) for name in param_names}
    first, second = sorted(param_names, key=lambda name: -effect[name])[:2]
    note = (
        f'<p class="note">{escape(first)} and {escape(second)} change {escape(metric)} the most; '
        f"each cell shows the best {escape(metric)} over the other parameters.</p>"
    )
    return _heatmap(first, second, rows, metric, direction) + note


def _best_by(
    keys: Callable[[Mapping[str, object]], object],
    rows: Iterable[Mapping[str, object]],
    metric: str,
    direction: Direction,
) -> dict[object, float]:
    """The best ``metric`` for each key, NaN where a key has no value of the metric."""
    best: dict[object, float] = {}
    for row in rows:
        key, value = keys(row), _metric_of(row, metric)
        current = best.get(key, math.nan)
        best[key] = value if is_better(value, current, direction) else current
    return best


def _effect(
    name: str, rows: Sequence[Mapping[str, object]], metric: str, direction: Direction
) -> float:
    """How far the best ``metric`` moves across the values of one parameter."""
    best = _best_by(lambda row: row.get(name), rows, metric, direction).values()
    known = [value for value in best if not math.isnan(value)]
    return max(known) - min(known) if known else 0.0


def _line_chart(
    name: str, rows: Sequence[Mapping[str, object]], metric: str, direction: Direction
) -> str:
    import plotly.graph_objects as go

    best = _best_by(lambda row: row.get(name), rows, metric, direction)
    xs = sorted(best, key=_value_key)
    ys = [_or_none(best[x]) for x in xs]
    figure = go.Figure(go.Scatter(x=[str(x) for x in xs], y=ys, mode="lines+markers"))
    figure.update_layout(
        template="plotly_dark", height=420, xaxis_title=name, yaxis_title=stat_label(metric)[0]
    )
    figure.update_xaxes(type="category")
    return figure_html(figure)


def _heatmap(
    x_name: str,
    y_name: str,
    rows: Sequence[Mapping[str, object]],
    metric: str,
    direction: Direction,
) -> str:
    import plotly.graph_objects as go

    best = _best_by(lambda row: (row.get(x_name), row.get(y_name)), rows, metric, direction)
    xs = sorted({row.get(x_name) for row in rows}, key=_value_key)
    ys = sorted({row.get(y_name) for row in rows}, key=_value_key)
    # Missing or NaN combinations stay None, which plotly leaves blank.
    z = [[_or_none(best.get((x, y), math.nan)) for x in xs] for y in ys]
    heatmap = go.Heatmap(
        x=[str(x) for x in xs], y=[str(y) for y in ys], z=z, colorscale="Viridis",
        colorbar={"title": {"text": stat_label(metric)[0]}}, hoverongaps=False,
        reversescale=direction == "minimize",  # the best cells stay the bright ones
    )  # fmt: skip
    figure = go.Figure(heatmap)
    figure.update_layout(template="plotly_dark", height=520, xaxis_title=x_name, yaxis_title=y_name)
    figure.update_xaxes(type="category")
    figure.update_yaxes(type="category")
    return figure_html(figure)


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else value
