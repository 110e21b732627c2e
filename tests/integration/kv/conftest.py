"""Fixtures for the Redis backends: keys of one's own on the shared test Redis, and a private
redis-server that a test may kill and start again."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

PASSWORD = "kv-test-s3cret"  # the private server's; tests check it never shows


@pytest.fixture
async def prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix no other test uses; its keys are deleted afterwards."""
    value = f"ffe-test:{uuid.uuid4().hex}:"
    yield value
    client = Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{value}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def new_client(redis_url: str) -> AsyncIterator[Callable[[], Redis]]:
    """Call it for another client with a pool of its own (another "worker"); all are closed."""
    clients: list[Redis] = []

    def make() -> Redis:
        clients.append(Redis.from_url(redis_url, socket_timeout=2))
        return clients[-1]

    yield make
    for client in clients:
        await client.aclose()


class RedisServer:
    """A redis-server of the test's own on a free port, without persistence."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.password = PASSWORD
        self.url = f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it answers."""
        self._process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                PASSWORD,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(
            self.url, socket_connect_timeout=0.2, socket_timeout=0.5, retry=Retry(NoBackoff(), 0)
        )
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    return
                except (redis.RedisError, OSError):
                    if time.monotonic() > deadline or self._process.poll() is not None:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL, as a crash would; returns once the port is closed."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)
            self._process = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private, started redis-server; killed afterwards."""
    if shutil.which("redis-server") is None:
        reason = "redis-server is not on PATH"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{reason}; CI=true requires it")
        pytest.skip(f"{reason}; install Redis to run the degradation tests")
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.kill()
