"""The pieces every HTML report is made of: the page with its stylesheet (dark, as the
dashboard), header, sections, plotly figures, and an atomic write to disk.

A report references plotly.js once instead of carrying it (4.6 MB) in every file: a report
written to disk loads ``plotly.min.js`` from its own folder, where ``write_report`` puts one
copy from the installed plotly, so a folder of reports holds the library once, works offline
and each report stays well under 1 MB. The API serves a report with the library inline
(``with_inline_library``), since its frame is sandboxed and loads nothing. Nothing is fetched
from a network. Every string that comes from a user is escaped.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

_PLOT_CONFIG = {"displaylogo": False, "responsive": True}
PLOTLY_FILE = "plotly.min.js"  # beside every report written to disk, once per folder
# Where the page's library goes: replaced when the report is written or served.
_LIBRARY = "<!-- ffe: plotly.js -->"
# Said on the page when the library did not load (a report copied without its plotly.min.js).
_MISSING = (
    '<script>if (!window.Plotly) document.querySelector("main").insertAdjacentHTML("afterbegin",'
    f" '<p class=\"note missing\">The charts need {PLOTLY_FILE} in this report\\'s folder "
    "(ffe writes it beside every report it writes).</p>');</script>"
)
# The dashboard's colours (static/css/app.css), for the figures on the dark page.
_DARK = {
    "template": "plotly_dark",
    "paper_bgcolor": "#111723",
    "plot_bgcolor": "#111723",
    "font": {"color": "#d7deea"},
}

_CSS = """
:root { color-scheme: dark; --bg: #0b0f17; --panel: #111723; --panel-2: #161e2d;
  --line: #222c3d; --text: #d7deea; --muted: #8391a7; --accent: #4d9bff; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text); line-height: 1.45;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 24px; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header .subtitle { margin: 0 0 16px; color: var(--muted); }
section { background: var(--panel); border: 1px solid var(--line); border-radius: 10px;
  padding: 16px 20px; margin-bottom: 20px; }
h2 { font-size: 16px; margin: 0 0 12px; }
a { color: var(--accent); }
.note { color: var(--muted); font-size: 13px; margin: 8px 0 0; }
.missing { color: #f0b43c; }
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
th { position: sticky; top: 0; background: var(--panel-2); font-weight: 600; }
th:first-child, td:first-child { text-align: left; }
tbody tr:hover { background: var(--panel-2); }
td.text { text-align: left; } .gain { color: #26b089; } .loss { color: #ef5b5b; }
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
    """Write ``html`` to ``path`` atomically, creating parent directories; return the path.
    A report with charts loads plotly.js from ``plotly.min.js`` beside it, written here when
    the folder has none (or another version)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if _LIBRARY in html:
        _write_library(path.parent / PLOTLY_FILE)
        script = f'<script src="{PLOTLY_FILE}" charset="utf-8"></script>'
        html = html.replace(_LIBRARY, script, 1).replace("</body>", f"{_MISSING}\n</body>", 1)
    _write_atomic(path, html)
    return path


def with_inline_library(html: str) -> str:
    """``html`` carrying plotly.js itself, for a page served where it loads nothing else
    (the API's sandboxed report frame)."""
    if _LIBRARY not in html:
        return html
    from plotly.offline import get_plotlyjs

    return html.replace(_LIBRARY, f'<script type="text/javascript">{get_plotlyjs()}</script>', 1)


def _write_library(path: Path) -> None:
    from plotly.offline import get_plotlyjs

    library = get_plotlyjs()
    try:
        if path.read_text(encoding="utf-8") == library:
            return
    except (OSError, UnicodeDecodeError):
        pass
    _write_atomic(path, library)


def _write_atomic(path: Path, text: str) -> None:
    # A reader (or a crash) never sees half a report: write aside, then rename over.
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)  # mkstemp makes the file private; a report is for reading
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def page(title: str, body: str, script: str = "") -> str:
    """A whole report page; one with figures gets the place of its one plotly.js."""
    tail = f"<script>{script}</script>" if script else ""
    library = f"{_LIBRARY}\n" if "Plotly.newPlot" in body else ""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n{library}</head>\n"
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
    """Several figures for one page, dark, without plotly.js (the page loads it once); fixed
    div ids (``prefix-1``, ``prefix-2``...) so the same figures give the same file."""
    return [
        figure_html(figure, f"{prefix}-{number}") for number, figure in enumerate(figures, start=1)
    ]


def figure_html(figure: Any, div_id: str = "ffe-chart") -> str:
    """One figure, dark like the dashboard, without plotly.js (the page loads it once); a
    fixed div id (plotly's default is random) makes the same run give the same file."""
    figure.update_layout(**_DARK)
    html = figure.to_html(
        full_html=False, include_plotlyjs=False, config=_PLOT_CONFIG, div_id=div_id
    )
    return str(html)
