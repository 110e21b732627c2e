"""With api.otel_endpoint set, every request is exported as an OTLP/HTTP span to the
collector, named by its route template; the collector here is a local HTTP server that
records what it receives, as a real one would."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    received: list[tuple[str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            received.append((self.path, self.rfile.read(length)))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def test_requests_are_exported_as_spans_named_by_route(api_with, collector):
    url, received = collector
    with api_with(FFE__API__OTEL_ENDPOINT=url) as api:
        assert api.client.get("/api/v1/runs/abcd", headers=api.headers()).status_code == 404
    # the app flushed its spans when it stopped
    paths = {path for path, _ in received}
    assert paths == {"/v1/traces"}
    exported = b"".join(body for _, body in received)
    assert b"/api/v1/runs/{run_id}" in exported
    assert b"ffe-api" in exported
