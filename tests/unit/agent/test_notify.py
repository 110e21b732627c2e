"""Telegram and webhook notifications, sent to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, get_args

import pytest

from ffe import bootstrap
from ffe.agent.notify import (
    EVENT_KINDS,
    Backoff,
    Event,
    EventKind,
    Notifications,
    NotifierStats,
    NotifyError,
    TelegramNotifier,
    WebhookNotifier,
)
from ffe.config import NotifyEvent, load_settings, masked
from ffe.domain.errors import ConfigError

TOKEN = "123456789:AAbot-token-SECRET"
SECRET = "shared-webhook-secret"
NOTIFY_LOG = "ffe.agent.notify"

# -- the receiver ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: dict[str, Any] = field(default_factory=lambda: {"ok": True, "result": {}})
    hang: bool = False  # never answer


HANG = Reply(hang=True)


def telegram_error(code: int, description: str, **parameters: Any) -> Reply:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return Reply(code, body)


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Records every POST and answers with the scripted ``replies`` first, then ``default``."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.replies: list[Reply] = []
        self.default = Reply()
        self.release = threading.Event()  # lets hanging handlers go at teardown
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def _record(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            return self.replies.pop(0) if self.replies else self.default

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {name.lower(): value for name, value in self.headers.items()}
                reply = receiver._record(Request(self.path, headers, body))
                if reply.hang:
                    receiver.release.wait(5)
                    return
                payload = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test output quiet

        return Handler


@pytest.fixture
def make_receiver() -> Iterator[Callable[[], Receiver]]:
    made: list[Receiver] = []

    def make() -> Receiver:
        made.append(Receiver())
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


@pytest.fixture
def receiver(make_receiver: Callable[[], Receiver]) -> Receiver:
    return make_receiver()


@pytest.fixture
def no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No config files and no FFE settings from the environment, but the test's data dir."""
    for name in list(os.environ):
        upper = name.upper()
        if (upper.startswith("FFE__") and upper != "FFE__DATA__DIR") or upper == "FFE_CONFIG_DIR":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


class Sleeps:
    """Records the backoff delays instead of waiting them out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


class Exploding:
    name = "exploding"
    kinds = EVENT_KINDS

    async def send(self, event: Event) -> None:
        raise RuntimeError("a bug in the notifier")


def event(
    kind: EventKind = "fill", title: str = "ffe fill", text: str = "AAPL +10 @ 187.5", **data: Any
) -> Event:
    when = datetime(2024, 1, 2, 15, 30, tzinfo=UTC)
    return Event(kind=kind, title=title, text=text, data=data or {"client_id": "c-1"}, time=when)


async def eventually(condition: Callable[[], bool], within_s: float = 2.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- Telegram --------------------------------------------------------------------------------


async def test_telegram_when_event_published_then_message_reaches_chat_as_plain_text(receiver):
    telegram = TelegramNotifier(TOKEN, "-100200300", base_url=receiver.url)
    text = "AAPL +10 @ 187.5 *not_markdown* [x](y)"

    async with Notifications([telegram]) as notifications:
        notifications.publish(event(text=text))

    [request] = receiver.requests
    assert request.path == f"/bot{TOKEN}/sendMessage"
    assert request.json() == {
        "chat_id": "-100200300",
        "text": f"ffe fill\n{text}",
        "disable_web_page_preview": True,
    }
    assert notifications.stats["telegram"] == NotifierStats(sent=1)


async def test_telegram_when_429_with_retry_after_then_waits_that_long_and_succeeds(receiver):
    receiver.replies = [telegram_error(429, "Too Many Requests: retry after 7", retry_after=7)]
    sleeps = Sleeps()
    telegram = TelegramNotifier(TOKEN, "42", base_url=receiver.url)

    async with Notifications([telegram], sleep=sleeps) as notifications:
        notifications.publish(event())

    assert len(receiver.requests) == 2
    assert sleeps.delays == [7.0]
    assert notifications.stats["telegram"] == NotifierStats(sent=1, retries=1)


async def test_telegram_when_refused_or_unreachable_then_token_never_logged(receiver, caplog):
    receiver.default = telegram_error(401, "Unauthorized")
    refused = TelegramNotifier(TOKEN, "42", base_url=receiver.url, name="refused")
    unreachable = TelegramNotifier(TOKEN, "42", base_url=closed_port_url(), name="unreachable")
    notifications = Notifications(
        [refused, unreachable], backoff=Backoff(max_retries=1), sleep=Sleeps()
    )

    with caplog.at_level(logging.DEBUG):
        async with notifications:
            notifications.publish(event())
        with pytest.raises(NotifyError) as caught:
            await refused.send(event())

    assert len(receiver.requests) == 2  # one per send: a 401 is not retried
    assert notifications.stats["refused"].failed == 1
    assert notifications.stats["unreachable"] == NotifierStats(failed=1, retries=1)
    assert "Unauthorized" in caplog.text  # the failure is logged...
    assert "/bot***/sendMessage" in caplog.text  # ...and httpx's request log, masked
    assert TOKEN not in caplog.text
    assert TOKEN not in str(caught.value)


# -- webhooks --------------------------------------------------------------------------------


async def test_webhook_when_secret_set_then_body_is_the_event_and_signature_verifies(receiver):
    hook = WebhookNotifier(f"{receiver.url}/hooks/abc", secret=SECRET, clock=lambda: 1.7e9)

    async with Notifications([hook]) as notifications:
        notifications.publish(event("risk_halt", "ffe risk halt", "drawdown 21% > 20%", bar=42))

    [request] = receiver.requests
    assert request.path == "/hooks/abc"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "kind": "risk_halt",
        "title": "ffe risk halt",
        "text": "drawdown 21% > 20%",
        "data": {"bar": 42},
        "time": "2024-01-02T15:30:00+00:00",
    }
    timestamp = request.headers["x-ffe-timestamp"]
    assert timestamp == "1700000000"
    signed = timestamp.encode() + b"." + request.body
    expected = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["x-ffe-signature"], expected)


async def test_webhook_when_no_secret_then_unsigned(receiver):
    async with Notifications([WebhookNotifier(receiver.url)]) as notifications:
        notifications.publish(event())

    [request] = receiver.requests
    assert "x-ffe-signature" not in request.headers
    assert "x-ffe-timestamp" not in request.headers


# -- the fan-out -----------------------------------------------------------------------------


async def test_publish_when_receiver_always_fails_then_counted_logged_once_others_still_sent(
    make_receiver, caplog
):
    broken, healthy = make_receiver(), make_receiver()
    broken.default = Reply(500, {"error": "boom"})
    sleeps = Sleeps()
    notifications = Notifications(
        [WebhookNotifier(broken.url, name="broken"), WebhookNotifier(healthy.url, name="healthy")],
        backoff=Backoff(max_retries=2, base_s=0.5),
        sleep=sleeps,
    )

    with caplog.at_level(logging.WARNING, logger=NOTIFY_LOG):
        async with notifications:
            assert notifications.publish(event()) is None  # returns at once, raises nothing

    assert len(broken.requests) == 3  # the first try and two retries
    assert sleeps.delays == [0.5, 1.0]  # doubling
    assert notifications.stats["broken"] == NotifierStats(failed=1, retries=2)
    assert len(healthy.requests) == 1
    assert notifications.stats["healthy"] == NotifierStats(sent=1)
    [logged] = [record for record in caplog.records if record.name == NOTIFY_LOG]
    assert "notifier broken" in logged.getMessage()
    assert "500" in logged.getMessage()


async def test_publish_when_notifier_raises_anything_then_counted_and_not_retried(caplog):
    notifications = Notifications([Exploding()], sleep=Sleeps())

    with caplog.at_level(logging.WARNING, logger=NOTIFY_LOG):
        async with notifications:
            notifications.publish(event())

    assert notifications.stats["exploding"] == NotifierStats(failed=1)
    assert "RuntimeError: a bug in the notifier" in caplog.text


async def test_notifier_when_receiver_hangs_then_times_out_and_others_not_held_up(make_receiver):
    slow, fast = make_receiver(), make_receiver()
    slow.default = HANG
    notifications = Notifications(
        [WebhookNotifier(slow.url, name="slow", kinds={"fill"}), WebhookNotifier(fast.url)],
        timeout_s=0.4,
        backoff=Backoff(max_retries=0),
    )
    started = time.monotonic()

    async with notifications:
        notifications.publish(event("fill"))
        notifications.publish(event("started"))
        await eventually(lambda: len(fast.requests) == 2)
        assert notifications.stats["slow"].failed == 0  # fast was done while slow still hung

    assert time.monotonic() - started < 0.4 + 0.3  # closing waited only for slow's timeout
    assert notifications.stats["slow"] == NotifierStats(failed=1)
    assert len(slow.requests) == 1


async def test_aclose_when_notifier_hangs_then_returns_at_its_limit_and_counts_unsent(receiver):
    receiver.default = HANG
    hook = WebhookNotifier(receiver.url, name="hung")
    notifications = Notifications([hook], timeout_s=5.0)
    notifications.publish(event(title="in flight"))
    notifications.publish(event(title="queued"))
    await eventually(lambda: len(receiver.requests) == 1)
    started = time.monotonic()

    await notifications.aclose(timeout_s=0.2)

    assert time.monotonic() - started < 0.2 + 0.3
    assert notifications.stats["hung"] == NotifierStats(failed=1, dropped=1)


def test_publish_when_queue_full_then_oldest_dropped_and_counted(receiver):
    hook = WebhookNotifier(receiver.url, name="hook")
    notifications = Notifications([hook], queue_size=2)

    for title in ("one", "two", "three"):
        notifications.publish(event(title=title))  # no event loop yet: only queued
    assert notifications.stats["hook"].dropped == 1
    asyncio.run(notifications.aclose())

    assert [request.json()["title"] for request in receiver.requests] == ["two", "three"]
    assert notifications.totals() == NotifierStats(sent=2, dropped=1)


async def test_publish_when_notifier_wants_other_kinds_then_not_sent_to_it(receiver):
    fills = WebhookNotifier(f"{receiver.url}/fills", kinds={"fill"}, name="fills")
    everything = WebhookNotifier(f"{receiver.url}/all", name="all")

    async with Notifications([fills, everything]) as notifications:
        notifications.publish(event("started"))
        notifications.publish(event("fill"))

    sent = sorted((request.path, request.json()["kind"]) for request in receiver.requests)
    assert sent == [("/all", "fill"), ("/all", "started"), ("/fills", "fill")]


async def test_publish_when_closed_then_dropped_and_counted(receiver):
    notifications = Notifications([WebhookNotifier(receiver.url, name="hook")])
    await notifications.aclose()

    notifications.publish(event())

    assert notifications.stats["hook"] == NotifierStats(dropped=1)
    assert receiver.requests == []


# -- settings and wiring ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [("FFE__NOTIFY__TELEGRAM_TOKEN", TOKEN), ("FFE__NOTIFY__TELEGRAM_CHAT_ID", "42")],
)
def test_settings_when_telegram_token_or_chat_id_alone_then_error_names_both(
    no_config, monkeypatch, name, value
):
    monkeypatch.setenv(name, value)

    with pytest.raises(ConfigError, match=r"notify\.telegram_token and notify\.telegram_chat_id"):
        load_settings()


def test_settings_when_token_without_chat_id_then_error_hides_token(no_config):
    with pytest.raises(ConfigError) as caught:
        load_settings(notify={"telegram_token": TOKEN})

    assert TOKEN not in str(caught.value)


def test_masked_when_notify_secrets_set_then_hidden(no_config, monkeypatch):
    hook = "https://hooks.slack.com/services/T0/B0/XYZSECRET"
    monkeypatch.setenv("FFE__NOTIFY__TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv("FFE__NOTIFY__TELEGRAM_CHAT_ID", "42")
    monkeypatch.setenv("FFE__NOTIFY__WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("FFE__NOTIFY__WEBHOOK_URLS", json.dumps([hook]))

    shown = masked(load_settings())["notify"]

    assert shown["telegram_token"] == "***"
    assert shown["webhook_secret"] == "***"
    assert shown["webhook_urls"] == ["https://hooks.slack.com/***"]
    assert shown["telegram_chat_id"] == "42"
    dumped = json.dumps(shown)
    assert all(secret not in dumped for secret in (TOKEN, SECRET, "XYZSECRET"))


def test_settings_event_kinds_match_the_notifier_event_kinds():
    assert frozenset(get_args(NotifyEvent)) == EVENT_KINDS


async def test_bootstrap_notifications_when_configured_then_telegram_and_webhooks_wired(
    no_config, receiver
):
    settings = load_settings(
        notify={
            "telegram_token": TOKEN,
            "telegram_chat_id": -100123,  # YAML reads a chat id as a number
            "telegram_base_url": receiver.url,
            "webhook_urls": [f"{receiver.url}/a", f"{receiver.url}/b"],
            "events": ["fill"],
        }
    )
    notifications = bootstrap.notifications(settings)

    async with notifications:
        notifications.publish(event("started"))
        notifications.publish(event("fill"))

    assert sorted(notifications.stats) == ["telegram", "webhook-1", "webhook-2"]
    paths = sorted(request.path for request in receiver.requests)
    assert paths == ["/a", "/b", f"/bot{TOKEN}/sendMessage"]
    [telegram] = [request for request in receiver.requests if request.path.startswith("/bot")]
    assert telegram.json()["chat_id"] == "-100123"
