"""Bodies the API cannot read as JSON: a clear 415 or 400 that says what to send, never a
500 or a 422 about dictionaries."""

from __future__ import annotations

import httpx

from .conftest import Api


def _detail(response: httpx.Response) -> str:
    detail = response.json()["detail"]
    assert isinstance(detail, str), detail
    return detail


def _post(api: Api, path: str, body: object) -> httpx.Response:
    return api.client.post(path, json=body, headers=api.headers())


def test_post_when_body_is_json_sent_as_text_plain_then_415_says_what_to_send(api: Api) -> None:
    response = api.client.post(
        "/api/v1/auth/login",
        content=b'{"username": "admin", "password": "x"}',
        headers={"content-type": "text/plain"},
    )

    assert response.status_code == 415
    assert "Content-Type: application/json" in _detail(response)
    assert "text/plain" in _detail(response)


def test_post_when_body_has_no_content_type_then_415(api: Api) -> None:
    response = api.client.post(
        "/api/v1/backtests", content=b'{"strategy": "sma_cross"}', headers=api.headers()
    )

    assert response.status_code == 415
    assert "no Content-Type" in _detail(response)


def test_post_when_json_body_is_a_list_then_still_422(api: Api) -> None:
    response = _post(api, "/api/v1/backtests", [1, 2, 3])

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body"]


def test_post_when_body_is_not_utf8_then_400_says_so(api: Api) -> None:
    response = api.client.post(
        "/api/v1/backtests",
        content=b'{"strategy": "sma_cross\xff"}',
        headers={**api.headers(), "content-type": "application/json"},
    )

    assert response.status_code == 400
    assert "not UTF-8" in _detail(response)
    assert "byte 23" in _detail(response)


def test_other_http_errors_keep_their_status_and_headers(api: Api) -> None:
    response = api.client.get("/api/v1/portfolio")  # no credentials

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
