"""The live stream: decisions, fills, equity, approvals, jobs and agent state over a
WebSocket, fanned out across workers through the event bus (Redis when configured)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ffe.api.deps import websocket_principal
from ffe.kv.events import EVENTS, publisher

router = APIRouter(prefix="/api/v1", tags=["stream"])
log = logging.getLogger(__name__)
POLICY_VIOLATION = 1008
RECHECK_S = 30.0  # how often an open stream's credentials are checked again


@router.websocket("/stream")
async def stream(websocket: WebSocket) -> None:
    """Authenticate (session cookie, ``Authorization`` or ``?token=``), say hello with the
    number of this process's last event, then forward every event as JSON
    ``{"type", "time", "source", "seq", "data"}`` until the client goes."""
    services = websocket.app.state.services
    origin = websocket.headers.get("origin")
    if origin is not None and not _same_origin(websocket, origin, services):
        await websocket.close(POLICY_VIOLATION, "origin not allowed")
        return
    principal = await websocket_principal(websocket, services)
    if principal is None or not principal.allows("read"):
        await websocket.close(POLICY_VIOLATION, "authentication required")
        return
    await websocket.accept()
    # Subscribed before the hello is sent, and numbered from there: the client reads again
    # what it shows when the hello comes, and every event after it reaches the client.
    events = services.kv.bus.subscribe(EVENTS)
    mine = publisher(services.kv.bus)
    hello = {"user": principal.as_dict(), "source": mine.source, "seq": mine.seq}
    try:
        async with events:
            await websocket.send_json({"type": "hello", "data": hello})
            await _forward(websocket, events, _still_allowed(websocket, services))
    except WebSocketDisconnect:
        return


async def _forward(websocket: WebSocket, events: Any, watch: Coroutine[Any, Any, None]) -> None:
    async def send() -> None:
        async for message in events:
            await websocket.send_json(message)

    tasks = {
        asyncio.create_task(send()),
        asyncio.create_task(_drain(websocket)),
        asyncio.create_task(watch),
    }
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when the handler itself is cancelled (server shutdown): no task left over
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled() and isinstance(task.exception(), Exception):
            log.info("stream closed: %s", task.exception())


async def _still_allowed(websocket: WebSocket, services: Any) -> None:
    """Return (ending the stream) once the caller's session has expired or ended, or its key
    was revoked: a stream outlives the handshake that let it in."""
    while True:
        await asyncio.sleep(RECHECK_S)
        principal = await websocket_principal(websocket, services)
        if principal is None or not principal.allows("read"):
            log.info("stream closed: its credentials are no longer valid")
            with contextlib.suppress(RuntimeError):  # the client may be gone already
                await websocket.close(POLICY_VIOLATION, "authentication expired")
            return


async def _drain(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, so a close is noticed at once."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


def _same_origin(websocket: WebSocket, origin: str, services: Any) -> bool:
    """Cookies ride along on cross-site WebSocket handshakes: only our own origin, or one
    CORS allows, may open the stream."""
    host = websocket.headers.get("host", "")
    allowed = set(services.options.cors_origins)
    return origin in allowed or origin.split("://", 1)[-1] == host
