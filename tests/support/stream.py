"""The API's live stream as end-to-end tests read it: opened with a caller's headers, its
messages awaited until a deadline, failing with what was awaited instead of hanging."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from websockets.sync.client import ClientConnection, connect

NOT_IN_TIME = "the stream did not send what was awaited in time"
Wanted = Callable[[dict[str, Any]], bool]


@contextmanager
def live_stream(
    api_url: str, headers: dict[str, str], open_timeout: float = 30.0
) -> Iterator[ClientConnection]:
    """The WebSocket of the API at ``api_url``, authenticated by ``headers``."""
    address = api_url.replace("http://", "ws://", 1) + "/api/v1/stream"
    with connect(address, additional_headers=headers, open_timeout=open_timeout) as ws:
        yield ws


def receive(ws: ClientConnection, deadline: float) -> dict[str, Any]:
    """The stream's next message, if it comes before ``deadline`` (``time.monotonic()``)."""
    remaining = deadline - time.monotonic()
    assert remaining > 0, NOT_IN_TIME
    try:
        return dict(json.loads(ws.recv(timeout=remaining)))
    except TimeoutError:
        raise AssertionError(NOT_IN_TIME) from None


def next_event(ws: ClientConnection, kind: str, wanted: Wanted, within_s: float) -> dict[str, Any]:
    """The stream's next message of ``kind`` whose data is ``wanted``."""
    return first_of_each(ws, {kind}, wanted, within_s)[kind]


def first_of_each(
    ws: ClientConnection, kinds: set[str], wanted: Wanted, within_s: float
) -> dict[str, dict[str, Any]]:
    """The first message of each of ``kinds`` whose data is ``wanted``, by kind."""
    seen: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + within_s
    while not kinds <= seen.keys():
        message = receive(ws, deadline)
        if message["type"] in kinds and wanted(message["data"]):
            seen.setdefault(message["type"], message)
    return seen
