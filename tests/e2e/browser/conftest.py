"""Fixtures of the browser tests: Debian's Chromium driven by Playwright, a real ``ffe run``
server per module, a logged-in page, and screenshots kept as test artifacts.

Sync Playwright runs its own event loop, so every fixture and test here is a plain function:
none may run inside pytest-asyncio's loop.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

REPO = Path(__file__).resolve().parents[3]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
STARTUP_S = 120.0  # a cold import of the API takes ~10 s on a busy 2-core runner

Shot = Callable[[Page, str], Path]


def _on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def artifacts_dir() -> Path:
    """Where screenshots and server logs go: $FFE_TEST_ARTIFACTS (default test-artifacts,
    relative to the repository) / browser."""
    base = Path(os.environ.get("FFE_TEST_ARTIFACTS", "test-artifacts"))
    folder = (base if base.is_absolute() else REPO / base) / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# -- the browser ---------------------------------------------------------------------------


def _chromium_path() -> str:
    """Debian's Chromium (or $FFE_CHROMIUM); skip without it, but fail under CI=true."""
    path = os.environ.get("FFE_CHROMIUM", "/usr/bin/chromium")
    if os.access(path, os.X_OK):
        return path
    problem = f"no Chromium at {path}"
    if _on_ci():
        pytest.fail(f"{problem}; CI=true requires it (.ci/run runs apt-get install chromium)")
    pytest.skip(f"{problem}: apt-get install chromium (or set FFE_CHROMIUM) to run browser tests")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = _chromium_path()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Keep each phase's report on the test, so the page fixture knows whether it failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _test_name(request: pytest.FixtureRequest) -> str:
    name = request.node.name.removeprefix("test_")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Shot:
    """``shot(page, "step")`` saves ``<test>-<step>.png`` to the artifacts directory."""
    folder, test = artifacts_dir(), _test_name(request)

    def take(page: Page, step: str) -> Path:
        path = folder / f"{test}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest, shot: Shot) -> Iterator[Page]:
    """A fresh browser context (cookies of its own) with one page; on a failure its last
    state is saved as ``<test>-failure.png``."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    expect.set_options(timeout=15_000)
    opened = context.new_page()
    try:
        yield opened
    finally:
        failed = getattr(request.node, "report_call", None)
        if failed is not None and failed.failed:
            for index, each in enumerate(context.pages):
                shot(each, "failure" if index == 0 else f"failure-{index}")
        context.close()


# -- the server ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """A running ``ffe run``: where it answers and the password of its first user."""

    url: str
    password: str
    log: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_live(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"ffe run exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health/live", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(f"ffe run did not answer /health/live in {STARTUP_S:.0f} s:\n{log.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)  # as Ctrl-C: the agent stops and the journal flushes
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def start_server(
    name: str, data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Run ``python -m ffe run ARGS`` on a free port with its own data and config
    directories; yield it once live, stop it with SIGINT and keep its log as an artifact."""
    port = _free_port()
    log = data_dir / "server.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FFE")}
    environment.update(
        FFE__DATA__DIR=str(data_dir),
        FFE_CONFIG_DIR=str(data_dir),  # no config.yaml there: embedded defaults only
        NO_COLOR="1",
        PYTHONUNBUFFERED="1",
        **(env or {}),
    )
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "ffe", "run", "--port", str(port), *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=data_dir,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_live(url, process, log)
        # the banner, with the first password, is printed once the server has answered
        deadline = time.monotonic() + 15
        found = None
        while found is None and time.monotonic() < deadline:
            found = re.search(r"log in as admin with password (\S+)", log.read_text())
            time.sleep(0.1)
        if found is None:
            pytest.fail(f"ffe run printed no first password:\n{log.read_text()}")
        yield Server(url, found.group(1), log)
    finally:
        _stop(process)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # each xdist worker has its own
        shutil.copyfile(log, artifacts_dir() / f"server-{name}{'-' if worker else ''}{worker}.log")


@pytest.fixture(scope="module")
def paper_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The paper agent on sma_cross over SP500, every order sent at once: at 10 bars/s it
    trades every few seconds and replays for eight minutes, longer than the module runs. Its
    drawdown halt is at 95 %: at the default 30 % this strategy halted at bar 401 (about 40 s
    in), leaving the later tests of a slow run no position to close."""
    data = tmp_path_factory.mktemp("paper-server")
    env = {"FFE__RISK__MAX_DRAWDOWN": "0.95"}
    yield from start_server("paper", data, "--speed", "10", "--strategy", "sma_cross", env=env)


@pytest.fixture(scope="module")
def approval_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The paper agent with manual approval: in a replay it waits for each order's verdict."""
    data = tmp_path_factory.mktemp("approval-server")
    env = {"FFE__AGENT__APPROVAL": "manual"}
    yield from start_server("approval", data, "--speed", "5", "--strategy", "sma_cross", env=env)


def log_in(page: Page, server: Server, password: str | None = None) -> None:
    """Fill the login form as admin; with no password, the right one."""
    page.goto(f"{server.url}/login")
    page.get_by_test_id("login-username").fill("admin")
    page.get_by_test_id("login-password").fill(password or server.password)
    page.get_by_test_id("login-submit").click()


@pytest.fixture
def logged_in() -> Callable[[Page, Server], None]:
    """``logged_in(page, server)``: log in through the form and land on the overview."""

    def enter(page: Page, server: Server) -> None:
        log_in(page, server)
        expect(page).to_have_url(f"{server.url}/overview")

    return enter
