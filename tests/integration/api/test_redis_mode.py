"""With FFE__REDIS__URL set, rate limits, caches and the live stream are shared by every
worker (two apps here, as two workers would be); with Redis gone mid-run the API keeps
serving, without a shared cache."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _private_redis(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server of this test's own, so it can be killed without harming others."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not on PATH: install Debian's redis-server package")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            break
        time.sleep(0.05)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def _db(redis_url: str) -> str:
    """A Redis URL on a database number no other test uses at the same time."""
    base = redis_url.rsplit("/", 1)[0] if redis_url.count("/") > 2 else redis_url
    return f"{base}/{int(uuid.uuid4().int % 14) + 1}"


def test_rate_limit_is_shared_by_two_workers(api_with, redis_url):
    env = {"FFE__REDIS__URL": _db(redis_url), "FFE__API__RATE_LIMIT": "4"}
    with api_with(**env) as first:
        from fastapi.testclient import TestClient

        from ffe import bootstrap
        from ffe.api.app import create_app

        with TestClient(create_app(bootstrap.components(first.settings))) as second:
            key = {"X-API-Key": first.keys["viewer"]}
            codes = [first.client.get("/api/v1/status", headers=key).status_code for _ in range(2)]
            codes += [second.get("/api/v1/status", headers=key).status_code for _ in range(3)]
    assert codes == [200, 200, 200, 200, 429]


def test_stream_event_published_by_one_worker_reaches_a_client_of_another(api_with, redis_url):
    with api_with(FFE__REDIS__URL=_db(redis_url)) as first:
        from fastapi.testclient import TestClient

        from ffe import bootstrap
        from ffe.api.app import create_app

        with TestClient(create_app(bootstrap.components(first.settings))) as second:
            headers = {"Authorization": f"Bearer {first.keys['viewer']}"}
            with second.websocket_connect("/api/v1/stream", headers=headers) as ws:
                assert ws.receive_json()["type"] == "hello"
                time.sleep(0.3)  # the subscription is live on the Redis side
                body = {"strategy": "buy_and_hold", "symbols": ["SP500"]}
                job = first.client.post(
                    "/api/v1/backtests", json=body, headers=first.headers("trader")
                ).json()
                message = ws.receive_json()
                # Leave first, so the server unsubscribes before the test client cancels it
                # (redis-py can swallow a cancel that lands mid-unsubscribe).
                ws.close()
                time.sleep(0.5)
    assert message["type"] == "job"
    assert message["data"]["id"] == job["id"]


def test_session_logged_out_through_one_worker_is_refused_by_another(api_with, redis_url, password):
    with api_with(FFE__REDIS__URL=_db(redis_url)) as first:
        from fastapi.testclient import TestClient

        from ffe import bootstrap
        from ffe.api.app import create_app

        with TestClient(create_app(bootstrap.components(first.settings))) as second:
            login = {"username": "viewer", "password": password}
            token = first.client.post("/api/v1/auth/login", json=login).json()["token"]
            other = first.client.post("/api/v1/auth/login", json=login).json()["token"]
            first.client.cookies.clear()
            bearer = {"Authorization": f"Bearer {token}"}
            out = first.client.post("/api/v1/auth/logout", headers=bearer)
            refused = second.get("/api/v1/auth/me", headers=bearer)
            second.cookies.set("ffe_session", token)
            refused_cookie = second.get("/api/v1/auth/me")
            second.cookies.clear()
            still = second.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {other}"})
    assert out.status_code == 200
    assert (refused.status_code, refused_cookie.status_code) == (401, 401)
    assert "logged out" in refused.json()["detail"]
    assert still.status_code == 200


def test_logout_while_redis_is_down_then_refused_in_that_worker(api_with, password):
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with _private_redis(port) as server, api_with(FFE__REDIS__URL=url) as api:
        login = {"username": "viewer", "password": password}
        token = api.client.post("/api/v1/auth/login", json=login).json()["token"]
        api.client.cookies.clear()
        bearer = {"Authorization": f"Bearer {token}"}
        assert api.client.get("/api/v1/auth/me", headers=bearer).status_code == 200
        server.kill()
        server.wait()
        out = api.client.post("/api/v1/auth/logout", headers=bearer)
        api.services.sessions.forget()  # past its cache window, too
        after = api.client.get("/api/v1/auth/me", headers=bearer)
    assert out.status_code == 200
    assert after.status_code == 401


def test_api_when_redis_stops_mid_run_then_serves_without_cache(api_with):
    port = _free_port()
    with _private_redis(port) as server:
        # Readiness read afresh each time: the report must show Redis gone at once.
        env = {"FFE__REDIS__URL": f"redis://127.0.0.1:{port}/0", "FFE__API__READY_CACHE_S": "0"}
        with api_with(**env) as api:
            ready = api.client.get("/health/ready").json()
            assert ready["checks"]["redis"]["ok"] is True
            bars = api.client.get("/api/v1/market/SP500/bars?limit=5", headers=api.headers())
            assert bars.status_code == 200
            server.kill()
            server.wait()
            started = time.monotonic()
            for path in (
                "/api/v1/market/SP500/bars?limit=5",
                "/api/v1/portfolio",
                "/api/v1/status",
            ):
                response = api.client.get(path, headers=api.headers())
                assert response.status_code == 200, (path, response.text)
            assert time.monotonic() - started < 10
            assert (
                api.client.get("/api/v1/market/SP500/bars?limit=5", headers=api.headers()).json()
                == bars.json()
            )
            health = api.client.get("/health/ready")
            assert health.status_code == 200  # Redis is not critical: degraded, still serving
            assert health.json()["status"] == "degraded"
            assert health.json()["checks"]["redis"]["ok"] is False
