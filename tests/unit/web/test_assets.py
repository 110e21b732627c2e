"""The dashboard's templates and assets: every page renders, every asset it names ships in
the package, read-only users get no trade controls, and nothing is fetched from another host."""

from __future__ import annotations

import posixpath
import re
from importlib.resources import files
from importlib.resources.abc import Traversable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ffe.api.auth import Principal
from ffe.web.render import CHART_LIBRARY, PAGES, render, static_root

READER = Principal(name="t", kind="user", scopes=frozenset({"read"}))
TRADER = Principal(name="t", kind="user", scopes=frozenset({"read", "trade"}))
# page name -> extra template context
ALL_PAGES: dict[str, dict[str, object]] = {
    **{name: {} for name, _ in PAGES},
    "backtest_job": {"job_id": "0123456789abcdef0123456789abcdef"},
}
TRADE_TESTIDS = (
    "agent-start",
    "agent-stop",
    "agent-pause",
    "agent-resume",
    "emergency-stop",
    "backtest-submit",
    "sweep-submit",
)
CHART_PAGES = {"overview", "backtests", "backtest_job", "analysis"}


def _page(name: str, user: Principal = READER) -> str:
    return render(f"{name}.html", user=user, page=name, **ALL_PAGES[name])


def _login() -> str:
    return render("login.html", page="login", next_path="/overview")


def _walk(root: Traversable, prefix: str = "") -> dict[str, Traversable]:
    """Every file under ``root`` by its path relative to it."""
    found: dict[str, Traversable] = {}
    for entry in root.iterdir():
        path = f"{prefix}{entry.name}"
        found.update(_walk(entry, f"{path}/") if entry.is_dir() else {path: entry})
    return found


def _own_scripts() -> dict[str, Traversable]:
    return {
        path: f
        for path, f in _walk(static_root()).items()
        if path.endswith(".js") and not path.startswith("vendor/")
    }


def _own_sources() -> list[Traversable]:
    """Templates, stylesheets and scripts we wrote (not the vendored library)."""
    templates = list(_walk(files("ffe.web").joinpath("templates")).values())
    styles = [f for path, f in _walk(static_root()).items() if path.endswith(".css")]
    return templates + styles + list(_own_scripts().values())


@pytest.mark.parametrize("name", sorted(ALL_PAGES))
def test_every_page_renders_for_a_reader(name: str) -> None:
    html = _page(name)

    assert html.startswith("<!doctype html>")
    assert f'data-page="{name}"' in html
    assert f"/static/js/pages/{name}.js?v=" in html
    assert 'data-testid="toast"' not in html  # toasts are made by the script
    assert 'data-testid="confirm-dialog"' in html


def test_login_page_has_its_form_and_no_navigation() -> None:
    html = _login()

    for testid in ("login-username", "login-password", "login-submit"):
        assert f'data-testid="{testid}"' in html
    assert 'data-next="/overview"' in html
    assert 'data-testid="nav-overview"' not in html


@pytest.mark.parametrize("name", sorted(ALL_PAGES))
def test_every_static_url_in_a_page_ships_in_the_package(name: str) -> None:
    html = _page(name, TRADER) + _login()
    urls = set(re.findall(r"""["'](/static/[^"'?#]+)""", html))

    assert urls, "a page names at least its stylesheet and script"
    for url in urls:
        assert static_root().joinpath(url.removeprefix("/static/")).is_file(), url


def test_every_module_a_script_imports_ships_in_the_package() -> None:
    scripts = _own_scripts()

    assert "js/app.js" in scripts
    for path, script in scripts.items():
        for target in re.findall(r"""\bfrom\s+["']([^"']+)["']""", script.read_text()):
            assert target.startswith("."), f"{path} imports {target}: only relative modules"
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
            assert resolved in scripts, f"{path} imports {target}"


def test_navigation_links_every_page_and_marks_the_current_one() -> None:
    html = _page("decisions")

    for name, _ in PAGES:
        assert f'data-testid="nav-{name}"' in html
    assert re.search(r'href="/decisions" data-testid="nav-decisions" aria-current="page"', html)


@pytest.mark.parametrize("name", sorted(ALL_PAGES))
def test_read_only_user_gets_no_trade_controls(name: str) -> None:
    html = _page(name, READER)

    assert 'data-can-trade="false"' in html
    for testid in TRADE_TESTIDS:
        assert f'data-testid="{testid}"' not in html


def test_trader_gets_the_agent_controls_and_forms() -> None:
    agent = _page("agent", TRADER)

    assert 'data-can-trade="true"' in agent
    for testid in ("agent-start", "agent-stop", "agent-pause", "agent-resume", "emergency-stop"):
        assert f'data-testid="{testid}"' in agent
    assert 'data-testid="backtest-submit"' in _page("backtests", TRADER)
    assert 'data-testid="sweep-submit"' in _page("optimization", TRADER)


@pytest.mark.parametrize(
    ("name", "testids"),
    [
        ("overview", ["equity-chart", "positions-table", "fills-table"]),
        ("agent", ["agent-state", "approvals-table"]),
        ("decisions", ["decisions-table", "calibration-chart"]),
        ("backtests", ["backtest-form", "backtest-strategy", "backtest-symbol"]),
        (
            "backtest_job",
            ["job-status", "job-progress", "job-waiting", "open-report", "report-frame"],
        ),
        ("optimization", ["sweep-heatmap", "job-status", "job-progress", "sweep-waiting"]),
        ("analysis", ["analysis-chart"]),
        ("health", ["health-table"]),
    ],
)
def test_pages_carry_the_test_hooks(name: str, testids: list[str]) -> None:
    html = _page(name, TRADER)

    for testid in testids:
        assert f'data-testid="{testid}"' in html, testid


def test_chart_library_loads_only_on_pages_that_chart() -> None:
    for name in ALL_PAGES:
        loads = CHART_LIBRARY in _page(name)
        assert loads == (name in CHART_PAGES), name
    assert CHART_LIBRARY not in _login()


def test_vendored_chart_library_ships_with_its_license() -> None:
    library = static_root().joinpath(CHART_LIBRARY)
    vendor = static_root().joinpath("vendor")

    assert len(library.read_bytes()) > 100_000
    assert "window.LightweightCharts" in library.read_text()
    assert "Apache License" in vendor.joinpath("LICENSE").read_text()
    assert "lightweight-charts" in vendor.joinpath("README.md").read_text()


def test_chart_pages_credit_the_chart_library_in_their_footer() -> None:
    # Its licence asks for the attribution notice and a link to TradingView on the pages
    # that use it; the logo the library would draw over each chart is turned off instead.
    for name in ALL_PAGES:
        footer = re.search(r"<footer class=\"footer\">(.*?)</footer>", _page(name), re.DOTALL)
        assert (footer is not None) == (name in CHART_PAGES), name
        if footer is not None:
            assert 'href="https://www.tradingview.com/"' in footer.group(1)
            assert "Copyright © 2023 TradingView, Inc." in footer.group(1)
    charts = static_root().joinpath("js", "charts.js").read_text()
    assert "attributionLogo: false" in charts


def test_page_values_are_escaped() -> None:
    html = render(
        "backtest_job.html",
        user=Principal(name="<script>x</script>", kind="user", scopes=frozenset({"read"})),
        page="backtest_job",
        job_id='"><img src=x onerror=alert(1)>',
    )

    assert "<script>x</script>" not in html
    assert "<img src=x" not in html


# XML namespace names are identifiers that are never fetched, and a link's target is loaded only
# when a person follows it.
_NAMESPACE = re.compile(r"https?://www\.w3\.org/\d{4}/\w+")
_LINK = re.compile(r"<a\s[^>]*?href=\"https://[^\"]+\"")


def test_no_template_or_script_reaches_another_host() -> None:
    for source in _own_sources():
        text = _LINK.sub("", _NAMESPACE.sub("", source.read_text()))
        found = re.findall(r"https?://[^\s\"'`)]+|//[a-z0-9.-]+\.[a-z]{2,}/", text, re.IGNORECASE)
        assert not found, f"{source.name}: {found}"


# -- the routes that serve them -----------------------------------------------------------------


@pytest.fixture
def client() -> TestClient:
    from ffe.api.routes import pages

    app = FastAPI()
    app.include_router(pages.router)
    pages.mount_static(app)
    return TestClient(app)


@pytest.mark.parametrize(
    ("asked", "kept"),
    [
        ("/decisions?symbol=SP500", "/decisions?symbol=SP500"),
        ("//elsewhere.example/x", "/overview"),
        ("/\\elsewhere.example", "/overview"),
        ("https://elsewhere.example/", "/overview"),
        ("", "/overview"),
    ],
)
def test_login_page_returns_only_to_a_page_of_this_site(
    client: TestClient, asked: str, kept: str
) -> None:
    response = client.get("/login", params={"next": asked})

    assert response.status_code == 200
    assert f'data-next="{kept}"' in response.text
    assert "default-src 'self'" in response.headers["content-security-policy"]


def test_home_redirects_to_the_overview(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)

    assert response.status_code == 303
    assert response.headers["location"] == "/overview"


def test_versioned_and_vendored_assets_are_cached_for_good(client: TestClient) -> None:
    versioned = client.get("/static/css/app.css?v=1")
    vendored = client.get(f"/static/{CHART_LIBRARY}")
    plain = client.get("/static/js/app.js")

    assert "immutable" in versioned.headers["cache-control"]
    assert "immutable" in vendored.headers["cache-control"]
    assert plain.headers["cache-control"] == "no-cache"
    assert plain.headers["content-type"].startswith("text/javascript")
    assert client.get("/static/js/missing.js").status_code == 404
