"""The dashboard tells the truth while the paper agent runs fast (20 bars a second): the
Overview's cards add up on every sample, and the Agent page's bar is not behind the
decisions it lists."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from tests.e2e.browser.conftest import Server, start_server

# Chromium and a server of their own: one at a time, after the other tests (Makefile).
pytestmark = pytest.mark.serial

SAMPLES = 12
DECISIONS = "#agent-decisions tbody tr:not(.empty)"


@pytest.fixture(scope="module")
def fast_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("fast-server")
    yield from start_server("fast", data, "--speed", "20", "--strategy", "sma_cross")


def _money(text: str) -> float:
    return float(text.replace(",", ""))


def _cards(page: Page) -> tuple[float, float, float]:
    found = page.evaluate(
        "['stat-equity', 'stat-cash', 'stat-positions-value']"
        ".map((id) => document.getElementById(id).textContent)"
    )
    equity, cash, positions = (_money(text) for text in found)
    return equity, cash, positions


def test_overview_cards_when_agent_runs_fast_then_cash_and_positions_add_up(
    page: Page, fast_server: Server, logged_in: Any, shot: Any
) -> None:
    logged_in(page, fast_server)
    expect(page.get_by_test_id("stat-positions-value")).not_to_have_text("0.00", timeout=60_000)

    samples = []
    for _ in range(SAMPLES):
        time.sleep(0.5)
        samples.append(_cards(page))
    shot(page, "cards")

    wrong = [s for s in samples if abs(s[1] + s[2] - s[0]) > 0.011]  # two decimals shown
    assert not wrong, f"{len(wrong)} of {SAMPLES} samples do not add up: {wrong}"
    assert len({s[0] for s in samples}) > 1  # the cards moved with the agent meanwhile


def test_agent_page_when_agent_runs_fast_then_its_bar_is_not_behind_its_decisions(
    page: Page, fast_server: Server, logged_in: Any
) -> None:
    logged_in(page, fast_server)
    page.goto(f"{fast_server.url}/agent")
    expect(page.locator(f"{DECISIONS} td").first).to_be_visible(timeout=60_000)

    lags = []
    for _ in range(SAMPLES):
        time.sleep(0.5)
        bar_time, newest = page.evaluate(
            "[document.getElementById('fact-bar-time').textContent,"
            f" document.querySelector('{DECISIONS} td').textContent]"
        )
        lags.append((bar_time, newest))

    behind = [(bar, decided) for bar, decided in lags if bar < decided]
    assert not behind, f"the state card was behind its decisions: {behind}"
