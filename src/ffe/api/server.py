"""How uvicorn serves the app: the HTTP/1.1 protocol with a limit on how long a client may
take to send a request's headers.

uvicorn closes a keep-alive connection that stays idle ``timeout_keep_alive`` seconds after an
answer, and h11 refuses request heads larger than 16 KiB, but nothing bounds a client that
connects and then sends its headers a byte at a time (or never): each such connection is held
for good. ``HeaderTimeoutH11`` closes a connection whose request head is not complete
``header_timeout_s`` seconds after the connection opened or the request's first byte came.
Bodies are not timed here (a slow upload is bounded by ``api.max_body_bytes`` and by the
reverse proxy); see docs/api.md.

uvicorn's own reading of ``X-Forwarded-For`` and ``X-Forwarded-Proto`` is turned off: it
believes them from 127.0.0.1 (or ``FORWARDED_ALLOW_IPS``) and rewrites the client's address
and scheme before the app sees them, so a local peer could claim any address.
``api.trusted_proxies`` (``ffe.api.clients``) is the only authority on those headers.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

KEEP_ALIVE_S = 5  # uvicorn's default, said here so docs/api.md and the server agree


class HeaderTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request head arrives too slowly."""

    def __init__(self, *args: Any, header_timeout_s: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # a request head has begun and is not complete
            if self._head_timer is None:
                self._arm()
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def server_options(header_timeout_s: float) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config`` and ``uvicorn.run`` (a partial of a module
    level class, so it also reaches the processes of ``--workers``)."""
    return {
        "http": functools.partial(HeaderTimeoutH11, header_timeout_s=header_timeout_s),
        "timeout_keep_alive": KEEP_ALIVE_S,
        "proxy_headers": False,  # ffe.api.clients decides whom to believe
    }
