"""The trading agent's notifications: Telegram messages and JSON webhooks, sent in the background.

``Notifications.publish`` neither blocks nor raises: it queues the event for each notifier that
wants its kind, and each notifier has a worker task of its own, so a slow or broken one delays
nobody else. Timeouts, 429 and 5xx are retried with exponential backoff (a 429's retry_after
wins); a failure that remains is logged once, with the notifier's name, and counted.

Webhook signatures: with a secret, each webhook request carries

    X-FFE-Timestamp: <unix seconds when sent>
    X-FFE-Signature: sha256=<hex of HMAC-SHA256(secret, timestamp + "." + body)>

``body`` being the exact bytes of the request body. A receiver recomputes the HMAC over the
timestamp header, a dot and the raw body, compares in constant time (``hmac.compare_digest``)
and refuses a timestamp more than a few minutes old: the timestamp is signed so that a
captured request cannot be replayed later.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, Self, get_args

import httpx

from ffe.domain.errors import ConfigError, FfeError

log = logging.getLogger(__name__)

EventKind = Literal["approval_waiting", "fill", "risk_halt", "error", "started", "stopped", "feed"]
EVENT_KINDS: frozenset[EventKind] = frozenset(get_args(EventKind))
TELEGRAM_API = "https://api.telegram.org"
SIGNATURE_HEADER = "X-FFE-Signature"
TIMESTAMP_HEADER = "X-FFE-Timestamp"
_TELEGRAM_MAX_CHARS = 4096  # longer messages are refused by the Bot API


@dataclass(frozen=True, slots=True)
class Event:
    """Something the people watching the agent should hear about."""

    kind: EventKind
    title: str
    text: str
    data: Mapping[str, Any] = field(default_factory=dict)
    time: datetime = field(default_factory=lambda: datetime.now(UTC))

    def as_json(self) -> dict[str, Any]:
        """The event as JSON-ready data, ``time`` in ISO 8601 UTC."""
        when = self.time if self.time.tzinfo is not None else self.time.replace(tzinfo=UTC)
        return {
            "kind": self.kind,
            "title": self.title,
            "text": self.text,
            "data": dict(self.data),
            "time": when.astimezone(UTC).isoformat(),
        }


class NotifyError(FfeError):
    """A receiver refused a notification: check the notifier's token, chat id or URL."""


class TemporaryNotifyError(NotifyError):
    """A notification could not be delivered for now (timeout, 429, 5xx): worth retrying,
    after ``retry_after`` seconds when the receiver asked for that."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Notifier(Protocol):
    """Delivers events somewhere. ``send`` may raise; ``Notifications`` retries and counts.

    A notifier with an ``async def aclose()`` has it called when the fan-out closes."""

    name: str
    kinds: frozenset[EventKind]

    async def send(self, event: Event) -> None: ...


# -- HTTP notifiers -----------------------------------------------------------------------


# Secrets and what to show instead, in httpx's log: it logs each request's URL at INFO, and a
# Telegram URL holds the bot token.
_HTTPX_SECRETS: dict[str, str] = {}


def _redact_httpx(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    hidden = _hide(message, _HTTPX_SECRETS)
    if hidden != message:
        record.msg, record.args = hidden, ()
    return True


def _hide(text: str, secrets: Mapping[str, str]) -> str:
    for secret, shown in secrets.items():
        text = text.replace(secret, shown)
    return text


class _HttpNotifier:
    """A connection pool of its own, and errors that never show a secret."""

    def __init__(
        self,
        name: str,
        kinds: Iterable[EventKind] | None,
        timeout_s: float,
        client: httpx.AsyncClient | None,
    ) -> None:
        self.name = name
        self.kinds: frozenset[EventKind] = EVENT_KINDS if kinds is None else frozenset(kinds)
        self.timeout_s = timeout_s
        self._client, self._owns_client = client, client is None
        self._secrets: dict[str, str] = {}

    def _keep_secret(self, secret: str, shown: str) -> None:
        self._secrets[secret] = shown
        _HTTPX_SECRETS[secret] = shown
        logging.getLogger("httpx").addFilter(_redact_httpx)  # no-op when already there

    async def aclose(self) -> None:
        """Close the connection pool this notifier opened (it opens another if used again)."""
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _post(
        self, url: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s)
        sent = {"Content-Type": "application/json", "User-Agent": "ffe-notify", **(headers or {})}
        try:
            return await self._client.post(url, content=body, headers=sent)
        except httpx.TimeoutException:
            raise TemporaryNotifyError(f"no answer within {self.timeout_s:g}s") from None
        except httpx.TransportError as exc:
            problem = _hide(f"{type(exc).__name__}: {exc}", self._secrets)
            raise TemporaryNotifyError(problem) from None


class TelegramNotifier(_HttpNotifier):
    """Sends each event as a plain-text message (nothing to escape) to one Telegram chat. The
    token is in the request URL: errors and httpx's request log show ``***`` instead."""

    def __init__(
        self,
        token: str,
        chat_id: str,
        base_url: str = TELEGRAM_API,
        timeout_s: float = 10.0,
        *,
        kinds: Iterable[EventKind] | None = None,
        name: str = "telegram",
        client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(name, kinds, timeout_s, client)
        if not token or not chat_id:
            raise ConfigError(f"{name}: a Telegram notifier needs a bot token and a chat id")
        _check_url(base_url, name)
        self.chat_id = chat_id
        self._url = f"{base_url.rstrip('/')}/bot{token}/sendMessage"
        self._keep_secret(token, "***")

    async def send(self, event: Event) -> None:
        """Post the message; NotifyError (or TemporaryNotifyError) when Telegram refuses it."""
        text = f"{event.title}\n{event.text}"[:_TELEGRAM_MAX_CHARS]
        body = {"chat_id": self.chat_id, "text": text, "disable_web_page_preview": True}
        response = await self._post(self._url, _dumps(body))
        self._check(response)

    def _check(self, response: httpx.Response) -> None:
        reply = _json_object(response)
        if response.is_success and reply.get("ok") is not False:
            return
        code = reply.get("error_code", response.status_code)
        about = reply.get("description", response.reason_phrase)
        problem = _hide(f"Telegram answered {code}: {about}", self._secrets)
        if 429 in (code, response.status_code) or response.status_code >= 500:
            parameters = reply.get("parameters")
            wait = parameters.get("retry_after") if isinstance(parameters, dict) else None
            raise TemporaryNotifyError(problem, _seconds(wait) or _retry_after_header(response))
        raise NotifyError(problem)


class WebhookNotifier(_HttpNotifier):
    """POSTs each event as JSON (``kind``, ``title``, ``text``, ``data``, ``time``), signed
    when a secret is set (see the module's docstring). Errors show only the URL's scheme and
    host: services such as Slack keep a secret in the path."""

    def __init__(
        self,
        url: str,
        secret: str | None = None,
        timeout_s: float = 10.0,
        headers: Mapping[str, str] | None = None,
        *,
        kinds: Iterable[EventKind] | None = None,
        name: str | None = None,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        shown = _safe_url(url)
        super().__init__(name or f"webhook {shown}", kinds, timeout_s, client)
        _check_url(url, self.name)
        self.url = url
        self._secret = secret.encode() if secret else None
        self._headers, self._clock = dict(headers or {}), clock
        self._keep_secret(str(httpx.URL(url)), shown)

    async def send(self, event: Event) -> None:
        """Post the event; NotifyError (or TemporaryNotifyError) unless the answer is 2xx."""
        body = _dumps(event.as_json())
        response = await self._post(self.url, body, self._signed(body))
        if response.is_success:
            return
        code = response.status_code
        problem = f"{_safe_url(self.url)} answered {code} {response.reason_phrase}"
        if code == 429 or code >= 500:
            raise TemporaryNotifyError(problem, _retry_after_header(response))
        raise NotifyError(problem)

    def _signed(self, body: bytes) -> dict[str, str]:
        headers = dict(self._headers)
        if self._secret is None:
            return headers
        timestamp = str(int(self._clock()))
        signed = timestamp.encode() + b"." + body
        digest = hmac.new(self._secret, signed, hashlib.sha256).hexdigest()
        headers[TIMESTAMP_HEADER] = timestamp
        headers[SIGNATURE_HEADER] = f"sha256={digest}"
        return headers


def _check_url(url: str, name: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{name}: the URL must start with http:// or https://")
    try:
        httpx.URL(url)
    except httpx.InvalidURL:
        raise ConfigError(f"{name}: not a valid URL") from None  # its text may hold a secret


def _safe_url(url: str) -> str:
    """Scheme and host only: the rest of a webhook URL may be a secret."""
    scheme, sep, rest = url.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
    return f"{scheme}{sep}{host}" if sep else "***"


def _dumps(data: Mapping[str, Any]) -> bytes:
    # default=str: a Decimal or numpy number in an event's data must not lose the event.
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        loaded = response.json()
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _seconds(value: Any) -> float | None:
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return None


def _retry_after_header(response: httpx.Response) -> float | None:
    return _seconds(response.headers.get("Retry-After"))


# -- the fan-out ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backoff:
    """How a failed send is retried (timeouts, 429 and 5xx only): ``base_s`` doubled per
    attempt up to ``max_s``; a receiver's ``retry_after`` instead, unless it is longer than
    ``max_retry_after_s``, when the event is given up."""

    max_retries: int = 3
    base_s: float = 0.5
    max_s: float = 10.0
    max_retry_after_s: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait after failed attempt ``attempt`` (0-based); None to give up."""
        if attempt >= self.max_retries:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after_s else None
        return min(self.max_s, self.base_s * 2.0**attempt)


@dataclass(slots=True)
class NotifierStats:
    """What one notifier did: events delivered, events given up after failing, events dropped
    unsent (queue full, or still queued at close), and retries."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0
    retries: int = 0


Sleep = Callable[[float], Awaitable[None]]


class _Lane:
    """One notifier's queue and worker, so each notifier waits only for itself."""

    def __init__(
        self, notifier: Notifier, size: int, timeout_s: float, backoff: Backoff, sleep: Sleep
    ) -> None:
        self.notifier = notifier
        self.queue: asyncio.Queue[Event] = asyncio.Queue(size)
        self.stats = NotifierStats()
        self.task: asyncio.Task[None] | None = None
        self._timeout_s, self._backoff, self._sleep = timeout_s, backoff, sleep

    def offer(self, event: Event) -> None:
        if self.queue.full():
            self.queue.get_nowait()  # the oldest: the newest says more about now
            self.queue.task_done()
            self.stats.dropped += 1
        self.queue.put_nowait(event)

    async def work(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                await self._deliver(event)
            except asyncio.CancelledError:
                self.stats.failed += 1  # cut off by aclose
                raise
            finally:
                self.queue.task_done()

    async def _deliver(self, event: Event) -> None:
        attempt = 0
        while True:
            try:
                await asyncio.wait_for(self.notifier.send(event), self._timeout_s)
            except Exception as exc:  # whatever a notifier raises is counted, never passed on
                retry_after = exc.retry_after if isinstance(exc, TemporaryNotifyError) else None
                delay = self._backoff.delay(attempt, retry_after) if _temporary(exc) else None
                if delay is None:
                    self._give_up(event, exc, attempt + 1)
                    return
                self.stats.retries += 1
                attempt += 1
                log.debug("notifier %s: %s; retry in %.2gs", self.notifier.name, exc, delay)
                await self._sleep(delay)
            else:
                self.stats.sent += 1
                return

    def _give_up(self, event: Event, exc: Exception, attempts: int) -> None:
        self.stats.failed += 1
        if isinstance(exc, NotifyError):
            reason = str(exc)
        elif isinstance(exc, TimeoutError):
            reason = f"no answer within {self._timeout_s:g}s"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        what = f"notifier {self.notifier.name}: {event.kind} event not sent"
        log.warning("%s after %d attempt(s): %s", what, attempts, reason)


def _temporary(exc: Exception) -> bool:
    return isinstance(exc, TemporaryNotifyError | TimeoutError | httpx.TransportError)


class Notifications:
    """The agent's fan-out to its notifiers. ``publish`` never blocks and never raises.

    Workers start with ``start()``, ``async with``, or the first ``publish`` inside a running
    event loop; ``aclose`` sends what is still queued, within a time limit."""

    def __init__(
        self,
        notifiers: Sequence[Notifier],
        *,
        queue_size: int = 100,
        timeout_s: float = 10.0,
        backoff: Backoff | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        names = [notifier.name for notifier in notifiers]
        if len(set(names)) != len(names):
            raise ConfigError(f"notifier names must differ, got {names}")
        if queue_size < 1 or timeout_s <= 0:
            raise ConfigError("notifications need queue_size >= 1 and timeout_s > 0")
        chosen = backoff or Backoff()
        self._lanes = [_Lane(n, queue_size, timeout_s, chosen, sleep) for n in notifiers]
        self._closed = False

    @property
    def stats(self) -> dict[str, NotifierStats]:
        """Counters by notifier name (live objects: they keep counting)."""
        return {lane.notifier.name: lane.stats for lane in self._lanes}

    def totals(self) -> NotifierStats:
        """The counters summed over the notifiers."""
        rows = [(s.sent, s.failed, s.dropped, s.retries) for s in self.stats.values()]
        return NotifierStats(*(sum(column) for column in zip(*rows, strict=True)))

    def publish(self, event: Event) -> None:
        """Queue ``event`` for each notifier that wants its kind; when a queue is full its
        oldest event is dropped. Call it from the event loop's thread."""
        try:
            for lane in self._lanes:
                if event.kind not in lane.notifier.kinds:
                    continue
                if self._closed:
                    lane.stats.dropped += 1
                else:
                    lane.offer(event)
            if not self._closed and _loop_running():
                self.start()
        except Exception as exc:  # notifications must never get in trading's way
            log.error("could not queue a notification: %s: %s", type(exc).__name__, exc)

    def start(self) -> None:
        """Start the workers in the running event loop (again, if they stopped)."""
        loop = asyncio.get_running_loop()
        for lane in self._lanes:
            if lane.task is None or lane.task.done():
                lane.task = loop.create_task(lane.work(), name=f"notify {lane.notifier.name}")

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Send what is queued, for at most ``timeout_s`` seconds, then stop the workers and
        close the notifiers. What could not be sent in time is counted as dropped."""
        if self._closed:
            return
        self._closed = True
        self.start()  # so that events published before any worker ran are sent too
        try:
            await asyncio.wait_for(
                asyncio.gather(*(lane.queue.join() for lane in self._lanes)), timeout_s
            )
        except TimeoutError:
            log.warning("notifications: not all sent within %gs of closing", timeout_s)
        await self._stop_workers()
        await self._close_notifiers()

    async def _stop_workers(self) -> None:
        tasks = [lane.task for lane in self._lanes if lane.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for lane in self._lanes:
            left = lane.queue.qsize()  # the queue is not used again
            if left:
                lane.stats.dropped += left
                log.warning("notifier %s: %d event(s) not sent", lane.notifier.name, left)

    async def _close_notifiers(self) -> None:
        for notifier in (lane.notifier for lane in self._lanes):
            closer = getattr(notifier, "aclose", None)
            if closer is None:
                continue
            try:
                await closer()
            except Exception as exc:  # closing is best effort
                log.warning("notifier %s: close failed: %s", notifier.name, exc)

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
