"""Every answer says nosniff and no-referrer and brings a CSP; /docs has one that allows what
the Swagger UI page loads; HSTS only over TLS (directly or through a trusted proxy)."""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi.testclient import TestClient


def test_json_answer_carries_the_security_headers_and_no_hsts_over_http(api):
    response = api.client.get("/api/v1/status", headers=api.headers())

    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "strict-transport-security" not in response.headers


def test_refusal_carries_the_security_headers_too(api):
    response = api.client.get("/api/v1/status")

    assert response.status_code == 401
    assert response.headers["x-content-type-options"] == "nosniff"


def test_docs_csp_allows_its_own_assets_and_inline_script_and_nothing_else(api):
    response = api.client.get("/docs", headers=api.headers())

    csp = response.headers["content-security-policy"]
    page = response.text
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    inline = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert sources
    assert all(s.startswith("/static/") for s in sources)
    assert len(inline) == 1
    assert f"'sha256-{digest}'" in csp
    assert "script-src 'self' 'sha256-" in csp
    assert "default-src 'none'" in csp
    assert "unsafe-eval" not in csp


def test_dashboard_page_keeps_its_own_csp(api):
    response = api.client.get("/login")

    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "object-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_hsts_when_served_over_https_then_sent(api):
    secure = TestClient(api.client.app, base_url="https://testserver")

    response = secure.get("/health/live")

    assert response.headers["strict-transport-security"].startswith("max-age=")


def test_hsts_when_a_stranger_says_https_then_not_sent(api_with):
    with api_with(peer="192.0.2.1") as api:
        response = api.client.get("/health/live", headers={"X-Forwarded-Proto": "https"})

    assert "strict-transport-security" not in response.headers


def test_hsts_when_a_trusted_proxy_says_https_then_sent(api_with):
    with api_with(peer="10.0.0.1", FFE__API__TRUSTED_PROXIES='["10.0.0.1"]') as api:
        response = api.client.get("/health/live", headers={"X-Forwarded-Proto": "https"})

    assert response.headers["strict-transport-security"].startswith("max-age=")
