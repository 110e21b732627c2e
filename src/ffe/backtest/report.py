"""Self-contained HTML reports of a backtest and of a walk-forward run (sweeps: sweep_report.py).

Each report is one file that works offline: plotly.js is embedded inline once, and nothing
is fetched from a network. Every string that comes from a user (titles, parameters, symbols)
is escaped. Plotly is imported inside the functions so that the CLI starts fast.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from html import escape
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from ffe.backtest.html import figure_html, header, page, section
from ffe.domain.orders import Trade
from ffe.portfolio.stats import Stats, drawdown_series

if TYPE_CHECKING:
    from ffe.backtest.walkforward import WalkForwardResult

FloatArray = npt.NDArray[np.float64]

MAX_MARKED_TRADES = 1500  # two markers per trade: a browser stays responsive at a few thousand
MAX_TABLE_TRADES = 1000
_TABLE_EDGE = MAX_TABLE_TRADES // 2
_LONG_COLOUR, _SHORT_COLOUR = "#1a9850", "#d73027"
_TRADE_COLUMNS = "#|Entry time|Exit time|Direction|Quantity|Entry price|Exit price|P&amp;L|Return"
_BAND_COLOUR, _BOUNDARY_COLOUR = "#4d9bff", "#8c959f"
_SEGMENT_COLUMNS = "#|Test from|Test to|Bars|Return|Sharpe|Max drawdown|Trades"


class SegmentRow(Protocol):
    """What the report shows of one walk-forward segment."""

    @property
    def number(self) -> int: ...
    @property
    def test_start_time(self) -> datetime: ...
    @property
    def test_end_time(self) -> datetime: ...
    @property
    def bars(self) -> int: ...
    @property
    def total_return(self) -> float: ...
    @property
    def sharpe(self) -> float: ...
    @property
    def max_drawdown(self) -> float: ...
    @property
    def n_trades(self) -> int: ...


_STAT_ROWS: tuple[tuple[str, str, str], ...] = (
    ("start", "Start", "time"), ("end", "End", "time"),
    ("duration", "Duration", "days"), ("initial_equity", "Initial equity", "money"),
    ("final_equity", "Final equity", "money"), ("peak_equity", "Peak equity", "money"),
    ("total_return", "Total return", "pct"), ("buy_and_hold_return", "Buy & hold return", "pct"),
    ("cagr", "CAGR", "pct"), ("annual_volatility", "Annual volatility", "pct"),
    ("sharpe", "Sharpe ratio", "ratio"), ("sortino", "Sortino ratio", "ratio"),
    ("calmar", "Calmar ratio", "ratio"), ("max_drawdown", "Max drawdown", "pct"),
    ("max_drawdown_duration", "Max drawdown duration", "days"), ("exposure", "Exposure", "pct"),
    ("n_trades", "Trades", "int"), ("win_rate", "Win rate", "pct"),
    ("profit_factor", "Profit factor", "ratio"), ("expectancy", "Expectancy", "money"),
    ("avg_trade_return", "Average trade", "pct"), ("best_trade", "Best trade", "pct"),
    ("worst_trade", "Worst trade", "pct"), ("commissions", "Commissions", "money"),
)  # fmt: skip


def render_backtest_report(
    *,
    title: str,
    subtitle: str,
    times: npt.NDArray[np.datetime64],
    equity: FloatArray,
    benchmark_equity: FloatArray | None,
    trades: Sequence[Trade],
    stats: Stats,
    params: Mapping[str, object],
    segments: Sequence[SegmentRow] = (),
    warnings: Sequence[str] = (),
) -> str:
    """A full HTML page: warnings, parameters, statistics, equity and drawdown charts, and
    trades.

    With ``segments`` (a walk-forward run) the charts shade each segment's test window and
    a table gives each segment's performance."""
    curve = np.asarray(equity, dtype=np.float64)
    chart = _equity_chart(times, curve, benchmark_equity, trades, segments)
    sections = [
        *([section("Warnings", _warning_list(warnings))] if warnings else []),
        section("Statistics", _stats_list(stats)),
        section("Equity and drawdown", chart),
    ]
    if segments:
        sections.append(
            section(f"Walk-forward segments ({len(segments):,})", _segment_table(segments))
        )
    sections.append(section(f"Trades ({len(trades):,})", _trades_table(trades)))
    return page(title, header(title, subtitle, params) + "".join(sections))


def _warning_list(warnings: Sequence[str]) -> str:
    items = "".join(f"<li><strong>{escape(text)}</strong></li>" for text in warnings)
    return f'<ul class="warnings">{items}</ul>'


def render_walk_forward_report(result: WalkForwardResult) -> str:
    """The report of a walk-forward run: the joined out-of-sample run, its segments marked."""
    backtest, spec = result.backtest, result.spec
    stats, market, fill = backtest.stats, backtest.market, backtest.config.fill
    shown = ", ".join(market.symbols[:5]) + ("…" if len(market.symbols) > 5 else "")
    return render_backtest_report(
        title=f"{backtest.strategy.name} on {shown}, walked forward",
        subtitle=f"{stats.start:%Y-%m-%d} to {stats.end:%Y-%m-%d}, {market.n_bars:,} "
        f"out-of-sample bars of {market.timeframe} in {len(result.segments)} segments "
        f"({spec.train:,} bars before each window of {spec.test:,})",
        times=market.times,
        equity=backtest.equity,
        benchmark_equity=backtest.benchmark,
        trades=backtest.trades,
        stats=stats,
        params={
            **backtest.params,
            "cash": backtest.config.cash,
            "fill": fill.at,
            "commission": fill.commission,
            "walk-forward": str(spec),
        },
        segments=result.segments,
    )


def stat_label(name: str) -> tuple[str, str]:
    """A statistic's readable name and kind (pct, ratio, money, int, days, time); a name we do
    not know reads as itself with spaces, shown as a ratio."""
    for known, label, kind in _STAT_ROWS:
        if known == name:
            return label, kind
    return name.replace("_", " ").capitalize(), "ratio"


def format_value(value: object, kind: str) -> str:
    """``value`` as text for a table, by kind (``stat_label``)."""
    return _format_value(value, kind)


def _format_value(value: object, kind: str) -> str:
    """``value`` as text for a table: percentages with %, durations in days."""
    if isinstance(value, datetime):
        return _format_time(value)
    if isinstance(value, timedelta):
        return f"{value / timedelta(days=1):,.1f} days"
    if not isinstance(value, numbers.Real):
        return str(value)
    number = float(value)
    if math.isnan(number):
        return "—"
    if math.isinf(number):
        return "∞" if number > 0 else "-∞"
    if kind == "pct":
        return f"{number:,.2%}"
    if kind == "int":
        return f"{number:,.0f}"
    return f"{number:,.2f}"


def _format_price(price: float) -> str:
    # Small prices (crypto pairs, FX crosses) need more than two decimals to say anything.
    return f"{price:,.2f}" if abs(price) >= 1 else f"{price:.6g}"


def _format_time(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    if (value.hour, value.minute, value.second) == (0, 0, 0):
        return value.strftime("%Y-%m-%d")
    return value.strftime("%Y-%m-%d %H:%M")


def _stats_list(stats: Stats) -> str:
    values = (
        (label, _format_value(getattr(stats, name), kind)) for name, label, kind in _STAT_ROWS
    )
    items = "".join(
        f"<div><dt>{escape(label)}</dt><dd>{escape(text)}</dd></div>" for label, text in values
    )
    return f'<dl class="stats">{items}</dl>'


def _equity_chart(
    times: npt.NDArray[np.datetime64],
    equity: FloatArray,
    benchmark_equity: FloatArray | None,
    trades: Sequence[Trade],
    segments: Sequence[SegmentRow] = (),
) -> str:
    from plotly.subplots import make_subplots

    x = np.asarray(times).astype("datetime64[s]")  # whole seconds: shorter JSON
    figure = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28], vertical_spacing=0.03
    )
    line = {"x": x, "mode": "lines", "row": 1, "col": 1}
    figure.add_scatter(y=equity, name="Strategy", line={"color": "#4d9bff", "width": 1.6}, **line)
    benchmark = _scaled_benchmark(benchmark_equity, float(equity[0]))
    if benchmark is not None:
        style = {"color": "#8c959f", "width": 1.2, "dash": "dot"}
        figure.add_scatter(y=benchmark, name="Buy & hold (no costs)", line=style, **line)
    marked = _thin(trades, MAX_MARKED_TRADES)
    for trace in _marker_traces(times, equity, marked):
        figure.add_scatter(row=1, col=1, **trace)
    figure.add_scatter(
        x=x, y=drawdown_series(equity), name="Drawdown", mode="lines", fill="tozeroy",
        line={"color": _SHORT_COLOUR, "width": 1}, row=2, col=1,
    )  # fmt: skip
    figure.update_layout(
        template="plotly_dark", height=620, hovermode="x unified",
        margin={"l": 60, "r": 20, "t": 20, "b": 40},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
    )  # fmt: skip
    figure.update_yaxes(title_text="Equity", row=1, col=1)
    figure.update_yaxes(title_text="Drawdown", tickformat=".0%", row=2, col=1)
    _mark_segments(figure, times, segments)
    html = figure_html(figure)
    if len(marked) < len(trades):
        html += f'<p class="note">Markers show {len(marked):,} of {len(trades):,} trades.</p>'
    return html


def _mark_segments(
    figure: Any, times: npt.NDArray[np.datetime64], segments: Sequence[SegmentRow]
) -> None:
    """A dashed line where each segment's test window starts, every other window shaded
    (on both charts), and the segment's number at the top of the equity chart."""
    if not segments:
        return
    starts = _to_datetime64([segment.test_start_time for segment in segments])
    last = np.asarray(times).astype("datetime64[ns]")[-1]
    ends = np.append(starts[1:], last)  # windows meet: each band reaches the next start
    for index, segment in enumerate(segments):
        x0, x1 = (str(x.astype("datetime64[s]")) for x in (starts[index], ends[index]))
        if index % 2 == 0:
            figure.add_vrect(
                x0=x0, x1=x1, fillcolor=_BAND_COLOUR, opacity=0.06, line_width=0,
                layer="below", row="all", col=1,
            )  # fmt: skip
        line = {"color": _BOUNDARY_COLOUR, "width": 1, "dash": "dash"}
        figure.add_vline(x=x0, line=line, row="all", col=1)
        figure.add_annotation(
            x=x0, y=1, yref="y domain", text=f"#{segment.number}", showarrow=False,
            xanchor="left", yanchor="top", font={"size": 10, "color": "#8391a7"}, row=1, col=1,
        )  # fmt: skip


def _segment_table(segments: Sequence[SegmentRow]) -> str:
    head = "".join(f"<th>{name}</th>" for name in _SEGMENT_COLUMNS.split("|"))
    rows = []
    for segment in segments:
        tone = "gain" if segment.total_return > 0 else "loss" if segment.total_return < 0 else ""
        rows.append(
            f"<tr><td>{segment.number:,}</td><td>{_format_time(segment.test_start_time)}</td>"
            f"<td>{_format_time(segment.test_end_time)}</td><td>{segment.bars:,}</td>"
            f'<td class="{tone}">{_format_value(segment.total_return, "pct")}</td>'
            f"<td>{_format_value(segment.sharpe, 'ratio')}</td>"
            f"<td>{_format_value(segment.max_drawdown, 'pct')}</td>"
            f"<td>{segment.n_trades:,}</td></tr>"
        )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    note = (
        '<p class="note">Each segment\'s numbers are of the joined run over its test window, '
        "from the equity at the close before it; trades are the round trips closed in it.</p>"
    )
    return f'<div class="table-wrap">{table}</div>{note}'


def _scaled_benchmark(benchmark: FloatArray | None, start_equity: float) -> FloatArray | None:
    """The benchmark rescaled so that its first known value equals the starting equity."""
    if benchmark is None:
        return None
    values = np.asarray(benchmark, dtype=np.float64)
    known = np.flatnonzero(np.isfinite(values) & (values != 0))
    if len(known) == 0:
        return None
    return values * (start_equity / float(values[known[0]]))


def _thin(trades: Sequence[Trade], limit: int) -> Sequence[Trade]:
    """At most ``limit`` trades, evenly spread over the run."""
    if len(trades) <= limit:
        return trades
    keep = np.unique(np.linspace(0, len(trades) - 1, limit).round().astype(np.int64))
    return [trades[i] for i in keep]


def _marker_traces(
    times: npt.NDArray[np.datetime64], equity: FloatArray, trades: Sequence[Trade]
) -> list[dict[str, Any]]:
    """Entry triangles (long up green, short down red) and exit crosses, placed on equity."""
    longs = [trade for trade in trades if trade.quantity > 0]
    shorts = [trade for trade in trades if trade.quantity <= 0]
    specs = (
        ("Long entry", longs, "entry_time", "triangle-up", _LONG_COLOUR),
        ("Short entry", shorts, "entry_time", "triangle-down", _SHORT_COLOUR),
        ("Exit", trades, "exit_time", "x-thin-open", "#8391a7"),
    )
    traces = []
    for name, group, attribute, symbol, colour in specs:
        if not group:
            continue
        when = _to_datetime64([getattr(trade, attribute) for trade in group])
        bar = np.clip(np.searchsorted(times, when, side="right") - 1, 0, len(equity) - 1)
        marker = {"symbol": symbol, "color": colour, "size": 9, "line": {"width": 1}}
        text = [_marker_text(trade) for trade in group]
        x, y = when.astype("datetime64[s]"), equity[bar]
        traces.append(dict(x=x, y=y, name=name, mode="markers", marker=marker, text=text))
    return traces


def _marker_text(trade: Trade) -> str:
    # Plotly renders a little HTML in hover text, so the symbol is escaped like any input.
    return (
        f"{escape(trade.symbol)} {trade.direction} {abs(trade.quantity):,.6g}"
        f" @ {_format_price(trade.entry_price)} → {_format_price(trade.exit_price)}"
        f"<br>P&amp;L {trade.pnl:,.2f} ({trade.return_pct:+.2%})"
    )


def _to_datetime64(values: Iterable[datetime]) -> npt.NDArray[np.datetime64]:
    naive = [v.astimezone(UTC).replace(tzinfo=None) if v.tzinfo else v for v in values]
    return np.array(naive, dtype="datetime64[ns]")


def _trades_table(trades: Sequence[Trade]) -> str:
    if not trades:
        return '<p class="note">No trades.</p>'
    head = "".join(f"<th>{name}</th>" for name in _TRADE_COLUMNS.split("|"))
    if len(trades) <= MAX_TABLE_TRADES:
        body = _trade_rows(trades, 1)
        note = ""
    else:
        hidden = len(trades) - 2 * _TABLE_EDGE
        gap = f'<tr class="gap"><td colspan="9">… {hidden:,} trades not shown …</td></tr>'
        tail_start = len(trades) - _TABLE_EDGE
        body = _trade_rows(trades[:_TABLE_EDGE], 1) + gap
        body += _trade_rows(trades[tail_start:], tail_start + 1)
        note = (
            f'<p class="note">Showing the first and last {_TABLE_EDGE:,} of '
            f"{len(trades):,} trades.</p>"
        )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'{note}<div class="table-wrap">{table}</div>'


def _trade_rows(trades: Sequence[Trade], first_number: int) -> str:
    rows = []
    for number, trade in enumerate(trades, start=first_number):
        tone = "gain" if trade.pnl > 0 else "loss" if trade.pnl < 0 else ""
        rows.append(
            f"<tr><td>{number:,}</td><td>{_format_time(trade.entry_time)}</td>"
            f"<td>{_format_time(trade.exit_time)}</td><td>{trade.direction}</td>"
            f"<td>{abs(trade.quantity):,.6g}</td><td>{_format_price(trade.entry_price)}</td>"
            f"<td>{_format_price(trade.exit_price)}</td>"
            f'<td class="{tone}">{trade.pnl:,.2f}</td>'
            f'<td class="{tone}">{_format_value(trade.return_pct, "pct")}</td></tr>'
        )
    return "".join(rows)
