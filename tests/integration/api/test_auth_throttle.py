"""Bogus credentials are cheap to refuse: an unknown key prefix costs no hash, an address that
keeps failing gets 429 before any hash while valid credentials from it still work, the
client address comes from X-Forwarded-For only through a trusted proxy, health never waits
behind hashing, and wrong passwords slow down their address instead of locking the user."""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from tests.support.server import uvicorn_serving

from ffe.api import auth


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every argon2 check the server makes from now on (the secret checked)."""
    checked: list[str] = []
    real = auth.verify_secret
    monkeypatch.setattr(auth, "verify_secret", lambda h, s: checked.append(s) or real(h, s))
    return checked


def _bogus_key(prefix: str | None = None) -> str:
    return f"ffe_{prefix or secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_key_when_prefix_unknown_then_401_without_a_hash(api, hashes):
    response = api.client.get("/api/v1/status", headers=_bearer(_bogus_key()))

    assert response.status_code == 401
    assert hashes == []


def test_failing_address_when_past_the_limit_then_429_before_any_hash(api_with, hashes):
    with api_with(FFE__API__AUTH_FAILURES_LIMIT="3") as api:
        real_prefix = api.keys["viewer"].split("_")[1]
        codes = [
            api.client.get("/api/v1/status", headers=_bearer(_bogus_key(real_prefix))).status_code
            for _ in range(3)
        ]
        hashed = len(hashes)

        over = [
            api.client.get("/api/v1/status", headers=_bearer(key))
            for key in (_bogus_key(real_prefix), _bogus_key())
        ]

        assert codes == [401, 401, 401]
        assert [r.status_code for r in over] == [429, 429]
        assert all(int(r.headers["retry-after"]) >= 1 for r in over)
        assert len(hashes) == hashed == 3  # the refusals past the limit cost nothing


def test_failing_address_when_past_the_limit_then_valid_credentials_still_accepted(
    api_with, password
):
    with api_with(FFE__API__AUTH_FAILURES_LIMIT="2") as api:
        real_prefix = api.keys["viewer"].split("_")[1]
        for _ in range(4):
            api.client.get("/api/v1/status", headers=_bearer(_bogus_key(real_prefix)))
        login = api.client.post(
            "/api/v1/auth/login", json={"username": "trader", "password": password}
        )

        # a key never seen by this process (its hash is checked), and a session
        by_key = api.client.get("/api/v1/status", headers=api.headers("admin"))
        by_session = api.client.get("/api/v1/status", headers=_bearer(login.json()["token"]))

        assert by_key.status_code == 200
        assert by_session.status_code == 200


def test_session_when_it_fails_then_401_never_429_and_not_counted(api_with):
    with api_with(FFE__API__AUTH_FAILURES_LIMIT="2") as api:

        def status(headers: dict[str, str]) -> int:
            return api.client.get("/api/v1/status", headers=headers).status_code

        # a session failure costs no hash: it is not a failed attempt of this address
        sessions = [status(_bearer("not.a.session")) for _ in range(3)]
        keys = [status(_bearer(_bogus_key())) for _ in range(3)]
        # past the limit, an expired or forged session still gets 401, which sends the
        # dashboard's user to the login page (429 would leave them stuck)
        cookie = status({"Cookie": "ffe_session=expired.or.forged"})
        token = status(_bearer("expired.or.forged"))

    assert sessions == [401, 401, 401]
    assert keys == [401, 401, 429]
    assert (cookie, token) == (401, 401)


def test_forwarded_for_when_peer_is_a_trusted_proxy_then_each_client_counted_alone(api_with):
    env = {"FFE__API__AUTH_FAILURES_LIMIT": "2", "FFE__API__TRUSTED_PROXIES": '["10.0.0.0/8"]'}
    with api_with(peer="10.1.2.3", **env) as api:

        def status(client: str) -> int:
            headers = {**_bearer(_bogus_key()), "X-Forwarded-For": f"{client}, 10.9.9.9"}
            return api.client.get("/api/v1/status", headers=headers).status_code

        attacker = [status("198.51.100.7") for _ in range(4)]
        bystander = status("198.51.100.8")

    assert attacker == [401, 401, 429, 429]
    assert bystander == 401


def test_forwarded_for_when_peer_is_not_trusted_then_ignored(api_with):
    with api_with(peer="192.0.2.1", FFE__API__AUTH_FAILURES_LIMIT="2") as api:
        codes = [
            api.client.get(
                "/api/v1/status",
                headers={**_bearer(_bogus_key()), "X-Forwarded-For": f"198.51.100.{n}"},
            ).status_code
            for n in range(4)
        ]

    assert codes == [401, 401, 429, 429]  # one client, whatever it claims


def test_forwarded_headers_when_a_loopback_peer_sends_them_to_a_real_server_then_ignored(
    api_with,
):
    # uvicorn would believe 127.0.0.1 by default: only api.trusted_proxies (none here) may
    with (
        api_with(FFE__API__AUTH_FAILURES_LIMIT="2") as api,
        uvicorn_serving(api.settings) as port,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
    ):
        codes = [
            client.get(
                "/api/v1/status",
                headers={**_bearer(_bogus_key()), "X-Forwarded-For": f"198.51.100.{n}"},
            ).status_code
            for n in range(4)
        ]
        live = client.get("/health/live", headers={"X-Forwarded-Proto": "https"})

    assert codes == [401, 401, 429, 429]  # one client, 127.0.0.1, whatever it claims
    assert "strict-transport-security" not in live.headers  # not TLS, whatever it claims


def test_health_ready_when_hashing_is_saturated_then_answers_at_once(api_with, monkeypatch):
    release = threading.Event()
    started = threading.Semaphore(0)

    def stuck_hash(stored: str, secret: str) -> bool:  # a hash that takes as long as we like
        started.release()
        release.wait(20)
        return False

    monkeypatch.setattr(auth, "verify_secret", stuck_hash)
    with api_with(FFE__API__AUTH_FAILURES_LIMIT="1000") as api:
        real_prefix = api.keys["viewer"].split("_")[1]
        flood = 24  # more than the loop's default thread pool holds on any machine we run on

        def bogus() -> int:
            headers = _bearer(_bogus_key(real_prefix))
            return api.client.get("/api/v1/status", headers=headers).status_code

        with ThreadPoolExecutor(flood) as senders:
            sent = [senders.submit(bogus) for _ in range(flood)]
            try:
                assert started.acquire(timeout=10)  # hashing has begun and is stuck
                time.sleep(0.3)  # and the rest of the flood has queued behind it
                began = time.perf_counter()
                ready = api.client.get("/health/ready")
                took = time.perf_counter() - began
            finally:
                release.set()
            codes = [future.result(timeout=30) for future in sent]

    assert ready.status_code == 200, ready.json()
    assert took < 1.9  # a probe that waited would time out at 2 s
    assert set(codes) == {401}


def test_password_when_wrong_too_often_then_that_address_waits_longer_each_time(api_with):
    env = {"FFE__API__LOGIN_FAILURES_FREE": "2", "FFE__API__TRUSTED_PROXIES": '["10.0.0.1"]'}
    with api_with(peer="10.0.0.1", **env) as api:

        def login(password: str) -> tuple[int, str]:
            response = api.client.post(
                "/api/v1/auth/login",
                json={"username": "admin", "password": password},
                headers={"X-Forwarded-For": "198.51.100.7"},
            )
            return response.status_code, response.headers.get("retry-after", "")

        wrong = [login("wrong password")[0] for _ in range(2)]
        first_wait = login("wrong password")
        time.sleep(float(first_wait[1]) + 0.1)
        after_wait = login("still wrong")
        second_wait = login("wrong password")

    assert wrong == [401, 401]
    assert first_wait == (429, "1")
    assert after_wait[0] == 401
    assert second_wait == (429, "2")


def test_password_when_one_address_failed_then_right_password_from_another_logs_in(
    api_with, password
):
    env = {"FFE__API__TRUSTED_PROXIES": '["10.0.0.1"]'}
    with api_with(peer="10.0.0.1", **env) as api:

        def login(client: str, secret: str) -> int:
            return api.client.post(
                "/api/v1/auth/login",
                json={"username": "admin", "password": secret},
                headers={"X-Forwarded-For": client},
            ).status_code

        attacker = [login("198.51.100.7", f"guess {n}") for n in range(12)]
        owner = login("203.0.113.5", password)
        attacker_with_the_right_one = login("198.51.100.7", password)

    assert attacker[:3] == [401, 401, 401]
    assert 429 in attacker
    assert owner == 200
    assert attacker_with_the_right_one == 429  # still waiting: its wait is not lifted by luck


def test_login_when_ipv6_clients_share_a_64_then_one_rate_limit(api_with):
    env = {
        "FFE__API__TRUSTED_PROXIES": '["10.0.0.1"]',
        "FFE__API__LOGIN_RATE_LIMIT": "2",
        "FFE__API__LOGIN_FAILURES_FREE": "100",  # the rate limit, not the backoff, answers
    }
    with api_with(peer="10.0.0.1", **env) as api:

        def login(client: str) -> int:
            return api.client.post(
                "/api/v1/auth/login",
                json={"username": "admin", "password": "wrong password"},
                headers={"X-Forwarded-For": client},
            ).status_code

        same_64 = [login(f"2001:db8:1:2::{n}") for n in range(1, 4)]
        other_64 = login("2001:db8:1:3::1")

    assert same_64 == [401, 401, 429]
    assert other_64 == 401
