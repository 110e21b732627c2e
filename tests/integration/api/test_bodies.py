"""Request bodies: 413 past the limit (said by Content-Length or found while streaming), 401
before a stranger's body is read, and a slow client's request head cut off. The socket tests
run a real uvicorn on 127.0.0.1, bounded in time and size."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import suppress

from tests.support.server import uvicorn_serving

MIB = 2**20


def test_post_when_authenticated_and_body_is_2_mib_then_413(api):
    response = api.client.post(
        "/api/v1/backtests",
        content=b'{"strategy": "' + b"x" * (2 * MIB) + b'"}',
        headers={**api.headers("trader"), "Content-Type": "application/json"},
    )

    assert response.status_code == 413
    assert "1 MiB" in response.json()["detail"]


def test_post_when_body_has_no_length_and_grows_past_the_limit_then_413(api):
    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"strategy": "'
        for _ in range(24):
            yield b"x" * 65536
        yield b'"}'

    response = api.client.post(
        "/api/v1/backtests",
        content=chunks(),
        headers={**api.headers("trader"), "Content-Type": "application/json"},
    )

    assert response.status_code == 413


def test_post_when_body_is_small_then_the_route_still_reads_it(api):
    response = api.client.post(
        "/api/v1/backtests", json={"strategy": "no-such-strategy"}, headers=api.headers("trader")
    )

    assert response.status_code == 422  # the route read the body and said what is wrong


def test_login_when_body_is_larger_than_its_own_small_limit_then_413(api):
    response = api.client.post(
        "/api/v1/auth/login", json={"username": "admin", "password": "p" * 10_000}
    )

    assert response.status_code == 413


def test_post_when_anonymous_then_401_before_the_body_is_parsed(api):
    response = api.client.post(
        "/api/v1/backtests", content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 401  # not 422: the body was never looked at
    assert response.headers["www-authenticate"] == "Bearer"


def test_post_when_anonymous_and_a_large_body_streams_slowly_then_401_before_reading_it(api):
    planned = 64 * MIB
    with (
        uvicorn_serving(api.settings) as port,
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
    ):
        sock.sendall(
            b"POST /api/v1/backtests HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sent, answer = 0, b""
        chunk = b"x" * 65536
        started = time.monotonic()
        sock.setblocking(False)
        while sent < planned and time.monotonic() - started < 10:
            with suppress(BlockingIOError):
                answer += sock.recv(65536)
            if answer:
                break
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:  # the server closed the connection under us: fine
                break
            sent += len(chunk)
            time.sleep(0.01)  # slowly: about 6 MiB a second at most
        sock.setblocking(True)
        answer += _rest(sock)

    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert sent < 4 * MIB  # answered long before the body was all there


def test_connection_when_request_head_never_completes_then_closed_after_the_timeout(api):
    with uvicorn_serving(api.settings, header_timeout_s=1.0) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line
            started = time.monotonic()
            closed = _rest(sock)
            held = time.monotonic() - started
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answered = sock.recv(4096)

    assert closed == b""  # closed without an answer
    assert 0.8 < held < 4
    assert answered.startswith(b"HTTP/1.1 200")  # a prompt client is served as before


def test_request_head_when_over_16_kib_then_431_and_closed(api):
    cookie = b"Cookie: c=" + b"x" * 20_000 + b"\r\n"
    with uvicorn_serving(api.settings) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            for start in range(0, len(cookie), 1000):  # in pieces, as a slow client would
                with suppress(OSError):
                    sock.sendall(cookie[start : start + 1000])
            refused = _rest(sock)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: c="
                + b"y" * 8_000
                + b"\r\n\r\n"
            )
            answered = sock.recv(4096)

    assert refused.startswith(b"HTTP/1.1 431"), refused[:200]
    assert answered.startswith(b"HTTP/1.1 200")  # a large head within the limit is served


def _rest(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection (at most 5 s)."""
    sock.settimeout(5)
    received = b""
    try:
        while data := sock.recv(65536):
            received += data
    except (TimeoutError, ConnectionResetError):
        pass
    return received
