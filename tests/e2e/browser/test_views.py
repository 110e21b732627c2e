"""Every dashboard view at a laptop's and a phone's size: it loads its data, fits the screen
without a horizontal scroll bar, shows its main element, and passes axe-core's accessibility
rules with no serious or critical violation. Each visit leaves ``<view>-<viewport>.png`` in
the test artifacts.

One server, one browser and one logged-in context per viewport serve the whole module, and
each view is visited once per viewport: CI's serial group has little time to spare.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
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


def _context(browser: Browser, viewport: str) -> BrowserContext:
    # The pages' Content-Security-Policy allows no inline script, which is how axe is injected;
    # with reduced motion a row's arrival flash is not caught half-way by the contrast check.
    return browser.new_context(
        viewport=VIEWPORTS[viewport], bypass_csp=True, reduced_motion="reduce"
    )


def _log_in(context: BrowserContext, server: Server) -> None:
    body = {"username": "admin", "password": server.password}
    answer = context.request.post(f"{server.url}/api/v1/auth/login", data=body, headers=AS_PAGE)
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


def _overview(page: Page, server: Server, jobs: Jobs) -> str:
    page.goto(f"{server.url}/overview")
    _rows(page, "fills-table")  # positions may be closed: the agent halts at a 30 % drawdown
    _filled(page, "stat-equity")
    _canvas(page, "equity-chart")
    return "equity-chart"


def _agent(page: Page, server: Server, jobs: Jobs) -> str:
    page.goto(f"{server.url}/agent")
    expect(page.get_by_test_id("agent-state")).not_to_have_attribute("data-status", "unknown")
    _rows(page, "agent-decisions")
    return "agent-decisions"


def _analysis(page: Page, server: Server, jobs: Jobs) -> str:
    page.goto(f"{server.url}/analysis")
    _filled(page, "an-price")
    _rows(page, "forecast-table")
    _canvas(page, "analysis-chart")
    return "analysis-chart"


def _decisions(page: Page, server: Server, jobs: Jobs) -> str:
    page.goto(f"{server.url}/decisions")
    _rows(page, "decisions-table")
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
    "agent": _agent,
    "analysis": _analysis,
    "decisions": _decisions,
    "health": _health,
    "backtests": _backtests,
    "backtest_job": _backtest_job,
    "compare": _compare,
    "optimization": _optimization,
}
# The views that wait for no job first, at both sizes, so that the jobs have finished by the
# time the others are visited.
ON_JOBS = ("backtests", "backtest_job", "compare", "optimization")
CASES = [
    pytest.param(viewport, view, id=f"{view}-{viewport}")
    for group in (["login", *(v for v in VIEWS if v not in ON_JOBS)], ON_JOBS)
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
