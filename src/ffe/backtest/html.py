"""The pieces every HTML report is made of: the page with its stylesheet, header,
sections, one inline plotly figure, and an atomic write to disk.

Each report is one file that works offline: plotly.js is embedded inline once, and nothing
is fetched from a network. Every string that comes from a user is escaped.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

_PLOT_CONFIG = {"displaylogo": False, "responsive": True}

_CSS = """
:root { color-scheme: light; --muted: #5f6b7a; --line: #e3e7ed; --accent: #2c5cc5; }
* { box-sizing: border-box; }
body { margin: 0; background: #f6f8fa; color: #1f2328; line-height: 1.45;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 24px; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header .subtitle { margin: 0 0 16px; color: var(--muted); }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px;
  padding: 16px 20px; margin-bottom: 20px; }
h2 { font-size: 16px; margin: 0 0 12px; }
.note { color: var(--muted); font-size: 13px; margin: 8px 0 0; }
.params { display: flex; flex-wrap: wrap; gap: 6px 18px; margin: 0; }
.params div { display: flex; gap: 6px; } .params dd, .stats dd { margin: 0; }
.params dt, .stats dt { color: var(--muted); }
.stats { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr));
  gap: 0 32px; margin: 0; }
.stats div { display: flex; justify-content: space-between; padding: 5px 0;
  border-bottom: 1px solid var(--line); }
.table-wrap { overflow-x: auto; max-height: 640px; overflow-y: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: right;
  white-space: nowrap; }
th { position: sticky; top: 0; background: #f0f3f7; font-weight: 600; }
th:first-child, td:first-child { text-align: left; }
tbody tr:hover { background: #f6f9ff; }
td.text { text-align: left; } .gain { color: #1a7f37; } .loss { color: #cf222e; }
tr.gap td { text-align: center; color: var(--muted); font-style: italic; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[data-order=desc]::after { content: " \\25BC"; color: var(--accent); }
table.sortable th[data-order=asc]::after { content: " \\25B2"; color: var(--accent); }
"""

# Clicking a header sorts by that column; cells carry their raw value in data-value.
SORT_SCRIPT = """
for (const table of document.querySelectorAll("table.sortable")) {
  table.tHead.addEventListener("click", (event) => {
    const th = event.target.closest("th");
    if (!th) return;
    const col = th.cellIndex, desc = th.dataset.order !== "desc";
    for (const cell of th.parentElement.cells) delete cell.dataset.order;
    th.dataset.order = desc ? "desc" : "asc";
    const body = table.tBodies[0], rows = Array.from(body.rows);
    const key = (row) => row.cells[col].dataset.value;
    rows.sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === "" || y === "") return (x === "") - (y === "");
      const order = isNaN(x) || isNaN(y) ? x.localeCompare(y) : Number(x) - Number(y);
      return desc ? -order : order;
    });
    body.append(...rows);
  });
}
"""


def write_report(path: Path, html: str) -> Path:
    """Write ``html`` to ``path`` atomically, creating parent directories; return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A reader (or a crash) never sees half a report: write aside, then rename over.
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(html)
        os.chmod(temporary, 0o644)  # mkstemp makes the file private; a report is for reading
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def page(title: str, body: str, script: str = "") -> str:
    tail = f"<script>{script}</script>" if script else ""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n{tail}\n</body>\n</html>\n"
    )


def header(title: str, subtitle: str, params: Mapping[str, object]) -> str:
    parts = [f"<h1>{escape(title)}</h1>"]
    if subtitle:
        parts.append(f'<p class="subtitle">{escape(subtitle)}</p>')
    if params:
        items = "".join(
            f"<div><dt>{escape(str(key))}</dt><dd>{escape(str(value))}</dd></div>"
            for key, value in params.items()
        )
        parts.append(f'<dl class="params">{items}</dl>')
    return f"<header>{''.join(parts)}</header>\n"


def section(heading: str, content: str) -> str:
    return f"<section>\n<h2>{escape(heading)}</h2>\n{content}\n</section>\n"


def figures_html(figures: Sequence[Any], prefix: str = "ffe-chart") -> list[str]:
    """Several figures for one page: plotly.js inline once, with the first; fixed div ids
    (``prefix-1``, ``prefix-2``...) so the same figures give the same file."""
    return [
        str(
            figure.to_html(
                full_html=False,
                include_plotlyjs=number == 1,
                config=_PLOT_CONFIG,
                div_id=f"{prefix}-{number}",
            )
        )
        for number, figure in enumerate(figures, start=1)
    ]


def figure_html(figure: Any) -> str:
    # Each report has one figure, so it carries the one inline copy of plotly.js; a fixed
    # div id (plotly's default is random) makes the same run give the same file.
    html = figure.to_html(
        full_html=False, include_plotlyjs=True, config=_PLOT_CONFIG, div_id="ffe-chart"
    )
    return str(html)
