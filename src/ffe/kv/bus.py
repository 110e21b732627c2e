"""Fan-out of live events: what one part of the API publishes, every subscriber receives.

Messages are dicts carried as JSON (datetimes as ISO strings), so a subscriber gets the same
shape whichever bus carries them, and a copy of its own. A subscription is an async context
manager and an async iterator::

    async with bus.subscribe("fills") as subscription:
        async for message in subscription:
            ...

or, without ``async with``, call ``await subscription.get()`` and ``subscription.close()``.
Each subscriber has a bounded queue: when it falls behind, its oldest messages are dropped
(and counted) so a slow WebSocket never holds up the publisher or the other subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Protocol, cast

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from ffe.domain.errors import FfeError
from ffe.kv import _codec
from ffe.kv.outage import REDIS_ERRORS, Outage

logger = logging.getLogger(__name__)

DEFAULT_MAX_QUEUED = 1000
_RECANCEL_S = 0.05


class SubscriptionClosedError(FfeError):
    """The subscription (or its bus) was closed: no more messages will come."""


class Subscription:
    """One subscriber's bounded queue of messages on one channel; made by a bus's subscribe."""

    def __init__(
        self,
        channel: str,
        max_queued: int,
        *,
        on_close: Callable[[Subscription], None],
        on_drop: Callable[[], None],
        ready: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.channel = channel
        self.dropped = 0
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(max_queued)
        self._on_close = on_close
        self._on_drop = on_drop
        self._ready = ready
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once closed, by itself or by its bus."""
        return self._closed

    def offer(self, payload: bytes) -> None:
        """Queue one encoded message, dropping the oldest when full (never waits)."""
        if self._closed:
            return
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
            self._on_drop()
            if self.dropped == 1:
                logger.warning(
                    "a subscriber on %r is too slow: its oldest events are being dropped",
                    self.channel,
                )
        self._queue.put_nowait(payload)

    async def get(self) -> dict[str, Any]:
        """The next message, waiting for it; SubscriptionClosedError once closed."""
        if self._closed:
            raise SubscriptionClosedError(f"the subscription to {self.channel!r} is closed")
        payload = await self._queue.get()
        if payload is None:
            raise SubscriptionClosedError(f"the subscription to {self.channel!r} is closed")
        return cast(dict[str, Any], _codec.decode(payload))

    def close(self) -> None:
        """Stop receiving; a ``get`` waiting now raises SubscriptionClosedError."""
        if self._closed:
            return
        self._closed = True
        # Empty the queue so the wake-up below always fits and no stale message is read.
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)
        self._on_close(self)

    async def __aenter__(self) -> Subscription:
        if self._ready is not None:
            await self._ready()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            return await self.get()
        except SubscriptionClosedError:
            raise StopAsyncIteration from None


class EventBus(Protocol):
    """Publishes messages on named channels to every subscriber of the channel."""

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        """Send ``message`` to the channel's subscribers; never waits for a slow one."""
        ...

    def subscribe(self, channel: str) -> Subscription:
        """A new subscription; use it with ``async with`` to be sure it is listening."""
        ...

    @property
    def dropped(self) -> int:
        """Messages dropped so far because a subscriber was too slow."""
        ...

    async def close(self) -> None:
        """Close every subscription and stop listening."""
        ...


class _Fanout:
    """The local subscribers of a bus, by channel."""

    def __init__(self, max_queued: int, on_empty: Callable[[], None] | None = None) -> None:
        if max_queued < 1:
            raise ValueError(f"event bus max_queued must be at least 1; got {max_queued}")
        self.max_queued = max_queued
        self.dropped = 0
        self.closed = False
        self._on_empty = on_empty
        self._subscribers: dict[str, set[Subscription]] = {}

    @property
    def count(self) -> int:
        return sum(len(subscribers) for subscribers in self._subscribers.values())

    def add(self, channel: str, ready: Callable[[], Awaitable[None]] | None = None) -> Subscription:
        if self.closed:
            raise RuntimeError("this event bus is closed; make a new one")
        subscription = Subscription(
            channel, self.max_queued, on_close=self._remove, on_drop=self._count_drop, ready=ready
        )
        self._subscribers.setdefault(channel, set()).add(subscription)
        return subscription

    def deliver(self, channel: str, payload: bytes) -> None:
        for subscription in tuple(self._subscribers.get(channel, ())):
            subscription.offer(payload)

    def close_all(self) -> None:
        self.closed = True
        for subscribers in tuple(self._subscribers.values()):
            for subscription in tuple(subscribers):
                subscription.close()

    def _remove(self, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(subscription.channel, set())
        subscribers.discard(subscription)
        if not subscribers:
            self._subscribers.pop(subscription.channel, None)
        if not self._subscribers and self._on_empty is not None:
            self._on_empty()

    def _count_drop(self) -> None:
        self.dropped += 1


class MemoryEventBus:
    """Fan-out within this process."""

    def __init__(self, max_queued: int = DEFAULT_MAX_QUEUED) -> None:
        self._fanout = _Fanout(max_queued)

    @property
    def dropped(self) -> int:
        """Messages dropped so far because a subscriber was too slow."""
        return self._fanout.dropped

    @property
    def subscriber_count(self) -> int:
        """Open subscriptions, on all channels."""
        return self._fanout.count

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        """Queue ``message`` for every subscriber of ``channel``."""
        self._fanout.deliver(channel, _codec.encode(message))

    def subscribe(self, channel: str) -> Subscription:
        """A new subscription to ``channel``, receiving what is published from now on."""
        return self._fanout.add(channel)

    async def close(self) -> None:
        """Close every subscription."""
        self._fanout.close_all()


def _glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis PSUBSCRIBE pattern."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


class RedisEventBus:
    """Fan-out across processes through Redis pub/sub; local subscribers never depend on it.

    ``publish`` hands the message to this process's subscribers first, then publishes it on
    Redis channel ``prefix + channel`` as ``<origin> <json>``, where ``origin`` identifies
    this bus so that its own listener skips what it has already delivered. One listener task,
    running while there are subscribers, holds a single ``PSUBSCRIBE prefix*`` (one fixed
    subscription: nothing to add or remove while it reads, and one command to renew after an
    outage) and hands each message to the subscribers of its channel.

    When Redis fails, publish still reaches local subscribers, the outage is logged once, and
    the listener subscribes again once Redis answers; messages published elsewhere while it
    was down are lost, as pub/sub keeps nothing.
    """

    def __init__(
        self,
        client: Redis,
        prefix: str = "ffe:events:",
        *,
        max_queued: int = DEFAULT_MAX_QUEUED,
        outage: Outage | None = None,
        ready_timeout_s: float = 1.0,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._fanout = _Fanout(max_queued, on_empty=self._stop_listening)
        self._outage = outage if outage is not None else Outage()
        self._ready_timeout_s = ready_timeout_s
        self._origin = uuid.uuid4().hex.encode()
        self._listener: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()  # cancelled, not yet ended
        self._listening = asyncio.Event()
        # One publish at a time on Redis: concurrent ones could take different connections
        # and arrive out of order, which a numbered stream would read as a missed event.
        self._publishing = asyncio.Lock()

    @property
    def dropped(self) -> int:
        """Messages dropped so far because a subscriber of this process was too slow."""
        return self._fanout.dropped

    @property
    def listening(self) -> bool:
        """True while subscribed on Redis, receiving other processes' messages."""
        return self._listening.is_set()

    async def publish(self, channel: str, message: dict[str, Any]) -> None:
        """Deliver ``message`` here, then to every other process (unless Redis is down), in
        the order of the calls."""
        payload = _codec.encode(message)
        self._fanout.deliver(channel, payload)
        if not self._outage.should_try():
            return
        async with self._publishing:
            try:
                await self._client.publish(self._prefix + channel, self._origin + b" " + payload)
            except REDIS_ERRORS as error:
                self._outage.failed(error)
            else:
                self._outage.succeeded()

    def subscribe(self, channel: str) -> Subscription:
        """A new subscription to ``channel``; ``async with`` waits (briefly) until listening."""
        subscription = self._fanout.add(channel, ready=self._wait_listening)
        if self._listener is None or self._listener.done():
            self._listener = asyncio.get_running_loop().create_task(
                self._listen(), name="ffe.kv.bus listener"
            )
        return subscription

    async def close(self) -> None:
        """Close every subscription and stop the listener (the client stays open)."""
        self._fanout.close_all()
        self._stop_listening()
        while self._stopping:
            await asyncio.wait(self._stopping)

    def _stop_listening(self) -> None:
        if self._listener is not None:
            self._stopping.add(self._listener)
            self._listener.add_done_callback(self._stopping.discard)
            self._listener = None
            self._cancel_stopping()
        self._listening.clear()

    def _cancel_stopping(self) -> None:
        # redis-py can swallow a cancellation: on Python 3.11 its send goes through
        # asyncio.wait_for, which returns the result when the write ends as the cancel comes.
        # So cancel again until the listeners have ended.
        for listener in self._stopping:
            listener.cancel()
        if self._stopping:
            loop = next(iter(self._stopping)).get_loop()
            if not loop.is_closed():
                loop.call_later(_RECANCEL_S, self._cancel_stopping)

    async def _wait_listening(self) -> None:
        # With Redis known to be down there is nothing to wait for: local delivery works.
        if self._outage.down:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._ready_timeout_s):
                await self._listening.wait()

    def _current(self, task: asyncio.Task[None] | None) -> bool:
        # A listener whose cancellation was swallowed is no longer current: it stops at its
        # next wake-up and delivers nothing, so a new listener never doubles the messages.
        return task is not None and task is self._listener

    async def _listen(self) -> None:
        me = asyncio.current_task()
        while self._current(me):
            try:
                await self._listen_once(me)
            except REDIS_ERRORS as error:
                if self._current(me):
                    self._outage.failed(error)
            except Exception:  # a bug here must not end fan-out for good: log, retry
                logger.exception("event listener failed; starting it again")
            finally:
                if self._current(me):
                    self._listening.clear()
            await asyncio.sleep(self._outage.retry_after_s)

    async def _listen_once(self, me: asyncio.Task[None] | None) -> None:
        pubsub = self._client.pubsub()
        try:
            await pubsub.psubscribe(_glob_escape(self._prefix) + "*")
            await self._confirmed(pubsub)
            if not self._current(me):
                return
            self._listening.set()
            self._outage.succeeded()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                if not self._current(me):
                    return
                if message is not None and message.get("type") == "pmessage":
                    self._receive(message["channel"], message["data"])
        finally:
            with contextlib.suppress(*REDIS_ERRORS):
                await _aclose(pubsub)

    async def _confirmed(self, pubsub: PubSub) -> None:
        """Wait for Redis to confirm the PSUBSCRIBE, so ``listening`` means it."""
        async with asyncio.timeout(self._ready_timeout_s):
            while True:
                reply = await pubsub.get_message(timeout=self._ready_timeout_s)
                if reply is not None and reply.get("type") == "psubscribe":
                    return

    def _receive(self, channel: bytes | str, data: bytes | str) -> None:
        raw_channel = channel.encode() if isinstance(channel, str) else channel
        raw = data.encode() if isinstance(data, str) else data
        origin, _, payload = raw.partition(b" ")
        if origin == self._origin:
            return  # published by this bus, which delivered it locally already
        try:
            valid = isinstance(_codec.decode(payload), dict)
        except ValueError:
            valid = False
        if not valid:
            logger.debug("ignored a message on %r that is not a JSON object", raw_channel)
            return
        name = raw_channel[len(self._prefix.encode()) :].decode(errors="replace")
        self._fanout.deliver(name, payload)


def _aclose(pubsub: PubSub) -> Awaitable[object]:
    """``pubsub.aclose()``, typed: redis-py 7 leaves it unannotated and 8 annotates it, so a
    direct call needs a ``type: ignore`` on one and trips ``warn_unused_ignores`` on the other."""
    close: Callable[[], Awaitable[object]] = pubsub.aclose
    return close()
