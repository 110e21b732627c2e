"""How uvicorn serves the app: HTTP/1.1 parsed by httptools (llhttp), with a limit on how
long a client may take to send a request's head and on how large that head may be.

uvicorn closes a keep-alive connection that stays idle ``timeout_keep_alive`` seconds after an
answer, but nothing bounds a client that connects and then sends its headers a byte at a time
(or never): each such connection is held for good. ``HeaderTimeoutProtocol`` closes a
connection whose request head is not complete ``header_timeout_s`` seconds after the
connection opened or the request's first byte came, and answers 431 to a head larger than
``MAX_HEAD_BYTES`` (llhttp sets no limit of its own; h11, uvicorn's pure-Python parser, stops
at the same 16 KiB). Bodies are not timed here (a slow upload is bounded by
``api.max_body_bytes`` and by the reverse proxy); see docs/api.md.

httptools rather than h11: the same app answered 1.7 times as many ``/health/live`` requests
a second through it (6,393 against 3,748, one process, 16 connections, on the 2-core machine);
under the bare-metal stack's load the protocol was a large part of each API process's time.

uvicorn's own reading of ``X-Forwarded-For`` and ``X-Forwarded-Proto`` is turned off: it
believes them from 127.0.0.1 (or ``FORWARDED_ALLOW_IPS``) and rewrites the client's address
and scheme before the app sees them, so a local peer could claim any address.
``api.trusted_proxies`` (``ffe.api.clients``) is the only authority on those headers.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

KEEP_ALIVE_S = 5  # uvicorn's default, said here so docs/api.md and the server agree
MAX_HEAD_BYTES = 16 * 1024  # a request line and headers larger than this get 431


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections whose request head arrives too
    slowly and refusing heads that are too large."""

    def __init__(self, *args: Any, header_timeout_s: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = True  # reading a request's head: from connecting, or its first byte
        self._head_bytes = 0  # bytes received since then

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Still in the head after this chunk (a chunk that ends the head may carry body too):
        # llhttp keeps what it has of a header, so the head is bounded here.
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES and not self._closing():
            self._refuse_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # the next request on a kept-alive connection
            self._in_head, self._head_bytes = True, 0
        if self._head_timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes = False, 0
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def _arm(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse_head(self) -> None:
        self._disarm()
        body = b"Request head too large"
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.transport.close()

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and not self._closing():
            self.transport.close()


def server_options(header_timeout_s: float) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config`` and ``uvicorn.run`` (a partial of a module
    level class, so it also reaches the processes of ``--workers``)."""
    return {
        "http": functools.partial(HeaderTimeoutProtocol, header_timeout_s=header_timeout_s),
        "timeout_keep_alive": KEEP_ALIVE_S,
        "proxy_headers": False,  # ffe.api.clients decides whom to believe
    }
