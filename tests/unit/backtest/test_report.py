"""HTML reports: self-contained, escaped, and showing what was computed."""

from __future__ import annotations

import base64
import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ffe.backtest.html import with_inline_library, write_report
from ffe.backtest.report import render_backtest_report
from ffe.backtest.sweep_report import render_sweep_report
from ffe.domain.orders import Trade
from ffe.portfolio.stats import Stats, compute_stats

START = datetime(2024, 1, 1, tzinfo=UTC)
PLOTLY_JS = "plotly.js v"  # the banner at the top of the library
EXTERNAL_SCRIPT = re.compile(r"<script[^>]*\bsrc\s*=\s*[\"']?(https?:)?//", re.IGNORECASE)


def make_trades(n: int) -> list[Trade]:
    return [
        Trade(
            symbol="SPX",
            entry_time=START + timedelta(days=2 * i),
            exit_time=START + timedelta(days=2 * i + 1),
            entry_price=100.0 + i,
            exit_price=101.5 + i if i % 2 == 0 else 99.25 + i,
            quantity=3.0 if i % 2 == 0 else -2.0,
            pnl=4.5 if i % 2 == 0 else 1.5,
        )
        for i in range(n)
    ]


def backtest_html(trades: list[Trade], title: str = "SMA cross on SPX") -> tuple[str, Stats]:
    n = max(10, 2 * len(trades) + 2)
    times = np.datetime64("2024-01-01", "ns") + np.arange(n) * np.timedelta64(1, "D")
    equity = 10_000.0 + np.cumsum(np.where(np.arange(n) % 3 == 0, -5.0, 10.0))
    benchmark = np.linspace(50.0, 60.0, n)
    stats = compute_stats(
        times=times,
        equity=equity,
        trades=trades,
        exposure=np.ones(n, dtype=bool),
        benchmark=benchmark,
        periods_per_year=365.0,
        commissions=12.5,
    )
    html = render_backtest_report(
        title=title,
        subtitle="daily bars, 2024",
        times=times,
        equity=equity,
        benchmark_equity=benchmark,
        trades=trades,
        stats=stats,
        params={"fast": 10, "slow": "<b>30</b>"},
    )
    return html, stats


def test_backtest_report_shows_stats_values_formatted():
    html, stats = backtest_html(make_trades(3))

    assert f"{stats.total_return:.2%}" in html
    assert f"{stats.max_drawdown:.2%}" in html
    assert f"{stats.win_rate:.2%}" == "100.00%"
    assert "100.00%" in html
    assert f"{stats.max_drawdown_duration / timedelta(days=1):.1f} days" in html
    assert "12.50" in html  # commissions
    assert "∞" in html  # profit factor with no losing trade


def test_backtest_report_lists_trades_with_direction_and_pnl():
    html, _ = backtest_html(make_trades(3))

    second = (
        "<tr><td>2</td><td>2024-01-03</td><td>2024-01-04</td><td>short</td><td>2</td>"
        '<td>101.00</td><td>100.25</td><td class="gain">1.50</td><td class="gain">0.74%</td></tr>'
    )
    assert second in html
    assert "<td>long</td>" in html
    assert "Trades (3)" in html


def test_backtest_report_when_written_then_small_and_loads_plotly_from_beside_it(tmp_path):
    html, _ = backtest_html(make_trades(3))

    path = write_report(tmp_path / "run.html", html)
    written = path.read_text(encoding="utf-8")
    assert EXTERNAL_SCRIPT.search(written) is None  # nothing from a network
    assert "<link" not in written
    assert len(FIGURE_CALL.findall(written)) == 1
    assert len(written.encode()) < 1_000_000  # the library is referenced, not carried
    assert '<script src="plotly.min.js" charset="utf-8"></script>' in written
    assert (tmp_path / "plotly.min.js").read_text(encoding="utf-8").count(PLOTLY_JS) == 1
    assert "The charts need plotly.min.js" in written  # said when it is missing


def test_report_when_served_standalone_then_carries_plotly_once():
    html, _ = backtest_html(make_trades(3))

    served = with_inline_library(html)
    assert served.count(PLOTLY_JS) == 1
    assert 'src="plotly.min.js"' not in served
    assert len(served) > 1_000_000


def test_reports_when_written_then_dark_like_the_dashboard(tmp_path):
    html, _ = backtest_html(make_trades(3))

    assert "color-scheme: dark" in html
    _, layout = figure_of(html)
    assert layout["paper_bgcolor"] == "#111723"


def test_sweep_report_when_statistics_then_readable_headers_and_formats():
    rows = [{"fast": 5, "sharpe": 1.23456, "total_return": 0.1234, "n_trades": 7}]

    html = render_sweep_report(title="Sweep", param_names=["fast"], rows=rows, metric="sharpe")

    head = html.split("<thead>", 1)[1].split("</thead>", 1)[0]
    assert re.findall(r"<th[^>]*>([^<]*)</th>", head) == [
        "fast", "Sharpe ratio", "Total return", "Trades",
    ]  # fmt: skip
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert re.findall(r"<td[^>]*>([^<]*)</td>", body) == ["5", "1.23", "12.34%", "7"]
    assert 'data-value="0.1234"' in body  # sorted by the number, not the text


def test_backtest_report_escapes_user_strings():
    html, _ = backtest_html(make_trades(1), title="<script>x</script>")

    assert "<script>x</script>" not in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html
    assert "<b>30</b>" not in html
    assert "&lt;b&gt;30&lt;/b&gt;" in html


def test_backtest_report_when_many_trades_then_shows_first_and_last_500():
    trades = make_trades(1_200)

    html, _ = backtest_html(trades)

    assert "Showing the first and last 500 of 1,200 trades" in html
    assert "200 trades not shown" in html
    assert "<tr><td>500</td>" in html
    assert "<tr><td>501</td>" not in html
    assert "<tr><td>1,200</td>" in html


def test_backtest_report_when_more_trades_than_markers_then_thins_and_says_so():
    html, _ = backtest_html(make_trades(1_600))

    assert "Markers show 1,500 of 1,600 trades" in html


def test_backtest_report_without_trades_says_so():
    html, stats = backtest_html([])

    assert "No trades." in html
    assert math.isnan(stats.win_rate)
    assert "—" in html


SWEEP_ROWS = [
    {"fast": 5, "slow": 20, "sharpe": 0.5, "trades": 12},
    {"fast": 5, "slow": 30, "sharpe": 1.25, "trades": 8},
    {"fast": 10, "slow": 20, "sharpe": float("nan"), "trades": 0},
    {"fast": 10, "slow": 40, "sharpe": -0.75, "trades": 4},
]


# A figure's call names its div; plotly.js's own help text has "Plotly.newPlot(gd, ..." too.
FIGURE_CALL = re.compile(r'Plotly\.newPlot\(\s*"')


def figure_of(html: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The data and layout passed to Plotly.newPlot in a report."""
    decoder = json.JSONDecoder()
    call = FIGURE_CALL.search(html)
    assert call is not None
    start = html.index("[", call.end())
    data, end = decoder.raw_decode(html, start)
    layout, _ = decoder.raw_decode(html, html.index("{", end))
    return data, layout


def metric_column(html: str) -> list[str]:
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [re.findall(r"<td[^>]*>([^<]*)</td>", row)[2] for row in body.split("<tr>")[1:]]


def test_sweep_report_ranks_best_first_and_nan_last():
    html = render_sweep_report(
        title="Sweep", param_names=["fast", "slow"], rows=SWEEP_ROWS, metric="sharpe"
    )

    assert metric_column(html) == ["1.25", "0.50", "-0.75", "—"]


def test_sweep_report_when_lower_is_better_then_smallest_first_and_said_so():
    rows = [{**row, "vol": row["sharpe"]} for row in SWEEP_ROWS]

    html = render_sweep_report(
        title="Sweep", param_names=["fast", "slow"], rows=rows, metric="vol", direction="minimize"
    )

    assert metric_column(html) == ["-0.75", "0.50", "1.25", "—"]
    assert "ranked by Vol (lower is better), best first" in html
    assert '<th data-order=asc title="vol">Vol</th>' in html
    (heatmap,), _ = figure_of(html)
    assert heatmap["reversescale"] is True


def test_sweep_report_when_lower_is_better_then_heatmap_cell_keeps_the_smallest():
    rows = [
        {"a": a, "b": b, "c": c, "vol": 10 * a + b + 0.01 * c}
        for a in (1, 2)
        for b in (1, 2)
        for c in (1, 2)
    ]

    html = render_sweep_report(
        title="Sweep", param_names=["c", "b", "a"], rows=rows, metric="vol", direction="minimize"
    )

    (heatmap,), _ = figure_of(html)
    assert heatmap["z"][0] == [pytest.approx(11.01), pytest.approx(21.01)]  # best over c


def test_sweep_report_when_no_direction_given_then_the_metrics_own():
    rows = [{"fast": 5, "annual_volatility": 0.2}, {"fast": 10, "annual_volatility": 0.1}]

    html = render_sweep_report(
        title="Sweep", param_names=["fast"], rows=rows, metric="annual_volatility"
    )

    assert "ranked by Annual volatility (lower is better)" in html
    assert html.index('data-value="0.1"') < html.index('data-value="0.2"')


def test_sweep_report_with_two_params_has_heatmap_with_blank_cells():
    html = render_sweep_report(
        title="Sweep", param_names=["fast", "slow"], rows=SWEEP_ROWS, metric="sharpe"
    )

    (heatmap,), layout = figure_of(html)
    assert heatmap["type"] == "heatmap"
    assert heatmap["x"] == ["5", "10"]
    assert heatmap["y"] == ["20", "30", "40"]
    assert heatmap["z"] == [[0.5, None], [1.25, None], [None, -0.75]]
    assert layout["xaxis"]["title"]["text"] == "fast"
    assert EXTERNAL_SCRIPT.search(html) is None


def test_sweep_report_with_one_param_has_line_chart():
    rows = [{"fast": 5, "sharpe": 1.0}, {"fast": 10, "sharpe": 2.0}]

    html = render_sweep_report(title="Sweep", param_names=["fast"], rows=rows, metric="sharpe")

    (line,), layout = figure_of(html)
    assert line["type"] == "scatter"
    assert line["x"] == ["5", "10"]
    assert layout["xaxis"]["title"]["text"] == "fast"


def test_sweep_report_with_three_params_maps_the_two_with_largest_effect():
    rows = [
        {"a": a, "b": b, "c": c, "score": 10 * a + b + 0.01 * c}
        for a in (1, 2)
        for b in (1, 2, 3)
        for c in (1, 2)
    ]

    html = render_sweep_report(
        title="Sweep", param_names=["c", "b", "a"], rows=rows, metric="score"
    )

    (heatmap,), layout = figure_of(html)
    assert heatmap["type"] == "heatmap"
    assert (layout["xaxis"]["title"]["text"], layout["yaxis"]["title"]["text"]) == ("a", "b")
    assert heatmap["z"][0] == [pytest.approx(11.02), pytest.approx(21.02)]  # best over c
    assert "a and b change score the most" in html


def test_sweep_report_escapes_title_and_values():
    rows = [{"name": "<img src=x>", "sharpe": 1.0}]

    html = render_sweep_report(
        title="<script>x</script>", param_names=["name"], rows=rows, metric="sharpe"
    )

    assert "<script>x</script>" not in html
    assert "<img src=x>" not in html
    assert "&lt;img src=x&gt;" in html


def test_write_report_creates_dirs_and_leaves_no_temp_file(tmp_path: Path):
    target = tmp_path / "reports" / "nested" / "run.html"

    written = write_report(target, "<html>é</html>")

    assert written == target
    assert target.read_text(encoding="utf-8") == "<html>é</html>"
    assert [p.name for p in target.parent.iterdir()] == ["run.html"]


def test_write_report_replaces_existing_file(tmp_path: Path):
    target = tmp_path / "run.html"
    target.write_text("old", encoding="utf-8")

    write_report(target, "new")

    assert target.read_text(encoding="utf-8") == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.html"]


def test_write_report_when_write_fails_then_removes_temp_file(tmp_path: Path):
    with pytest.raises(UnicodeEncodeError):
        write_report(tmp_path / "run.html", "\udcff")  # a lone surrogate cannot be encoded

    assert list(tmp_path.iterdir()) == []


def test_backtest_chart_has_scaled_benchmark_markers_and_shared_drawdown_axis():
    html, stats = backtest_html(make_trades(3))

    data, layout = figure_of(html)
    traces = {trace["name"]: trace for trace in data}
    assert list(traces) == [
        "Strategy",
        "Buy & hold (no costs)",
        "Long entry",
        "Short entry",
        "Exit",
        "Drawdown",
    ]
    assert traces["Long entry"]["marker"]["symbol"] == "triangle-up"
    assert traces["Short entry"]["marker"]["symbol"] == "triangle-down"
    assert traces["Long entry"]["marker"]["color"] != traces["Short entry"]["marker"]["color"]
    assert len(traces["Long entry"]["x"]) == 2
    assert traces["Drawdown"]["fill"] == "tozeroy"
    assert traces["Drawdown"]["yaxis"] == "y2"
    assert layout["xaxis"]["matches"] == "x2"
    benchmark = traces["Buy & hold (no costs)"]["y"]
    scaled = np.frombuffer(base64.b64decode(benchmark["bdata"]), dtype=benchmark["dtype"])
    assert scaled[0] == pytest.approx(stats.initial_equity)
    assert scaled[-1] == pytest.approx(stats.initial_equity * 60.0 / 50.0)


def test_backtest_report_is_reproducible():
    first, _ = backtest_html(make_trades(3))
    second, _ = backtest_html(make_trades(3))

    assert first == second
