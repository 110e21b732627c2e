"""The composition of cache, rate limiter and event bus: on Redis when a URL is configured
(``FFE__REDIS__URL``), in process otherwise."""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ffe.domain.errors import ConfigError, FfeError
from ffe.kv.bus import EventBus, MemoryEventBus, RedisEventBus
from ffe.kv.cache import Cache, CacheObserver, MemoryCache, RedisCache
from ffe.kv.outage import REDIS_ERRORS, Outage
from ffe.kv.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter

_HOW_TO_FIX = (
    "use redis://HOST:6379/0 (rediss:// for TLS, unix:///path/to/redis.sock for a socket), "
    "or unset FFE__REDIS__URL to keep cache, rate limits and events in process"
)


class KvUnavailableError(FfeError, ConnectionError):
    """Redis is configured but does not answer: start it, fix the URL, or unset it."""


@dataclass
class KvBackends:
    """Cache, rate limiter and event bus, sharing one Redis client when ``redis_url`` is set.

    ``redis_url`` may hold a password, so it is left out of the repr; ``where`` is the URL
    without credentials, for messages and logs.
    """

    cache: Cache
    limiter: RateLimiter
    bus: EventBus
    redis_url: str | None = field(default=None, repr=False)
    client: Redis | None = field(default=None, repr=False)

    @property
    def where(self) -> str:
        """The Redis URL with any credentials hidden, or "in process" without Redis."""
        return "in process" if self.redis_url is None else redact_url(self.redis_url)

    async def ping(self, timeout_s: float = 2.0) -> str:
        """Where the state lives ("in process", or Redis's URL without credentials) once it
        answers; KvUnavailableError saying what to do when Redis is configured and down."""
        if self.client is None:
            return "in process"
        try:
            async with asyncio.timeout(timeout_s):
                reply = self.client.ping()
                # redis-py 7 types the asyncio client's ping as "Awaitable[bool] | bool"
                if inspect.isawaitable(reply):
                    await reply
        except REDIS_ERRORS as error:
            raise KvUnavailableError(
                f"Redis at {self.where} does not answer ({type(error).__name__}: {error}): "
                "start it or fix FFE__REDIS__URL; without Redis the cache misses and rate "
                "limits and events stay in each process"
            ) from error
        return f"redis at {self.where}"

    async def close(self) -> None:
        """Stop the event bus and close the Redis connections, if any."""
        await self.bus.close()
        if self.client is not None:
            await self.client.aclose()


def make_backends(
    redis_url: str | None,
    *,
    observer: CacheObserver | None = None,
    timeout_s: float = 0.5,
    retry_after_s: float = 1.0,
    key_prefix: str = "ffe:",
) -> KvBackends:
    """In-process backends without ``redis_url`` (None or blank), Redis ones with it.

    Nothing connects here: the Redis client connects on first use, so a Redis that is down
    at start-up degrades the API instead of stopping it. ``timeout_s`` bounds each connect
    and each reply, and after a failure Redis is tried again every ``retry_after_s``. Keys
    are ``key_prefix`` + "cache:", "rl:" or "events:" + the caller's key.
    """
    if redis_url is None or not redis_url.strip():
        return KvBackends(
            cache=MemoryCache(observer=observer),
            limiter=MemoryRateLimiter(),
            bus=MemoryEventBus(),
        )
    url = redis_url.strip()
    client = _client(url, timeout_s)
    # One outage for all three: the first to see Redis fail spares the others the wait.
    outage = Outage(retry_after_s=retry_after_s)
    return KvBackends(
        cache=RedisCache(client, f"{key_prefix}cache:", observer=observer, outage=outage),
        limiter=RedisRateLimiter(client, f"{key_prefix}rl:", outage=outage),
        bus=RedisEventBus(client, f"{key_prefix}events:", outage=outage),
        redis_url=url,
        client=client,
    )


def _client(url: str, timeout_s: float) -> Redis:
    problem = _url_problem(url)
    if problem is None:
        try:
            return Redis.from_url(
                url,
                socket_connect_timeout=timeout_s,
                socket_timeout=timeout_s,
                socket_keepalive=True,  # notices a silently dead peer under a quiet pub/sub
                # One immediate retry renews a pooled connection that Redis closed (after a
                # restart, say); redis-py's default backs off for seconds, too long for a
                # request, and Outage paces the retries instead.
                retry=Retry(NoBackoff(), 1),
            )
        except ValueError as error:  # bad query arguments, such as ?db=x
            problem = str(error)
    raise ConfigError(
        f"redis.url {redact_url(url)!r} is not a Redis URL ({problem}): {_HOW_TO_FIX}"
    )


def _url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as a Redis URL, or None."""
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when not a number from 0 to 65535
    except ValueError as error:
        return str(error)
    if parts.scheme == "unix":
        return None if parts.path else "no socket path"
    if parts.scheme not in ("redis", "rediss"):
        return f"scheme {parts.scheme or 'missing'!r}, not redis, rediss or unix"
    if not parts.hostname:
        return "no host"
    if port == 0:
        return "port 0"
    database = parts.path.strip("/")
    if database and not database.isdigit():
        return f"database {database!r} is not a number"
    return None


def redact_url(url: str) -> str:
    """``url`` with its user, password and query values hidden, for messages and logs."""
    head, separator, rest = url.partition("://")
    if not separator:
        head, rest = "", url
    # Everything before the last "@" may be credentials, even when the URL is malformed.
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    rest, question, query = rest.partition("?")
    if question:
        query = "&".join(f"{part.partition('=')[0]}=***" for part in query.split("&"))
    return f"{head}{separator}{rest}{question}{query}"
