"""Dashboard pages through the whole app: each page renders for a logged-in user, a stranger
is sent to log in, and a name that is no page answers as any unknown path does."""

from __future__ import annotations

import pytest

PAGES = ["overview", "agent", "decisions", "backtests", "optimization", "analysis", "health"]


@pytest.fixture
def logged_in(api, password):
    response = api.client.post(
        "/api/v1/auth/login", json={"username": "viewer", "password": password}
    )
    assert response.status_code == 200
    return api


def test_each_page_when_logged_in_then_renders_its_template(logged_in):
    responses = {name: logged_in.client.get(f"/{name}") for name in PAGES}

    for name, response in responses.items():
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith("text/html"), name
        assert response.headers["cache-control"] == "no-store", name
        assert f"/static/js/pages/{name}.js?v=" in response.text, name


def test_backtest_job_page_when_logged_in_then_renders(logged_in):
    response = logged_in.client.get("/backtests/" + "0" * 32)

    assert response.status_code == 200
    assert "/static/js/pages/backtest_job.js?v=" in response.text


def test_each_page_when_logged_out_then_redirects_to_login_with_next(api):
    names = [*PAGES, "backtests/abc"]
    responses = {name: api.client.get(f"/{name}", follow_redirects=False) for name in names}

    answers = {name: (r.status_code, r.headers.get("location")) for name, r in responses.items()}
    assert answers == {name: (303, f"/login?next=/{name}") for name in names}


def test_unknown_page_when_logged_out_or_in_then_404(api, password):
    asked = [
        (method, path)
        for method in ("GET", "HEAD", "POST")
        for path in ("/nonsense", "/Overview", "/backtest_job", "/overview.html")
    ]
    strangers = {ask: api.client.request(*ask, follow_redirects=False) for ask in asked}
    api.client.post("/api/v1/auth/login", json={"username": "viewer", "password": password})
    users = {ask: api.client.request(*ask, follow_redirects=False) for ask in asked}

    assert {ask: r.status_code for ask, r in strangers.items()} == dict.fromkeys(asked, 404)
    assert {ask: r.status_code for ask, r in users.items()} == dict.fromkeys(asked, 404)


def test_page_route_does_not_take_the_paths_of_other_routes(logged_in):
    client = logged_in.client

    assert client.get("/metrics").headers["content-type"].startswith("text/plain")
    assert client.get("/docs").status_code == 200
    assert client.get("/login").status_code == 200
    assert client.get("/static/css/app.css").status_code == 200
    assert client.get("/static", follow_redirects=False).headers["location"].endswith("/static/")
    assert client.get("/overview/", follow_redirects=False).status_code == 307
    assert client.post("/overview").status_code == 405


def _positions_header(api, password, user: str) -> str:
    login = {"username": user, "password": password}
    assert api.client.post("/api/v1/auth/login", json=login).status_code == 200
    page = api.client.get("/overview").text
    start = page.index('id="positions-table"')
    return page[start : page.index("</thead>", start)]


def test_overview_when_trader_then_positions_have_a_close_column_and_trades_table(api, password):
    header = _positions_header(api, password, "trader")

    assert header.count("<th ") == 7
    assert 'id="trades-table"' in api.client.get("/overview").text


def test_overview_when_viewer_then_no_close_column(api, password):
    assert _positions_header(api, password, "viewer").count("<th ") == 6
