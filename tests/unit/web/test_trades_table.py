"""One trades table: the overview and a backtest's page show the same columns (the
templates' trades_table), filled with the same cells (static/js/trades.js's tradeCells) from
the same round trips."""

from __future__ import annotations

import json
import re
from importlib.resources import as_file

from ffe.api.auth import Principal
from ffe.web.render import render, static_root

from .test_params import _node

READER = Principal(name="t", kind="user", scopes=frozenset({"read"}))

COLUMNS = [
    "Symbol", "Side", "Status", "Entry", "Entry price", "Exit", "Exit price", "Quantity",
    "P&amp;L", "P&amp;L %", "Duration",
]  # fmt: skip
CLOSED = {
    "symbol": "SP500", "direction": "long", "status": "closed",
    "entry_time": "2012-03-05T00:00:00+00:00", "entry_price": 1364.9,
    "exit_time": "2012-05-07T00:00:00+00:00", "exit_price": 1368.6, "quantity": 7.31,
    "closed_quantity": 7.31, "pnl": 7.05, "pnl_pct": 0.0007, "realized_pnl": 7.05,
    "unrealized_pnl": None, "commission": 20.0, "duration_s": 5443200.0,
    "mark_time": None, "mark_price": None,
}  # fmt: skip
OPEN = CLOSED | {
    "status": "open", "exit_time": None, "exit_price": 1380.0, "closed_quantity": 2.0,
    "pnl": 30.0, "realized_pnl": 10.0, "unrealized_pnl": 20.0,
    "mark_time": "2012-06-01T00:00:00+00:00", "mark_price": 1385.0,
}  # fmt: skip


def _headers(page: str, **context: object) -> list[str]:
    html = render(f"{page}.html", user=READER, page=page, **context)
    table = html[html.index('id="trades-table"') :]
    head = table[: table.index("</thead>")]
    return [label.strip() for label in re.findall(r"<th[^>]*>([^<]*)</th>", head)]


def test_trades_table_when_overview_or_backtest_then_the_same_columns() -> None:
    overview = _headers("overview")
    backtest = _headers("backtest_job", job_id="0" * 32)

    assert overview == COLUMNS
    assert backtest == ["#", *COLUMNS]


def test_trade_cells_when_closed_or_open_then_one_per_column_with_the_trips_values() -> None:
    with as_file(static_root().joinpath("js", "trades.js")) as trades:
        rows = _node(
            f"const {{ tradeCells }} = await import({json.dumps(trades.resolve().as_uri())});\n"
            "const row = (t) => tradeCells(t, 'the last bar').map((c) => "
            "({ text: c.textContent, title: c.attrs.title ?? c.children[0]?.attrs?.title }));\n"
            f"console.log(JSON.stringify([{json.dumps(CLOSED)}, {json.dumps(OPEN)}].map(row)));"
        )

    closed, still = rows  # type: ignore[misc]
    assert [c["text"] for c in closed][:3] == ["SP500", "long", "closed"]
    assert len(closed) == len(still) == len(COLUMNS)
    assert [closed[i]["text"] for i in (4, 6, 8, 9, 10)] == [
        "1,364.90", "1,368.60", "+7.05", "+0.07%", "63d 0h",
    ]  # fmt: skip
    assert (still[2]["text"], still[5]["text"], still[8]["text"]) == ("open", "open", "+30.00 *")
    assert "realised +10.00, unrealised +20.00" in still[8]["title"]
    assert "valued at 1,385.00" in still[2]["title"]
