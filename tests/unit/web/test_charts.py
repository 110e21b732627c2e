"""``addBenchmark`` (static/js/charts.js) draws buy and hold beside an equity chart from the
points' ``benchmark`` values, with a legend naming both lines, or says why there is none.
Run by Node against stand-ins for the chart library and the page."""

from __future__ import annotations

from tests.support.node import run_module

# Stand-ins: a chart whose series remember their data, elements that remember children.
HARNESS = """
const element = () => ({
  style: {}, dataset: {}, children: [], title: "",
  append(...kids) { this.children.push(...kids); },
  replaceChildren(...kids) { this.children = kids; },
  querySelector(sel) { return this.children.find((c) => c.className === sel.slice(1)) || null; },
  get textContent() {
    return this.children.map((c) => (typeof c === "string" ? c : c.textContent)).join("");
  },
});
globalThis.document = { createElement: () => element() };
globalThis.getComputedStyle = () => ({ position: "static" });
globalThis.window = { LightweightCharts: { LineSeries: "line" } };
const { addBenchmark } = await import("./charts.js");
const made = [];
const chart = { addSeries(kind, options) {
  const s = { kind, options, data: null, setData(d) { this.data = d; } };
  made.push(s);
  return s;
} };
const container = element();
const handle = { chart, container };
"""


def test_add_benchmark_when_points_carry_it_then_a_dashed_line_and_a_legend() -> None:
    out = run_module(
        HARNESS
        + """
const points = [
  { time: "2010-01-05T00:00:00Z", equity: 10000, benchmark: 10100 },
  { time: "2010-01-04T00:00:00Z", equity: 10000, benchmark: 9988 },
  { time: "2010-01-06T00:00:00Z", equity: 10000, benchmark: null },
];
const drawn = addBenchmark(handle, points, { label: "Buy & hold SP500", note: "n", drawn: true });
addBenchmark(handle, points, { label: "Buy & hold SP500", note: "n", drawn: true });
const legend = container.querySelector(".chart-legend");
console.log(JSON.stringify({
  drawn, series: made.length, dashed: made[0].options.lineStyle,
  data: made[0].data, legend: legend.children.map((c) => c.textContent),
}));
"""
    )
    assert out == {
        "drawn": 2,
        "series": 1,  # drawn again on the same line, not a new one
        "dashed": 2,
        "data": [{"time": 1262563200, "value": 9988}, {"time": 1262649600, "value": 10100}],
        "legend": ["Strategy", "Buy & hold SP500"],
    }


def test_add_benchmark_when_none_then_the_legend_says_why() -> None:
    out = run_module(
        HARNESS
        + """
const about = { label: "Buy & hold X", note: "no benchmark: no bars of X", drawn: false };
const drawn = addBenchmark(handle, [{ time: "2010-01-04T00:00:00Z", equity: 1 }], about);
const legend = container.querySelector(".chart-legend");
console.log(JSON.stringify({ drawn, legend: legend.children.map((c) => c.textContent) }));
"""
    )
    assert out == {"drawn": 0, "legend": ["Strategy", "no benchmark: no bars of X"]}
