"""Request bodies are read only from identified callers, and only up to a limit.

``BodyGuard`` is plain ASGI (not Starlette's ``BaseHTTPMiddleware``, which would buffer the
body) and sits in front of the routes. For a request that carries a body it:

- answers 413 when ``Content-Length`` says more than the limit, without reading anything;
- identifies the caller from its headers and cookies first (the same check as the routes',
  ``deps.identify``) and answers 401 (or 429) before a byte of the body is read. FastAPI reads
  and parses a body before it resolves a route's dependencies, so the routes' own check would
  come too late. The login route, which authenticates by its body, is the exception, with a
  small limit of its own;
- counts the body as it streams in (chunked bodies say no length) and answers 413 as soon as
  it passes the limit; the route then sees the client as gone.

Refusals sent before the body was read whole close the connection, so the server does not go
on reading what the client keeps sending.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ffe.api.auth import AuthError
from ffe.api.deps import identify, refusal

LOGIN_PATH = "/api/v1/auth/login"
LOGIN_MAX_BYTES = 4096  # a user name and a password, as JSON, with room to spare


class BodyGuard:
    """Refuse bodies that are too large or come from nobody (see the module docstring)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _carries_body(scope):
            await self.app(scope, receive, send)
            return
        login = scope["path"] == LOGIN_PATH
        limit = min(self.max_bytes, LOGIN_MAX_BYTES) if login else self.max_bytes
        length = _content_length(scope)
        if length is not None and length > limit:
            await _answer(send, 413, _too_large(limit))
            return
        if not login and not await _identified(scope, send):
            return
        stream = _LimitedBody(receive, send, limit)
        await self.app(scope, stream.receive, stream.send)


async def _identified(scope: Scope, send: Send) -> bool:
    """Identify the caller into ``scope["state"]["identified"]``; or answer 401 or 429 and
    say False."""
    services = getattr(scope["app"].state, "services", None)
    if services is None:  # not started: the route answers as it would
        return True
    connection = HTTPConnection(scope)
    address = services.proxies.client(scope)
    try:
        principal = await identify(
            services, connection.headers, connection.cookies, scope["method"], address
        )
    except AuthError as exc:
        refused = refusal(exc)
        await _answer(send, refused.status_code, str(refused.detail), refused.headers)
        return False
    scope.setdefault("state", {})["identified"] = principal
    return True


@dataclass
class _LimitedBody:
    """``receive`` and ``send`` for the app, cutting the body off past ``limit`` bytes."""

    upstream_receive: Receive
    upstream_send: Send
    limit: int
    received: int = 0
    answered: bool = False  # the response has started
    refused: bool = False  # we answered 413: the app's own answer is dropped

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self.upstream_receive()
        if message["type"] != "http.request":
            return message
        self.received += len(message.get("body", b""))
        if self.received <= self.limit:
            return message
        if not self.answered:
            await _answer(self.upstream_send, 413, _too_large(self.limit))
        self.refused = True
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.answered = True
        await self.upstream_send(message)


def _carries_body(scope: Scope) -> bool:
    for key, value in scope["headers"]:
        if key == b"transfer-encoding" or (key == b"content-length" and value.strip() != b"0"):
            return True
    return False


def _content_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            return int(value) if value.strip().isdigit() else None
    return None


def _too_large(limit: int) -> str:
    return f"the request body is larger than the {_size(limit)} this server accepts: send less"


def _size(n: int) -> str:
    if n >= 2**20 and n % 2**20 == 0:
        return f"{n // 2**20} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} bytes"


async def _answer(
    send: Send, status: int, detail: str, headers: Mapping[str, str] | None = None
) -> None:
    """A JSON refusal that closes the connection: the body it did not read stays unread."""
    body = json.dumps({"detail": detail}).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
