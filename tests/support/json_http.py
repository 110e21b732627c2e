"""A small threaded HTTP server on 127.0.0.1 that hands every request to a function and
writes back its JSON answer: the plumbing under the fake venues (tests/support/fake_kalshi.py).

The function gets ``(method, raw path, query string, lower-case headers, JSON body)`` and
returns ``(status, payload, extra headers)``; a ``str`` payload is sent as it is (a test's
malformed answer). A client that gave up before a held answer was written is not an error.
"""

from __future__ import annotations

import json
import sys
import threading
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

Json = dict[str, Any]
Reply = tuple[int, Json | str, tuple[tuple[str, str], ...]]
Handle = Callable[[str, str, str, dict[str, str], Json], Reply]


class JsonServer:
    """Serves ``handle`` on an ephemeral port; ``errors`` collects the handler's failures."""

    def __init__(self, handle: Handle) -> None:
        self.handle = handle
        self.errors: list[str] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        assert self._server is not None, "start the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # held answers must not delay stop()

    def __init__(self, address: tuple[str, int], handler: type[_Handler], owner: JsonServer):
        super().__init__(address, handler)
        self.owner = owner

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out has gone by the time a held answer is written: expected.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            self.owner.errors.append(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    disable_nagle_algorithm = True  # else headers and body wait on delayed ACKs

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else {}
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, payload, extra = self.server.owner.handle(
            self.command, parts.path, parts.query, headers, body
        )
        data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        self.send_response(status)
        for name, value in (("Content-Type", "application/json"), *extra):
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the tests read the fake's own request log instead
