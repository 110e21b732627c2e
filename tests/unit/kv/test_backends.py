"""make_backends: memory backends without a URL, Redis ones (not yet connected) with one,
and a ConfigError that says what to fix, without the password, for a malformed URL."""

from __future__ import annotations

import pytest

from ffe.domain.errors import ConfigError
from ffe.kv import (
    MemoryCache,
    MemoryEventBus,
    MemoryRateLimiter,
    RedisCache,
    RedisEventBus,
    RedisRateLimiter,
    make_backends,
    redact_url,
)


@pytest.mark.parametrize("url", [None, "", "  "])
async def test_make_backends_when_no_url_then_in_process(url: str | None):
    backends = make_backends(url)

    assert isinstance(backends.cache, MemoryCache)
    assert isinstance(backends.limiter, MemoryRateLimiter)
    assert isinstance(backends.bus, MemoryEventBus)
    assert await backends.ping() == "in process"
    await backends.close()


async def test_make_backends_when_observer_then_cache_reports_to_it():
    events: list[str] = []
    backends = make_backends(None, observer=events.append)

    await backends.cache.get("absent")

    assert events == ["miss"]


async def test_make_backends_when_url_then_redis_backends_without_connecting():
    # Port 1 has nothing listening: building must not try it.
    backends = make_backends("redis://:s3cret@127.0.0.1:1/0")

    assert isinstance(backends.cache, RedisCache)
    assert isinstance(backends.limiter, RedisRateLimiter)
    assert isinstance(backends.bus, RedisEventBus)
    assert backends.where == "redis://***@127.0.0.1:1/0"
    assert "s3cret" not in repr(backends)
    await backends.close()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("localhost:6379", "scheme 'localhost'"),
        ("http://127.0.0.1:6379/0", "scheme 'http'"),
        ("redis://:s3cret@127.0.0.1:notaport/0", "Port could not be cast"),
        ("redis://:s3cret@127.0.0.1:99999/0", "Port out of range"),
        ("redis:///0", "no host"),
        ("redis://127.0.0.1:6379/zero", "database 'zero' is not a number"),
        ("redis://127.0.0.1:6379/0?db=x", "Invalid value for 'db'"),
        ("unix://", "no socket path"),
    ],
)
def test_make_backends_when_url_malformed_then_config_error_says_how_to_fix(url: str, problem: str):
    with pytest.raises(ConfigError) as raised:
        make_backends(url)

    message = str(raised.value)
    assert message.startswith("redis.url ")
    assert problem in message
    assert "use redis://HOST:6379/0" in message
    assert "s3cret" not in message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://user:pw@host:6379/0", "redis://***@host:6379/0"),
        ("rediss://:p@ss/word@host/0", "rediss://***@host/0"),
        ("redis://host/0?password=pw&db=1", "redis://host/0?password=***&db=***"),
        ("user:pw@host", "***@host"),
    ],
)
def test_redact_url_when_credentials_then_hidden(url: str, shown: str):
    assert redact_url(url) == shown
