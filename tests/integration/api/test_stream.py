"""The live stream: a hello numbered with the last event, then every event in order, one
by one, in strict JSON."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio

RECEIVE_S = 10.0  # a stream that sends nothing this long has stopped: fail, do not hang


def _strict(text: str) -> dict[str, Any]:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON: a browser cannot read this event")

    return dict(json.loads(text, parse_constant=refuse))


def _receive_text(ws: Any, timeout_s: float = RECEIVE_S) -> str:
    """The next message, or an AssertionError after ``timeout_s`` (the test client's own
    ``receive_text`` waits for ever). It waits on the session's event loop, as the client
    does, so that nothing is left waiting when the session closes."""

    async def receive() -> Any:
        with anyio.fail_after(timeout_s):
            return await ws._send_rx.receive()  # what the client's receive() waits on

    try:
        message = ws.portal.call(receive)
    except TimeoutError:
        raise AssertionError(f"the stream sent nothing for {timeout_s:g} s") from None
    assert message["type"] == "websocket.send", message  # not closed
    return str(message["text"])


def test_stream_when_agent_runs_then_events_numbered_one_by_one_after_the_hello(api):
    with api.client.websocket_connect("/api/v1/stream", headers=api.headers("viewer")) as ws:
        hello = _strict(_receive_text(ws))
        started = api.client.post(
            "/api/v1/agent/start",
            json={"strategy": "sma_cross", "params": {"fast": 5, "slow": 10}, "speed": 0},
            headers=api.headers("trader"),
        )
        assert started.status_code == 202, started.text
        received, deadline = [], time.monotonic() + 60
        while len(received) < 200:
            assert time.monotonic() < deadline, len(received)
            received.append(_strict(_receive_text(ws)))
        ws.close()
        time.sleep(0.3)

    assert hello["type"] == "hello"
    first = hello["data"]["seq"]
    assert [m["seq"] for m in received] == list(range(first + 1, first + 201))
    assert {m["source"] for m in received} == {hello["data"]["source"]}
    assert {"decision", "fill"} <= {m["type"] for m in received}


def test_receive_text_when_stream_silent_then_fails_instead_of_hanging(api):
    with api.client.websocket_connect("/api/v1/stream", headers=api.headers("viewer")) as ws:
        _receive_text(ws)  # the hello; nothing runs, so nothing follows
        started = time.monotonic()
        try:
            _receive_text(ws, timeout_s=0.5)
        except AssertionError as exc:
            failed = str(exc)
        else:
            failed = ""
        ws.close()
        time.sleep(0.3)  # the stream's handler ends before the session does

    assert failed == "the stream sent nothing for 0.5 s"
    assert time.monotonic() - started < 5.0
