"""Parameters are shown as "key: value" lines, never as raw JSON: long symbol lists end in
"and N more" (the whole list in the tooltip), in the pages' scripts (app.js's paramList) and
in the templates (_macros.html's param_list), and the backtest pages never print params as
JSON."""

from __future__ import annotations

import json
import re

import pytest
from tests.support.node import run_module

from ffe.web.render import environment, static_root

SYMBOLS = [f"SYM{i:03d}" for i in range(100)]
PARAMS = {
    "fast": 10,
    "symbols": SYMBOLS,
    "weights": {"garch": 0.5, "naive": 0.5},
    "note": "x" * 200,
}

# Just enough DOM for app.js's el(): elements that keep their attributes and children.
FAKE_DOM = """
class FakeNode {
  constructor(tag) { this.tag = tag; this.attrs = {}; this.children = []; }
  setAttribute(k, v) { this.attrs[k] = String(v); }
  addEventListener() {}
  append(child) { this.children.push(child); }
  get textContent() {
    return this.children.map((c) => (typeof c === "string" ? c : c.textContent)).join("");
  }
  lines() { return this.children.map((c) => ({ text: c.textContent, title: c.attrs.title })); }
}
globalThis.Node = FakeNode;
globalThis.document = { body: { dataset: {} }, hidden: false, getElementById: () => null,
  createElement: (tag) => new FakeNode(tag) };
globalThis.location = { protocol: "http:", host: "test", pathname: "/", search: "" };
"""


def _node(script: str) -> object:
    return run_module(FAKE_DOM + script)


def test_param_list_when_100_symbols_and_nested_values_then_lines_without_json():
    lines = _node(
        'const { paramList } = await import("./app.js");\n'
        f"console.log(JSON.stringify(paramList({json.dumps(PARAMS)}).lines()));"
    )

    texts = [line["text"] for line in lines]  # type: ignore[index]
    assert texts[0] == "fast10"  # <dt>fast</dt><dd>10</dd>: the colon is drawn by CSS
    assert texts[1] == "symbolsSYM000, SYM001, SYM002, SYM003, SYM004 and 95 more"
    assert texts[2] == "weightsgarch=0.5, naive=0.5"
    assert texts[3].endswith("…")
    assert len(texts[3]) < 80
    assert lines[1]["title"] == "symbols: " + ", ".join(SYMBOLS)  # type: ignore[index]
    assert not any(re.search(r"[{}\[\]\"]", text) for text in texts)


def test_param_list_when_no_parameters_then_says_defaults():
    found = _node(
        'const { paramList } = await import("./app.js");\n'
        "console.log(JSON.stringify(paramList({}).textContent));"
    )

    assert found == "defaults"


def test_param_list_macro_when_100_symbols_then_lines_without_json():
    template = environment().from_string(
        '{% from "_macros.html" import param_list %}{{ param_list(params) }}'
    )

    html = template.render(params=PARAMS)

    assert "<dt>symbols</dt><dd>SYM000, SYM001, SYM002, SYM003, SYM004 and 95 more</dd>" in html
    assert 'title="symbols: SYM000, SYM001' in html
    assert "<dd>garch=0.5, naive=0.5</dd>" in html
    assert "{" not in html
    assert "[" not in html
    assert "&#34;" not in html
    assert (
        "defaults"
        in environment()
        .from_string('{% from "_macros.html" import param_list %}{{ param_list({}) }}')
        .render()
    )


@pytest.mark.parametrize("script", ["backtests.js", "backtest_job.js"])
def test_backtest_pages_never_print_parameters_as_json(script: str):
    source = static_root().joinpath("js", "pages", script).read_text()

    assert "JSON.stringify" not in source
    assert "paramList(" in source


def test_compare_view_draws_settings_as_lists_and_its_tables_scroll_in_their_own_box():
    from ffe.api.auth import Principal
    from ffe.web.render import render

    reader = Principal(name="t", kind="user", scopes=frozenset({"read"}))
    html = render("backtests.html", user=reader, page="backtests")
    css = static_root().joinpath("css", "app.css").read_text()

    assert 'id="compare-params"' in html
    for table in ("runs-table", "compare-table"):
        assert re.search(
            rf'<div class="table-wrap[^"]*"[^>]*>\s*<table class="table" id="{table}"', html
        )
    assert re.search(r"\.table-wrap \{[^}]*overflow-x: auto", css)
    assert re.search(r"\.main \{[^}]*grid-template-columns: minmax\(0, 1fr\)", css)
    assert re.search(r"\.param-list dd \{[^}]*overflow-wrap: anywhere", css)
