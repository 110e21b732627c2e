"""Every dashboard view at a laptop's and a phone's size: it loads its data, fits the screen
without a horizontal scroll bar, shows its main element, and passes axe-core's accessibility
rules with no serious or critical violation. Each visit leaves ``<view>-<viewport>.png`` in
the test artifacts. Beyond that, each view checks what it is for: the overview's round trips
and buy-and-hold line, the Close dialog (checked open, then kept, then confirmed), the
decisions' outcomes, a finished backtest's trades, arrows and heatmap, and, on a server of its
own, the demo's agent page once its short replay has ended.

One server, one browser and one logged-in context per viewport serve the whole module, and
each view is visited once per viewport: CI's serial group has little time to spare.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Request, expect
from tests.e2e.browser.conftest import REPO, Server, artifacts_dir, start_server

# Chromium and a server of their own: one at a time, after the other tests (Makefile).
pytestmark = pytest.mark.serial

AXE = REPO / "deploy" / "tools" / "node_modules" / "axe-core" / "axe.min.js"
VIEWPORTS = {"laptop": {"width": 1366, "height": 768}, "phone": {"width": 390, "height": 844}}
ROWS = "tbody tr:not(.empty)"  # a table's data rows, not its "nothing yet" note
DATA_MS = 60_000  # the replay trades within seconds and the jobs take seconds; a busy runner more
AS_PAGE = {"X-Requested-With": "ffe"}  # what the dashboard's own calls send
# Two short backtests (two runs to compare) and a 2 x 2 sweep over the last year only.
RANGE = {"start": "2018-01-01", "end": "2018-12-31"}
BACKTESTS = [{"params": {"fast": 10, "slow": 30}}, {"params": {"fast": 20, "slow": 60}}]
SWEEP = {"symbol": "SP500", "grid": {"fast": [5, 10], "slow": [30, 50]}}
FITS = "document.scrollingElement.scrollWidth <= window.innerWidth + 1"
WIDEST = """() => [...document.querySelectorAll('body *')]
  .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
  .slice(0, 5).map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className}`)"""
# A table wider than its box must scroll inside it (a .table-wrap), never be cut off.
CLIPPED_TABLES = """() => [...document.querySelectorAll("table")]
  .filter((table) => table.offsetParent !== null)
  .filter((table) => {
    const wrap = table.closest(".table-wrap");
    const scrolls = wrap && ["auto", "scroll"].includes(getComputedStyle(wrap).overflowX);
    return !scrolls && table.scrollWidth > (table.parentElement.clientWidth + 1);
  })
  .map((table) => table.id || table.className)"""
AXE_RUN = """async () => {
  const found = await axe.run(document, { resultTypes: ["violations"] });
  return found.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.impact} ${v.id}: ${v.help}\\n` + v.nodes.slice(0, 4)
      .map((n) => `    ${n.target.join(" ")}: ${n.failureSummary.replace(/\\s+/g, " ")}`)
      .join("\\n"));
}"""


def _on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _axe_script() -> Path:
    """axe-core from deploy/tools (`make deploy-tools`); skip without it, but fail under CI."""
    if AXE.is_file():
        return AXE
    problem = f"no axe-core at {AXE.relative_to(REPO)}"
    if _on_ci():
        pytest.fail(f"{problem}; CI=true requires it: run `make deploy-tools`")
    pytest.skip(f"{problem}: run `make deploy-tools` to check the views' accessibility")


@pytest.fixture(scope="module")
def axe() -> Path:
    """The script, looked for before a server or a browser is started for nothing."""
    return _axe_script()


# -- the server and its data ---------------------------------------------------------------


@dataclass(frozen=True)
class Jobs:
    """The ids of the jobs submitted when the server started."""

    backtests: list[str]
    sweep: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The paper agent on sma_cross over SP500, trading every few seconds."""
    data = tmp_path_factory.mktemp("views-server")
    yield from start_server("views", data, "--speed", "10", "--strategy", "sma_cross")


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``ffe run`` told only where to begin: the demo's strategy over two years of bars, all at
    once, so that its replay has ended within a second of the server's start."""
    data = tmp_path_factory.mktemp("demo-server")
    yield from start_server("demo", data, "--start", "2017-01-01", "--speed", "0")


def _context(browser: Browser, viewport: str) -> BrowserContext:
    # The pages' Content-Security-Policy allows no inline script, which is how axe is injected;
    # with reduced motion a row's arrival flash is not caught half-way by the contrast check.
    return browser.new_context(
        viewport=VIEWPORTS[viewport], bypass_csp=True, reduced_motion="reduce"
    )


def _log_in(context: BrowserContext, server: Server) -> None:
    """Log in as admin. A 429 is waited out as its Retry-After says, as a browser's user would
    (the server lets only a few password checks from one address through at once: the
    module's first logins come within a second of each other)."""
    body = {"username": "admin", "password": server.password}
    for _ in range(5):
        answer = context.request.post(f"{server.url}/api/v1/auth/login", data=body, headers=AS_PAGE)
        if answer.status != 429:
            break
        time.sleep(min(5.0, float(answer.headers.get("retry-after", "1"))))
    assert answer.ok, f"log in: {answer.status} {answer.text()}"


@pytest.fixture(scope="module")
def jobs(browser: Browser, server: Server) -> Jobs:
    """Two backtests and a sweep, queued at once so that they finish while the first views
    are visited."""
    context = browser.new_context()
    try:
        _log_in(context, server)

        def post(path: str, body: dict[str, Any]) -> str:
            answer = context.request.post(f"{server.url}/api/v1{path}", data=body, headers=AS_PAGE)
            assert answer.status == 202, f"POST {path}: {answer.status} {answer.text()}"
            return str(answer.json()["id"])

        backtests = [post("/backtests", {"symbols": ["SP500"], **RANGE, **b}) for b in BACKTESTS]
        return Jobs(backtests, post("/sweeps", {**SWEEP, **RANGE}))
    finally:
        context.close()


@pytest.fixture(scope="module")
def pages(browser: Browser, server: Server, jobs: Jobs) -> Iterator[dict[str, Page]]:
    """One logged-in page per viewport, kept for the module."""
    contexts = {name: _context(browser, name) for name in VIEWPORTS}
    try:
        opened = {}
        for name, context in contexts.items():
            context.set_default_timeout(15_000)
            _log_in(context, server)
            opened[name] = context.new_page()
        yield opened
    finally:
        for context in contexts.values():
            context.close()


# -- the views -----------------------------------------------------------------------------


def _rows(page: Page, testid: str) -> None:
    expect(page.get_by_test_id(testid).locator(ROWS).first).to_be_visible(timeout=DATA_MS)


def _filled(page: Page, testid: str) -> None:
    expect(page.get_by_test_id(testid)).not_to_have_text("—", timeout=DATA_MS)


def _canvas(page: Page, testid: str) -> None:
    expect(page.get_by_test_id(testid).locator("canvas").first).to_be_visible(timeout=DATA_MS)


def _finished(page: Page, server: Server, job: str) -> None:
    """Wait, through the API and without touching the page, until a job finished."""
    deadline = time.monotonic() + 2 * DATA_MS / 1000
    status = "unknown"
    while time.monotonic() < deadline:
        answer = page.request.get(f"{server.url}/api/v1/jobs/{job}")
        assert answer.ok, f"GET job {job}: {answer.status} {answer.text()}"
        status = answer.json()["status"]
        if status == "finished":
            return
        assert status in ("queued", "running"), f"job {job} ended {status}: {answer.text()}"
        time.sleep(0.5)
    pytest.fail(f"job {job} still {status} after {2 * DATA_MS / 1000:.0f} s")


def _legend(page: Page, chart: str) -> None:
    """The equity chart names its buy-and-hold line (drawn; else the legend gives the reason)."""
    legend = page.get_by_test_id(chart).get_by_test_id("chart-legend")
    expect(legend).to_contain_text("Buy & hold SP500", timeout=DATA_MS)


def _overview(page: Page, server: Server, jobs: Jobs) -> str:
    page.goto(f"{server.url}/overview")
    _rows(page, "fills-table")  # positions may be closed: the agent halts at a 30 % drawdown
    _filled(page, "stat-equity")
    _canvas(page, "equity-chart")
    _legend(page, "equity-chart")
    # sma_cross goes long and short every few seconds: round trips close within the first ones
    _rows(page, "trades-table")
    expect(page.get_by_test_id("trades-summary")).to_contain_text(
        re.compile(r"[1-9]\d* closed"), timeout=DATA_MS
    )
    return "equity-chart"


def _close_dialog(page: Page, server: Server, jobs: Jobs) -> str:
    """The overview's Close on the open position asks first, naming symbol and quantity; the
    dialog, left open, is what the checks look at."""
    page.goto(f"{server.url}/overview")
    button = page.locator('#positions-table [data-testid^="close-"]').first
    expect(button).to_be_visible(timeout=DATA_MS)
    symbol = str(button.get_attribute("data-testid")).removeprefix("close-")
    button.click()
    expect(page.get_by_test_id("confirm-dialog")).to_be_visible()
    expect(page.locator("#confirm-title")).to_have_text(f"Close {symbol}?")
    label = page.get_by_test_id("confirm-yes").inner_text()
    named = re.fullmatch(rf"Close (-?\d[\d,]*(?:\.\d+)?) {re.escape(symbol)}", label)
    assert named, f"the confirm button does not name the quantity and {symbol}: {label!r}"
    size = named.group(1).removeprefix("-")
    expect(page.locator("#confirm-message")).to_contain_text(f" {size} {symbol} at market")
    return "confirm-dialog"


def _close_answered(page: Page, server: Server) -> None:
    """After the dialog's checks: Keep it sends nothing and the position stays; confirming
    sends the close and the page shows the agent's answer."""
    symbol = page.locator("#confirm-title").inner_text().removeprefix("Close ").rstrip("?")
    sent: list[str] = []

    def closing(request: Request) -> None:
        if request.url.endswith("/close"):
            sent.append(request.url)

    page.on("request", closing)
    try:
        page.get_by_test_id("confirm-no").click()
        expect(page.get_by_test_id("confirm-dialog")).to_be_hidden()
        expect(page.get_by_test_id(f"close-{symbol}")).to_be_visible()
    finally:
        page.remove_listener("request", closing)
    assert sent == [], f"Keep it sent {sent}"
    path = f"/api/v1/positions/{symbol}/close"
    held = page.locator("#positions-table tbody tr").filter(has_text=symbol).locator("td").nth(1)
    for _ in range(5):  # the replay may turn the position between the page's read and ours
        page.get_by_test_id(f"close-{symbol}").click()
        confirmed = page.get_by_test_id("confirm-yes").inner_text().split()[1]
        with page.expect_response(lambda r: r.url.endswith(path), timeout=DATA_MS) as waited:
            page.get_by_test_id("confirm-yes").click()
        answer = waited.value
        if answer.status != 409:
            break
        detail = str(answer.json().get("detail", ""))
        assert re.search(r"confirmed|no open position", detail), f"close refused: {detail}"
        expect(page.get_by_test_id("toast").filter(has_text=detail)).to_be_visible()
        expect(held).not_to_have_text(confirmed)  # the page read the position again
    assert answer.status in (200, 202), f"close: {answer.status} {answer.text()}"
    said = answer.json()
    assert said["status"] in ("sent", "waiting", "queued"), said
    expect(page.get_by_test_id("toast").filter(has_text=said["detail"])).to_be_visible()


def _agent(page: Page, server: Server, jobs: Jobs) -> str:
    page.goto(f"{server.url}/agent")
    expect(page.get_by_test_id("agent-state")).not_to_have_attribute("data-status", "unknown")
    _rows(page, "agent-decisions")
    # --strategy was given: not the demo, so no line on how the demo's strategy was chosen
    expect(page.get_by_test_id("agent-chosen")).to_be_hidden()
    expect(page.get_by_test_id("agent-summary")).to_be_hidden()  # the replay runs on
    return "agent-decisions"


def _analysis(page: Page, server: Server, jobs: Jobs) -> str:
    page.goto(f"{server.url}/analysis")
    _filled(page, "an-price")
    _rows(page, "forecast-table")
    _canvas(page, "analysis-chart")
    return "analysis-chart"


def _decisions(page: Page, server: Server, jobs: Jobs) -> str:
    """sma_cross states plain targets: every row says its outcome is not scored, with the
    sentence why, and the note above the table says it once."""
    page.goto(f"{server.url}/decisions")
    _rows(page, "decisions-table")
    outcomes = page.get_by_test_id("decisions-table").locator("td[data-outcome]")
    states = outcomes.evaluate_all("(cells) => cells.map((c) => [c.dataset.outcome, c.title])")
    assert states, "no outcome cell"
    assert all(state == "unscored" and "not scored" in why for state, why in states), states
    expect(outcomes.first).to_have_text("not scored")
    expect(page.get_by_test_id("outcome-note")).to_be_visible()
    expect(page.get_by_test_id("outcome-note")).to_contain_text("Outcomes are not scored: ")
    page.get_by_test_id("decisions-table").locator("tr.clickable").first.click()
    detail = page.get_by_test_id("decisions-table").locator("tr.detail")
    expect(detail).to_contain_text("Outcome: not scored")
    return "decisions-table"


def _health(page: Page, server: Server, jobs: Jobs) -> str:
    page.goto(f"{server.url}/health")
    expect(page.get_by_test_id("health-status")).not_to_have_attribute("data-status", "unknown")
    _rows(page, "health-table")
    return "health-table"


def _backtests(page: Page, server: Server, jobs: Jobs) -> str:
    for job in jobs.backtests:
        _finished(page, server, job)
    page.goto(f"{server.url}/backtests")
    _rows(page, "jobs-table")
    expect(page.get_by_test_id("runs-table").locator(ROWS)).to_have_count(len(jobs.backtests))
    return "runs-table"


def _backtest_job(page: Page, server: Server, jobs: Jobs) -> str:
    _finished(page, server, jobs.backtests[0])
    page.goto(f"{server.url}/backtests/{jobs.backtests[0]}")
    expect(page.get_by_test_id("job-status")).to_have_text("finished")
    _filled(page, "stat-sharpe")
    _canvas(page, "run-equity-chart")
    _legend(page, "run-equity-chart")
    # its round trips: rows in the table, an arrow on the price chart for each entry and exit
    trades = page.get_by_test_id("trades-table").get_by_test_id("trade-row")
    expect(trades.first).to_be_visible(timeout=DATA_MS)
    _canvas(page, "trades-chart")
    chart = page.get_by_test_id("trades-chart")
    expect(chart).to_have_attribute("data-markers", re.compile(r"^[1-9]\d*$"))
    closed = page.locator('[data-testid="trade-row"][data-status="closed"]').count()
    assert int(str(chart.get_attribute("data-markers"))) >= 2 * closed > 0
    # the heatmap of months: 2018's row with each month's return written in its cell
    months = page.get_by_test_id("monthly-table")
    expect(months.locator("tbody tr")).to_have_count(1)
    expect(months.locator("tbody th")).to_have_text("2018")
    written = months.locator("tbody td").filter(has_text=re.compile(r"^[+-]?\d+\.\d+%$"))
    assert written.count() >= 12, f"monthly cells: {months.locator('tbody td').all_inner_texts()}"
    return "run-equity-chart"


def _compare(page: Page, server: Server, jobs: Jobs) -> str:
    """The backtests page with its two runs ticked and compared."""
    _backtests(page, server, jobs)
    for box in page.get_by_test_id("runs-table").locator("input[type=checkbox]").all():
        box.check()
    page.get_by_test_id("compare-submit").click()
    _rows(page, "compare-table")
    _canvas(page, "compare-chart")
    return "compare-chart"


def _optimization(page: Page, server: Server, jobs: Jobs) -> str:
    _finished(page, server, jobs.sweep)
    page.goto(f"{server.url}/optimization?job={jobs.sweep}")
    _rows(page, "sweeps-table")
    expect(page.get_by_test_id("job-status")).to_have_text("finished")
    expect(page.get_by_test_id("sweep-table").locator(ROWS)).to_have_count(4)
    return "sweep-table"


View = Callable[[Page, Server, Jobs], str]
VIEWS: dict[str, View] = {
    "overview": _overview,
    "close_dialog": _close_dialog,
    "agent": _agent,
    "analysis": _analysis,
    "decisions": _decisions,
    "health": _health,
    "backtests": _backtests,
    "backtest_job": _backtest_job,
    "compare": _compare,
    "optimization": _optimization,
}
# First, at both sizes, what needs an open position: the agent halts and goes flat at a 30 %
# drawdown, at its 400th bar (40 s after it starts, at 10 bars/s). Then the views that wait
# for no job, so that the jobs have finished by the time the others are visited.
EARLY = ("close_dialog",)
ON_JOBS = ("backtests", "backtest_job", "compare", "optimization")
# What a view does once its checks passed (the dialog is checked open, then answered).
AFTER: dict[str, Callable[[Page, Server], None]] = {"close_dialog": _close_answered}
CASES = [
    pytest.param(viewport, view, id=f"{view}-{viewport}")
    for group in (EARLY, ["login", *(v for v in VIEWS if v not in EARLY + ON_JOBS)], ON_JOBS)
    for viewport in VIEWPORTS
    for view in group
]


# -- the checks ----------------------------------------------------------------------------


def _check(page: Page, main: str) -> None:
    """The main element shows, nothing sticks out sideways, and axe finds nothing serious."""
    expect(page.get_by_test_id(main)).to_be_visible()
    assert page.evaluate(FITS), f"wider than the screen: {page.evaluate(WIDEST)}"
    assert page.evaluate(CLIPPED_TABLES) == [], "tables cut off instead of scrolling"
    page.add_script_tag(path=str(AXE))
    violations = page.evaluate(AXE_RUN)
    assert not violations, "axe-core:\n" + "\n".join(violations)


def _check_navigation(page: Page, viewport: str) -> None:
    """A laptop shows every page's link on the top bar's one line; a phone folds them into
    the menu button."""
    links = page.locator("#nav > a")
    assert links.count() >= 7
    if viewport == "phone":
        expect(page.get_by_test_id("nav-toggle")).to_be_visible()
        expect(links.first).to_be_hidden()
        return
    expect(page.get_by_test_id("nav-toggle")).to_be_hidden()
    bar = page.locator(".topbar").bounding_box()
    assert bar is not None
    for link in links.all():
        box = link.bounding_box()
        assert box is not None, f"{link.inner_text()} is not shown"
        inside = (box["y"] - bar["y"], bar["y"] + bar["height"] - box["y"] - box["height"])
        assert min(inside) >= 0, f"{link.inner_text()} wraps out of the top bar: {inside}"


def _visit(page: Page, view: str, server: Server, jobs: Jobs, viewport: str) -> None:
    shot = artifacts_dir() / f"{view}-{viewport}.png"
    try:
        main = VIEWS[view](page, server, jobs)
    finally:  # the state it reached, data or not, for whoever reads a failure
        page.evaluate("window.scrollTo(0, 0)")  # else the sticky top bar lands mid-picture
        page.screenshot(path=str(shot), full_page=True)
    _check(page, main)
    _check_navigation(page, viewport)
    if view in AFTER:
        AFTER[view](page, server)


@pytest.mark.parametrize(("viewport", "view"), CASES)
def test_view_shows_its_data_fits_the_screen_and_passes_axe(
    axe: Path,
    viewport: str,
    view: str,
    browser: Browser,
    server: Server,
    pages: dict[str, Page],
    jobs: Jobs,
) -> None:
    if view != "login":
        _visit(pages[viewport], view, server, jobs, viewport)
        return
    context = _context(browser, viewport)  # logged out
    try:
        page = context.new_page()
        page.goto(f"{server.url}/login")
        expect(page.get_by_test_id("login-username")).to_be_focused()
        page.screenshot(path=str(artifacts_dir() / f"login-{viewport}.png"), full_page=True)
        _check(page, "login-submit")
    finally:
        context.close()


@pytest.mark.parametrize("width", [768, 1080])
def test_top_bar_folds_into_the_menu_before_it_overflows(
    width: int, server: Server, pages: dict[str, Page]
) -> None:
    # Between the phone and the laptop: a tablet, and the narrowest width that shows the links.
    page = pages["laptop"]
    page.set_viewport_size({"width": width, "height": 800})
    try:
        page.goto(f"{server.url}/health")
        expect(page.get_by_test_id("health-status")).not_to_have_attribute("data-status", "unknown")
        assert page.evaluate(FITS), f"wider than {width} px: {page.evaluate(WIDEST)}"
        folded = page.get_by_test_id("nav-toggle").is_visible()
        assert folded == (width < 1080), f"menu button shown: {folded} at {width} px"
    finally:
        page.set_viewport_size(VIEWPORTS["laptop"])


PERCENT = re.compile(r"^[+-]?\d+\.\d%$")


def _replay_summary(page: Page) -> None:
    """The demo's agent page: how its strategy was chosen, and the finished replay's panel."""
    chosen = "How it was chosen: sma_cross (fast=50, slow=200) on SP500, the best sharpe"
    expect(page.get_by_test_id("agent-chosen")).to_contain_text(chosen)
    expect(page.get_by_test_id("agent-summary")).to_be_visible(timeout=DATA_MS)  # polled: 5 s
    verdict = re.compile(r"^sma_cross on SP500 (beat|did not beat) buy and hold$")
    expect(page.locator("#summary-verdict")).to_have_text(verdict)
    for each in ("summary-return", "summary-benchmark", "summary-drawdown"):
        expect(page.locator(f"#{each}")).to_have_text(PERCENT)
    expect(page.locator("#summary-trades")).to_have_text(re.compile(r"^\d+$"))
    expect(page.locator("#summary-costs")).to_contain_text("Buy and hold: the same cash")
    steps = page.get_by_test_id("summary-next").locator("li code")
    expect(steps.first).to_have_text(re.compile(r"^ffe (tune|backtest) "))
    assert steps.count() >= 2, steps.all_inner_texts()


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_demo_agent_says_how_it_was_chosen_and_sums_up_its_finished_replay(
    axe: Path, viewport: str, browser: Browser, demo_server: Server
) -> None:
    context = _context(browser, viewport)  # cookies of its own: another server, another login
    try:
        context.set_default_timeout(15_000)
        _log_in(context, demo_server)
        page = context.new_page()
        page.goto(f"{demo_server.url}/agent")
        try:
            _replay_summary(page)
        finally:
            page.screenshot(
                path=str(artifacts_dir() / f"agent_finished-{viewport}.png"), full_page=True
            )
        _check(page, "agent-summary")
        _check_navigation(page, viewport)
    finally:
        context.close()
