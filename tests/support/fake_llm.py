"""A local LLM server that speaks Ollama's and OpenAI's chat APIs (``/api/chat``,
``/v1/chat/completions``), for the LLM voter's tests from the unit tests to the CLI and the agent.

The server answers deterministically from the prompt, records every request (headers included:
a test sees the bearer key) and can be scripted to misbehave one request at a time:
``server.then("500", "500", "valid")``, or always: ``server.default = "500"``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROMPT_TOKENS = 100
COMPLETION_TOKENS = 20
BEHAVIOURS = ("valid", "invalid_json", "bad_schema", "500", "429", "404", "slow")


def answer_for(messages: list[dict[str, str]]) -> dict[str, Any]:
    """A valid view derived from the prompt: same prompt, same view. Debate roles show in
    the sign of the expected change and in the rationale."""
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).digest()
    system = messages[0]["content"] if messages else ""
    role = next((r for r in ("bull", "bear", "judge") if f"You are the {r}" in system), "single")
    expected = round(digest[0] / 255 * 6 - 3, 2)
    if role == "bull":
        expected = abs(expected) + 0.5
    elif role == "bear":
        expected = -abs(expected) - 0.5
    return {
        "direction": "up" if expected > 0 else "down" if expected < 0 else "flat",
        "expected_return_pct": expected,
        "uncertainty_pct": round(1 + digest[1] / 255 * 3, 2),
        "confidence": round(digest[2] / 255, 2),
        "rationale": f"{role} view {digest.hex()[:8]}",
    }


class FakeLlmServer:
    """Records every request; answers by the scripted behaviour, else ``default``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.default = "valid"
        self.retry_after = "2"
        self.slow_s = 2.0
        self._script: deque[str] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._http.fake = self  # type: ignore[attr-defined]
        self._http.handle_error = lambda *args: None  # type: ignore[method-assign]
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}"

    def then(self, *behaviours: str) -> None:
        """Answer the next requests with these behaviours, in order."""
        unknown = set(behaviours) - set(BEHAVIOURS)
        if unknown:
            raise ValueError(f"unknown behaviours {unknown}")
        self._script.extend(behaviours)

    def next_behaviour(self, record: dict[str, Any]) -> str:
        with self._lock:
            self.requests.append(record)
            return self._script.popleft() if self._script else self.default

    def wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._http.shutdown()
        self._http.server_close()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        fake: FakeLlmServer = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        behaviour = fake.next_behaviour(
            {"path": self.path, "body": body, "headers": dict(self.headers)}
        )
        if self.path not in ("/api/chat", "/v1/chat/completions"):
            self._send(404, {"error": f"no route {self.path}"})
        elif behaviour == "500":
            self._send(500, {"error": "internal error"})
        elif behaviour == "429":
            self._send(429, {"error": "slow down"}, {"Retry-After": fake.retry_after})
        elif behaviour == "404":
            self._send(404, {"error": {"message": f"model '{body.get('model')}' not found"}})
        else:
            if behaviour == "slow":
                fake.wait(fake.slow_s)
            self._send(200, _envelope(self.path, _content(behaviour, body["messages"])))

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _content(behaviour: str, messages: list[dict[str, str]]) -> str:
    if behaviour == "invalid_json":
        return "I think the market will go up {"
    view = answer_for(messages)
    if behaviour == "bad_schema":
        view["confidence"] = 1.7
        del view["rationale"]
    return json.dumps(view)


def _envelope(path: str, content: str) -> dict[str, Any]:
    if path == "/api/chat":
        return {
            "model": "fake",
            "message": {"role": "assistant", "content": content},
            "done": True,
            "prompt_eval_count": PROMPT_TOKENS,
            "eval_count": COMPLETION_TOKENS,
        }
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        },
    }


@contextmanager
def running_llm_server() -> Iterator[FakeLlmServer]:
    """A started ``FakeLlmServer``, stopped after."""
    server = FakeLlmServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
