"""The live stream: a hello numbered with the last event, then every event in order, one
by one, in strict JSON."""

from __future__ import annotations

import json
import time
from typing import Any


def _strict(text: str) -> dict[str, Any]:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON: a browser cannot read this event")

    return dict(json.loads(text, parse_constant=refuse))


def test_stream_when_agent_runs_then_events_numbered_one_by_one_after_the_hello(api):
    with api.client.websocket_connect("/api/v1/stream", headers=api.headers("viewer")) as ws:
        hello = _strict(ws.receive_text())
        started = api.client.post(
            "/api/v1/agent/start",
            json={"strategy": "sma_cross", "params": {"fast": 5, "slow": 10}, "speed": 0},
            headers=api.headers("trader"),
        )
        assert started.status_code == 202, started.text
        received, deadline = [], time.monotonic() + 60
        while len(received) < 200:
            assert time.monotonic() < deadline, len(received)
            received.append(_strict(ws.receive_text()))
        ws.close()
        time.sleep(0.3)

    assert hello["type"] == "hello"
    first = hello["data"]["seq"]
    assert [m["seq"] for m in received] == list(range(first + 1, first + 201))
    assert {m["source"] for m in received} == {hello["data"]["source"]}
    assert {"decision", "fill"} <= {m["type"] for m in received}
