"""The dashboard in a real browser against a real ``ffe run``: log in, watch the paper agent
trade, approve an order, run a backtest and read its report, cancel a waiting backtest and a
running sweep, use it on a phone, and stop everything in an emergency. Each step leaves a
screenshot in the test artifacts.

The emergency stop halts the shared paper agent, so it comes last in this module.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import Page, expect

# Chromium and a server of their own: one at a time, after the other tests (Makefile).
pytestmark = pytest.mark.serial

ROWS = "tbody tr:not(.empty)"  # a table's data rows, not its "nothing yet" note
TRADE_S = 60_000  # the replay trades within seconds; a busy runner gets a minute
NO_HORIZONTAL_OVERFLOW = "document.documentElement.scrollWidth <= window.innerWidth + 1"
# A chart has data when its canvases hold a patch of the equity colour (#4d9bff): the line,
# its area or its last-value label, none of which is drawn without a point.
CHART_DRAWN = """(testid) => [...document.querySelectorAll(`[data-testid="${testid}"] canvas`)]
  .some((canvas) => {
    if (!canvas.width || !canvas.height) return false;
    const px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let hits = 0;
    for (let i = 0; i < px.length; i += 4) {
      const [r, g, b, a] = [px[i], px[i + 1], px[i + 2], px[i + 3]];
      if (a > 200 && r > 50 && r < 110 && g > 130 && g < 180 && b > 230) hits += 1;
    }
    return hits > 50;
  })"""


def _api(page: Page, server: Any, path: str) -> Any:
    """GET an API route with the page's session cookie."""
    response = page.request.get(f"{server.url}/api/v1{path}")
    assert response.ok, f"GET {path}: {response.status} {response.text()}"
    return response.json()


def _eventually(check: Any, timeout_s: float = 30.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail with its last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            assert found, f"not within {timeout_s:.0f} s: {found!r}"
            return found
        time.sleep(0.5)


def _reload_until_visible(page: Page, locator: Any, timeout_s: float = 60.0) -> None:
    """Reload the page until ``locator`` shows: for data the page loads once and the stream
    may have announced before the page was listening."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            expect(locator).to_be_visible(timeout=5_000)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            page.reload()


def test_log_in_then_watch_the_paper_agent_trade(page: Page, paper_server: Any, shot: Any) -> None:
    page.goto(f"{paper_server.url}/overview")
    expect(page).to_have_url(re.compile(r"/login\?next=(/|%2F)overview$"))
    page.get_by_test_id("login-username").fill("admin")
    page.get_by_test_id("login-password").fill("not-the-password")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("login-error")).to_have_text("Wrong username or password.")
    shot(page, "wrong-password")

    page.get_by_test_id("login-password").fill(paper_server.password)
    page.get_by_test_id("login-submit").click()
    expect(page).to_have_url(f"{paper_server.url}/overview")
    expect(page.get_by_test_id("agent-pill")).to_have_text("agent running")

    fills = page.get_by_test_id("fills-table").locator(ROWS)
    expect(fills.first).to_contain_text("SP500", timeout=TRADE_S)
    expect(page.get_by_test_id("positions-table").locator(ROWS).first).to_contain_text(
        "SP500", timeout=TRADE_S
    )
    page.wait_for_function(CHART_DRAWN, arg="equity-chart", timeout=TRADE_S)
    expect(page.get_by_test_id("stat-equity")).not_to_have_text("—")
    shot(page, "trading")

    # Live: the next fill arrives over the stream without a reload.
    newest = fills.first.inner_text()
    expect(fills.first).not_to_have_text(newest, timeout=TRADE_S)
    shot(page, "next-fill")


def test_approve_a_waiting_order_then_it_fills(
    page: Page, approval_server: Any, logged_in: Any, shot: Any
) -> None:
    logged_in(page, approval_server)
    page.get_by_test_id("nav-agent").click()
    expect(page).to_have_url(f"{approval_server.url}/agent")
    waiting = page.get_by_test_id("approvals-table").locator("tbody tr[data-approval]")
    expect(waiting.first).to_contain_text("SP500", timeout=TRADE_S)
    approval_id = waiting.first.get_attribute("data-approval")
    shot(page, "waiting")

    page.get_by_test_id(f"approve-{approval_id}").click()
    expect(page.get_by_test_id("toast").filter(has_text="Approved")).to_be_visible()
    expect(page.locator(f'tr[data-approval="{approval_id}"]')).to_have_count(0)
    shot(page, "approved")

    # The fill is journaled within seconds, maybe after the overview loaded its fills.
    page.get_by_test_id("nav-overview").click()
    filled = page.get_by_test_id("fills-table").locator(ROWS).first
    _reload_until_visible(page, filled)
    expect(filled).to_contain_text("SP500")
    shot(page, "filled")
    sent = _eventually(lambda: _api(page, approval_server, "/approvals?status=sent")["items"])
    assert [str(a["id"]) for a in sent] == [approval_id]


def test_run_a_backtest_then_open_its_report(
    page: Page, paper_server: Any, logged_in: Any, shot: Any
) -> None:
    logged_in(page, paper_server)
    page.get_by_test_id("nav-backtests").click()
    page.get_by_test_id("backtest-strategy").select_option("sma_cross")
    page.get_by_test_id("backtest-symbol").select_option("SP500")
    shot(page, "form")
    page.get_by_test_id("backtest-submit").click()

    expect(page).to_have_url(re.compile(r"/backtests/[0-9a-f-]{8,}$"))
    expect(page.get_by_test_id("job-status")).to_have_text("finished", timeout=90_000)
    expect(page.get_by_test_id("job-progress")).to_have_attribute("aria-valuenow", "100")
    expect(page.get_by_test_id("stat-sharpe")).not_to_have_text("—")
    shot(page, "finished")

    # the trader's views: round trips in a table, arrows on the price chart, and returns
    # by month and day with each number written in its cell
    expect(page.get_by_test_id("trade-row").first).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("trades-summary")).to_contain_text("round trips")
    expect(page.get_by_test_id("trades-chart").locator("canvas").first).to_be_visible()
    expect(page.get_by_test_id("monthly-table")).to_contain_text("%")
    expect(page.get_by_test_id("daily-returns").locator("table").first).to_be_visible()
    expect(page.get_by_test_id("job-params")).not_to_contain_text("{")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "trades")

    page.get_by_test_id("open-report").click()
    report = page.frame_locator('[data-testid="report-frame"]')
    expect(report.locator("h1")).to_contain_text("sma_cross on SP500", timeout=30_000)
    expect(report.locator("#ffe-chart .main-svg").first).to_be_visible(timeout=30_000)
    shot(page, "report")


def test_cancel_a_waiting_backtest_then_the_running_sweep_from_their_pages(
    page: Page, paper_server: Any, logged_in: Any, shot: Any
) -> None:
    logged_in(page, paper_server)
    # A sweep of about 2,000 backtests holds the only job slot, so the backtest waits.
    grid = {"fast": list(range(2, 42)), "slow": list(range(50, 100))}
    sweep = {"strategy": "sma_cross", "symbol": "SP500", "grid": grid}
    as_page = {"X-Requested-With": "ffe"}  # what the dashboard's own calls send
    held = page.request.post(f"{paper_server.url}/api/v1/sweeps", data=sweep, headers=as_page)
    assert held.status == 202, held.text()
    try:
        page.get_by_test_id("nav-backtests").click()
        page.get_by_test_id("backtest-strategy").select_option("sma_cross")
        page.get_by_test_id("backtest-symbol").select_option("SP500")
        page.get_by_test_id("backtest-submit").click()
        expect(page).to_have_url(re.compile(r"/backtests/[0-9a-f-]{8,}$"))
        expect(page.get_by_test_id("job-status")).to_have_text("queued")
        expect(page.get_by_test_id("job-waiting")).to_be_hidden()  # `ffe run` runs jobs
        job_id = page.url.rsplit("/", 1)[1]

        page.get_by_test_id("cancel-job").click()
        dialog = page.get_by_test_id("confirm-dialog")
        expect(dialog).to_contain_text("Cancel this backtest?")
        shot(page, "confirm")
        page.get_by_test_id("confirm-yes").click()

        expect(page.get_by_test_id("job-status")).to_have_text("cancelled")
        expect(page.get_by_test_id("job-error")).to_contain_text("stopped: cancelled by")
        expect(page.get_by_test_id("cancel-job")).to_be_hidden()
        shot(page, "cancelled")
        stored = _api(page, paper_server, f"/jobs/{job_id}")
        assert (stored["status"], stored["started_at"]) == ("cancelled", None)

        page.goto(f"{paper_server.url}/optimization?job={held.json()['id']}")  # the sweep
        expect(page.get_by_test_id("job-status")).to_have_text("running")
        page.get_by_test_id("cancel-job").click()
        expect(dialog).to_contain_text("Cancel this sweep?")
        page.get_by_test_id("confirm-yes").click()
        expect(page.get_by_test_id("job-status")).to_have_text("cancelled")
        expect(page.get_by_test_id("cancel-job")).to_be_hidden()
        shot(page, "sweep-cancelled")
    finally:  # free the only job slot for the tests after this one, whatever happened
        url = f"{paper_server.url}/api/v1/jobs/{held.json()['id']}/cancel"
        page.request.post(url, headers=as_page)
    sweep = _api(page, paper_server, f"/jobs/{held.json()['id']}")
    assert (sweep["status"], sweep["error"]) == ("cancelled", "cancelled by user:admin")


def test_phone_layout_fits_the_screen_and_the_menu_toggles(
    page: Page, paper_server: Any, logged_in: Any, shot: Any
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    logged_in(page, paper_server)
    # Filled in: the widest content (tables, chart) is on the page before measuring.
    expect(page.get_by_test_id("agent-pill")).to_have_text("agent running")
    expect(page.get_by_test_id("fills-table").locator(ROWS).first).to_be_visible()
    page.wait_for_function(CHART_DRAWN, arg="equity-chart")
    assert page.evaluate(NO_HORIZONTAL_OVERFLOW), "the overview is wider than a phone"
    menu, toggle = page.get_by_test_id("nav-agent"), page.get_by_test_id("nav-toggle")
    expect(menu).to_be_hidden()
    shot(page, "overview")

    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(menu).to_be_visible()
    shot(page, "menu-open")
    toggle.click()
    expect(menu).to_be_hidden()

    toggle.click()
    menu.click()
    expect(page).to_have_url(f"{paper_server.url}/agent")
    expect(page.get_by_test_id("agent-state")).not_to_have_attribute("data-status", "unknown")
    assert page.evaluate(NO_HORIZONTAL_OVERFLOW), "the agent page is wider than a phone"
    shot(page, "agent")


def test_emergency_stop_halts_the_agent_and_closes_every_position(
    page: Page, paper_server: Any, logged_in: Any, shot: Any
) -> None:
    logged_in(page, paper_server)
    positions = page.get_by_test_id("positions-table").locator("tbody tr")
    expect(positions.first).to_contain_text("SP500", timeout=TRADE_S)
    page.get_by_test_id("nav-agent").click()
    state = page.get_by_test_id("agent-state")
    expect(state).to_have_text("running")

    page.get_by_test_id("emergency-stop").click()
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Emergency stop?")
    shot(page, "confirm")
    page.get_by_test_id("confirm-yes").click()
    expect(dialog).to_be_hidden()
    expect(state).to_have_text("halted", timeout=30_000)
    expect(page.get_by_test_id("agent-halted")).to_contain_text("emergency stop")
    shot(page, "halted")

    page.get_by_test_id("nav-overview").click()
    expect(positions).to_have_text(["No open positions"])
    expect(page.get_by_test_id("agent-pill")).to_have_text("agent halted")
    shot(page, "flat")
    held = _api(page, paper_server, "/positions")["items"]
    assert [p for p in held if p["quantity"]] == []
