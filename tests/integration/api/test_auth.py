"""Who may do what: every route needs auth but health, keys carry scopes, sessions expire,
cookie sessions need the CSRF header, CORS is closed unless configured, and production
refuses a weak secret."""

from __future__ import annotations

import re
import secrets

import pytest
from starlette.routing import Mount
from starlette.websockets import WebSocketDisconnect

from ffe.config import load_settings
from ffe.domain.errors import ConfigError

PUBLIC = {"/health/live", "/health/ready", "/login", "/api/v1/auth/login"}


def _concrete(path: str) -> str:
    """A path for a route template: hex ids, numbers and symbols where the template has
    parameters."""
    fill = {
        "job_id": "0" * 32,
        "run_id": "abcd",
        "prefix": "deadbeef",
        "symbol": "SP500",
        "page": "overview",
    }
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: fill.get(m.group(1), "1"), path)


def _routes(routes):
    """Every (path, methods) of the app, websocket routes with methods None; routers that
    FastAPI keeps as included groups are walked into."""
    for route in routes:
        if hasattr(route, "effective_candidates"):  # an included router (FastAPI >= 0.13x)
            yield from _routes(route.effective_candidates())
        elif isinstance(route, Mount):
            continue  # static assets: CSS, JS and the chart library, no data
        elif "websocket" in type(getattr(route, "original_route", route)).__name__.lower():
            yield getattr(route, "original_route", route).path, None
        else:
            yield route.path, set(route.methods or ()) - {"HEAD", "OPTIONS"}


def test_every_route_but_health_and_login_requires_auth(api):
    checked = set()
    for template, methods in _routes(api.client.app.routes):
        path = _concrete(template)
        if methods is None:
            with pytest.raises(WebSocketDisconnect), api.client.websocket_connect(path) as ws:
                ws.receive_json()
            checked.add(("WS", template))
            continue
        for method in sorted(methods):
            response = api.client.request(method, path, follow_redirects=False)
            checked.add((method, template))
            if template in PUBLIC:
                assert response.status_code != 401, (method, path)
                continue
            if response.is_redirect:  # a dashboard page sends strangers to log in
                landed = api.client.request(method, path, follow_redirects=True)
                assert landed.url.path == "/login", (method, path)
                continue
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.headers.get("www-authenticate") == "Bearer"
    # the walk saw the routes that matter, not an empty table
    for expected in [
        ("GET", "/api/v1/portfolio"),
        ("POST", "/api/v1/agent/{command}"),
        ("GET", "/metrics"),
        ("WS", "/api/v1/stream"),
        ("GET", "/openapi.json"),
    ]:
        assert expected in checked
    assert len(checked) > 40


def test_read_key_when_posting_a_backtest_then_403_names_the_scope(api):
    response = api.client.post("/api/v1/backtests", json={}, headers=api.headers("viewer"))
    assert response.status_code == 403
    assert "'trade' scope" in response.json()["detail"]


def test_trade_key_can_trade_but_not_administer(api):
    assert api.client.get("/api/v1/keys", headers=api.headers("trader")).status_code == 403
    assert api.client.get("/api/v1/status", headers=api.headers("trader")).status_code == 200


def test_x_api_key_header_is_accepted_and_a_wrong_key_is_not(api):
    good = api.client.get("/api/v1/status", headers={"X-API-Key": api.keys["viewer"]})
    assert good.status_code == 200
    wrong = api.keys["viewer"][:-4] + "xxxx"
    bad = api.client.get("/api/v1/status", headers={"X-API-Key": wrong})
    assert bad.status_code == 401
    assert "invalid" in bad.json()["detail"]


def test_revoked_key_when_used_then_401(api):
    made = api.client.post(
        "/api/v1/keys", json={"name": "bot", "scopes": ["read"]}, headers=api.headers()
    ).json()
    bot = {"Authorization": f"Bearer {made['key']}"}
    assert api.client.get("/api/v1/status", headers=bot).status_code == 200
    listed = api.client.get("/api/v1/keys", headers=api.headers()).json()["items"]
    assert all("key" not in item and "key_hash" not in item for item in listed)
    revoked = api.client.delete(f"/api/v1/keys/{made['prefix']}", headers=api.headers())
    assert revoked.status_code == 200
    assert api.client.get("/api/v1/status", headers=bot).status_code == 401


def test_key_is_stored_hashed_never_in_clear(api):
    import sqlite3

    path = api.settings.data.dir / "ffe.db"
    with sqlite3.connect(path) as connection:
        hashes = [row[0] for row in connection.execute("SELECT key_hash FROM api_keys")]
    assert hashes
    assert all(h.startswith("$argon2") for h in hashes)
    assert not any(key in hashes for key in api.keys.values())


def test_login_when_password_wrong_then_401_and_no_cookie(api):
    response = api.client.post("/api/v1/auth/login", json={"username": "admin", "password": "x"})
    assert response.status_code == 401
    assert "ffe_session" not in response.cookies


def test_login_sets_a_session_that_reads_but_needs_csrf_header_to_post(api, password):
    client = api.client
    response = client.post("/api/v1/auth/login", json={"username": "viewer", "password": password})
    assert response.status_code == 200
    assert "ffe_session" in response.cookies
    assert client.get("/api/v1/auth/me").json()["name"] == "viewer"
    refused = client.post("/api/v1/auth/logout")
    assert refused.status_code == 401
    assert "x-requested-with" in refused.json()["detail"]
    assert (
        client.post("/api/v1/auth/logout", headers={"X-Requested-With": "ffe"}).status_code == 200
    )


def test_session_token_as_bearer_works_and_tampered_one_does_not(api, password):
    token = api.client.post(
        "/api/v1/auth/login", json={"username": "trader", "password": password}
    ).json()["token"]
    api.client.cookies.clear()
    me = api.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["scopes"] == ["read", "trade"]
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    bad = api.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {forged}"})
    assert bad.status_code == 401


def _log_in(api, password: str, username: str = "trader") -> str:
    response = api.client.post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    )
    assert response.status_code == 200
    return str(response.json()["token"])


def test_logout_when_token_used_again_then_401_as_bearer_and_cookie(api, password):
    client = api.client
    token, other = _log_in(api, password), _log_in(api, password)
    client.cookies.clear()
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/auth/me", headers=bearer).status_code == 200

    out = client.post("/api/v1/auth/logout", headers=bearer)

    assert out.status_code == 200
    assert out.json() == {"logged_out": "trader"}
    as_bearer = client.get("/api/v1/auth/me", headers=bearer)
    assert as_bearer.status_code == 401
    assert "logged out" in as_bearer.json()["detail"]
    client.cookies.set("ffe_session", token)
    assert client.get("/api/v1/auth/me").status_code == 401
    client.cookies.clear()
    still = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {other}"})
    assert still.status_code == 200  # the user's other session goes on
    assert still.json()["name"] == "trader"


def test_logout_by_cookie_then_the_copied_token_is_refused_and_the_page_asks_to_log_in(
    api, password
):
    client = api.client
    token = _log_in(api, password)  # the login also set the cookie
    csrf = {"X-Requested-With": "ffe"}

    assert client.post("/api/v1/auth/logout", headers=csrf).status_code == 200

    assert "ffe_session" not in client.cookies
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/auth/me", headers=bearer).status_code == 401
    client.cookies.set("ffe_session", token)
    page = client.get("/overview", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/login")


def test_logout_when_session_already_ended_or_missing_then_401_as_before(api, password):
    client = api.client
    token = _log_in(api, password)
    client.cookies.clear()
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.post("/api/v1/auth/logout", headers=bearer).status_code == 200

    again = client.post("/api/v1/auth/logout", headers=bearer)
    nobody = client.post("/api/v1/auth/logout")
    forged = client.post("/api/v1/auth/logout", headers={"Authorization": "Bearer x.y.z"})

    assert (again.status_code, nobody.status_code, forged.status_code) == (401, 401, 401)


def test_logout_with_an_api_key_then_the_key_still_works(api):
    out = api.client.post("/api/v1/auth/logout", headers=api.headers("viewer"))

    assert out.status_code == 200
    assert api.client.get("/api/v1/auth/me", headers=api.headers("viewer")).status_code == 200


def test_revoked_session_when_this_process_forgets_its_cache_then_still_refused(api, password):
    token = _log_in(api, password)
    api.client.cookies.clear()
    bearer = {"Authorization": f"Bearer {token}"}
    assert api.client.post("/api/v1/auth/logout", headers=bearer).status_code == 200

    api.services.sessions.forget()

    assert api.client.get("/api/v1/auth/me", headers=bearer).status_code == 401


def test_expired_session_when_used_then_401_says_log_in_again(api):
    from ffe.api.auth import Principal
    from ffe.api.sessions import SessionTokens

    tokens = SessionTokens(api.services.tokens.secret, -10)
    token, _ = tokens.issue(Principal("admin", "user", frozenset({"read"})))
    response = api.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_login_attempts_are_rate_limited_per_address(api_with):
    with api_with(FFE__API__LOGIN_RATE_LIMIT="3") as api:
        codes = [
            api.client.post(
                "/api/v1/auth/login", json={"username": "admin", "password": "wrong"}
            ).status_code
            for _ in range(5)
        ]
        assert codes[:3] == [401, 401, 401]
        assert codes[3:] == [429, 429]


def test_requests_over_the_key_limit_get_429_with_retry_after(api_with):
    with api_with(FFE__API__RATE_LIMIT="5") as api:
        responses = [api.client.get("/api/v1/status", headers=api.headers()) for _ in range(7)]
        assert [r.status_code for r in responses[:5]] == [200] * 5
        assert responses[5].status_code == 429
        assert int(responses[5].headers["retry-after"]) >= 1
        assert responses[0].headers["x-ratelimit-limit"] == "5"
        # another key has its own budget
        assert api.client.get("/api/v1/status", headers=api.headers("viewer")).status_code == 200


def test_cors_closed_by_default(api):
    response = api.client.options(
        "/api/v1/status",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in response.headers


def test_cors_when_origin_configured_then_only_that_origin_allowed(api_with):
    env = {"FFE__API__CORS_ORIGINS": '["https://desk.example"]'}
    with api_with(**env) as api:
        ok = api.client.options(
            "/api/v1/status",
            headers={"Origin": "https://desk.example", "Access-Control-Request-Method": "GET"},
        )
        assert ok.headers["access-control-allow-origin"] == "https://desk.example"
        other = api.client.options(
            "/api/v1/status",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize("secret", [None, "", "changeme", "short-secret"])
def test_production_when_secret_default_or_weak_then_refuses_to_start(monkeypatch, secret):
    from ffe.api.secrets import session_secret
    from ffe.bootstrap import api_options

    monkeypatch.setenv("FFE__API__ENVIRONMENT", "production")
    if secret is not None:
        monkeypatch.setenv("FFE__API__SECRET_KEY", secret)
    with pytest.raises(ConfigError, match="FFE__API__SECRET_KEY"):
        session_secret(api_options(load_settings()))


def test_production_with_a_real_secret_starts(monkeypatch):
    from ffe.api.secrets import session_secret
    from ffe.bootstrap import api_options

    secret = secrets.token_urlsafe(48)
    monkeypatch.setenv("FFE__API__ENVIRONMENT", "production")
    monkeypatch.setenv("FFE__API__SECRET_KEY", secret)
    assert session_secret(api_options(load_settings())) == secret


def test_development_secret_is_made_once_and_kept_private(monkeypatch, tmp_path):
    from ffe.api.secrets import session_secret
    from ffe.bootstrap import api_options

    monkeypatch.setenv("FFE__DATA__DIR", str(tmp_path))
    first = session_secret(api_options(load_settings()))
    assert session_secret(api_options(load_settings())) == first
    assert len(first) >= 32
    assert (tmp_path / "api-secret").stat().st_mode & 0o077 == 0


def test_control_actions_are_written_to_the_audit_log(api):
    made = api.client.post(
        "/api/v1/keys", json={"name": "audited", "scopes": ["trade"]}, headers=api.headers()
    )
    assert made.status_code == 201
    entries = api.client.get("/api/v1/audit", headers=api.headers()).json()["items"]
    assert any(e["action"] == "key.create" and e["actor"] == "key:admin-key" for e in entries)
    assert api.client.get("/api/v1/audit", headers=api.headers("trader")).status_code == 403


@pytest.mark.parametrize(
    "target", ["//evil.example", "/\\evil.example", "/\t/evil.example", "/\n/evil.example", "x"]
)
def test_login_next_when_it_leaves_the_site_then_goes_to_overview(target):
    from ffe.api.routes.pages import safe_next

    assert safe_next(target) == "/overview"


def test_login_next_when_local_path_then_kept():
    from ffe.api.routes.pages import safe_next

    assert safe_next("/decisions?run_id=abcd") == "/decisions?run_id=abcd"


def test_journal_down_when_anonymous_then_503_without_database_details(api_with, monkeypatch):
    from ffe.api.routes import auth as auth_routes
    from ffe.domain.errors import StoreError

    async def dead(*args: object, **kwargs: object) -> None:
        raise StoreError("postgresql://ffe:***@db.internal.example:5432/prod: unreachable")

    with api_with() as api:
        monkeypatch.setattr(auth_routes, "check_login", dead)
        response = api.client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": "whatever"}
        )
        assert response.status_code == 503
        assert "db.internal.example" not in response.text
        assert "retry" in response.json()["detail"]
        health = api.client.get("/health/ready").json()
        assert all("detail" not in check for check in health["checks"].values())
        detailed = api.client.get("/health/ready", headers=api.headers("viewer")).json()
        assert all("detail" in check for check in detailed["checks"].values())


def test_session_when_password_changed_then_ended(api, password):
    from ffe.api import auth

    token = api.client.post(
        "/api/v1/auth/login", json={"username": "trader", "password": password}
    ).json()["token"]
    api.client.cookies.clear()
    bearer = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/api/v1/auth/me", headers=bearer).status_code == 200
    api.client.portal.call(  # type: ignore[union-attr]
        auth.set_password, api.services.db, "trader", "a brand new password", "test"
    )
    api.services.sessions.forget()  # another process would see it within its cache_s

    ended = api.client.get("/api/v1/auth/me", headers=bearer)

    assert ended.status_code == 401
    assert "log in" in ended.json()["detail"]


def test_reset_of_an_emergency_stop_needs_admin(api):
    refused = api.client.post("/api/v1/agent/reset", headers=api.headers("trader"))
    assert refused.status_code == 403
    assert "admin" in refused.json()["detail"]


def test_cors_wildcard_is_refused_with_what_to_do(monkeypatch):
    monkeypatch.setenv("FFE__API__CORS_ORIGINS", '["*"]')
    with pytest.raises(ConfigError, match="list the dashboard's origins"):
        load_settings()


@pytest.mark.parametrize(
    "extra",
    [
        {"X-API-Key": "ffe_nope_nope"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": "Bearer "},
        {"Cookie": "ffe_session=not-a-token"},
    ],
    ids=["bad key header", "basic scheme", "empty bearer", "bad cookie"],
)
def test_valid_key_beside_an_invalid_credential_then_401(api, extra):
    valid = {"X-API-Key": api.keys["admin"]}
    if "X-API-Key" in extra:
        valid = api.headers("admin")  # the valid key as a bearer, the bad one as X-API-Key

    answer = api.client.get("/api/v1/status", headers={**valid, **extra})

    assert api.client.get("/api/v1/status", headers=valid).status_code == 200
    assert answer.status_code == 401, answer.text
