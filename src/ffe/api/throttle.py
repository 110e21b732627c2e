"""Failed authentications, counted where every worker sees them (``ffe.kv``: Redis when
configured, in process otherwise).

``AuthThrottle`` counts failed authentications per client address. Past ``limit`` in a window
the address's failing attempts get 429 instead of 401, and none of them costs an argon2 hash:
a key needing a hash is checked only if this address has not already failed with that key's
prefix. Credentials that are checked without a hash (a session, a key this process has
verified) and keys with another prefix are still accepted, so one attacker behind a shared
address does not lock out everyone else behind it. A failing session (expired, logged out)
costs no hash either: it is neither counted nor ever answered with 429, as its 401 is what
sends a dashboard user back to the login page.

``LoginBackoff`` does the same for passwords, per address and user name: after ``free``
wrong passwords each further one makes that address wait twice as long before it may try
that user again (1 s, 2 s, 4 s ... up to ``max_s``). The right password from another address
is never held up, so nobody can lock a user out.

Both count an IPv6 client by its /64: one host is commonly given a whole /64, and could
otherwise take a fresh address for every attempt.
"""

from __future__ import annotations

import ipaddress
import json
import math
import time
from collections.abc import Callable

from ffe.api.auth import AuthError, HashGate, NoCredentialsError, SessionError, WrongSecretError
from ffe.kv import Cache, MemoryRateLimiter, RateLimiter


class ThrottledError(AuthError):
    """Too many failed attempts from this address: wait ``retry_after_s`` and try again."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class AuthThrottle:
    """Failed authentications per client address (see the module docstring)."""

    def __init__(self, limiter: RateLimiter, limit: int, window_s: float) -> None:
        self.limiter, self.limit, self.window_s = limiter, limit, window_s

    async def refused(self, address: str, error: AuthError) -> AuthError:
        """Count ``error`` against ``address``; the error to answer: ``error`` itself, or a
        ``ThrottledError`` once the address is past the limit."""
        if isinstance(error, ThrottledError | NoCredentialsError | SessionError):
            return error  # nothing was checked, or nothing that costs a hash: not counted
        decision = await self.limiter.hit(_key(address), self.limit, self.window_s)
        if isinstance(error, WrongSecretError):
            await self.limiter.hit(_key(address, error.prefix), self.limit, self.window_s)
        if decision.allowed:
            return error
        return _throttled(address, decision.reset_s)

    def gate(self, address: str) -> HashGate:
        """What a key check from ``address`` awaits before it spends a hash."""

        async def before_hash(prefix: str) -> None:
            failed, reset_s = await self.limiter.peek(_key(address))
            if failed < self.limit:
                return
            failed_here, reset_here_s = await self.limiter.peek(_key(address, prefix))
            if failed_here:
                raise _throttled(address, max(reset_s, reset_here_s))

        return before_hash


def counted_as(address: str) -> str:
    """Who ``address`` is counted as: itself, or its /64 for IPv6 (an IPv4 address written
    as IPv6, ``::ffff:a.b.c.d``, is that IPv4 address)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # "unknown", or a test client's name
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _key(address: str, prefix: str = "") -> str:
    client = counted_as(address)
    return f"authfail:{client}:{prefix}" if prefix else f"authfail:{client}"


def _throttled(address: str, retry_after_s: float) -> ThrottledError:
    wait = max(1, math.ceil(retry_after_s))
    return ThrottledError(
        f"too many failed authentications from {address}: retry in {wait}s with valid credentials",
        wait,
    )


class LoginBackoff:
    """Wrong passwords per client address and user name (see the module docstring)."""

    def __init__(
        self,
        cache: Cache,
        free: int,
        max_s: float,
        clock: Callable[[], float] = time.time,  # wall time: shared by every worker
        limiter: RateLimiter | None = None,
    ) -> None:
        self.cache, self.free, self.max_s, self.clock = cache, free, max_s, clock
        self.limiter = limiter if limiter is not None else MemoryRateLimiter()

    async def wait_s(self, address: str, username: str) -> float:
        """How long ``address`` must wait before it may try ``username`` again (0: now)."""
        _, until = await self._read(address, username)
        return max(0.0, until - self.clock())

    async def claim(self, address: str, username: str) -> float:
        """0 when this attempt may check its password now, else how long to wait. The wait
        is read, then the attempt claimed in a counter that is one atomic step (one Redis
        INCR with a shared limiter): of guesses sent together, the free tries left pass and,
        past them, one per backoff step; the rest wait as if they had failed in turn."""
        failures, until = await self._read(address, username)
        wait = until - self.clock()
        if wait > 0:
            return wait
        left = max(1, self.free - 1 - failures)  # the last free try claims alone
        step = max(1.0, self._wait_after(failures + 1))
        # One counter per failure count: guesses racing at the same count share it, while
        # someone trying again after a failure starts on a fresh one.
        key = f"login-claim:{failures}:{_login_key(address, username)}"
        decision = await self.limiter.hit(key, left, step)
        return 0.0 if decision.allowed else max(decision.reset_s, 0.001)

    def _wait_after(self, failures: int) -> float:
        return 0.0 if failures < self.free else min(self.max_s, 2.0 ** (failures - self.free))

    async def failed(self, address: str, username: str) -> float:
        """Record a wrong password; how long the address must now wait."""
        failures, _ = await self._read(address, username)
        failures += 1
        wait = self._wait_after(failures)
        record = json.dumps({"failures": failures, "until": self.clock() + wait}).encode()
        # Forgotten once the address has kept quiet for the longest wait after its own.
        await self.cache.set(_login_key(address, username), record, wait + self.max_s)
        return wait

    async def succeeded(self, address: str, username: str) -> None:
        """The right password: this address starts afresh for this user."""
        await self.cache.delete(_login_key(address, username))

    async def _read(self, address: str, username: str) -> tuple[int, float]:
        found = await self.cache.get(_login_key(address, username))
        if found is None:
            return 0, 0.0
        try:
            record = json.loads(found)
            return int(record["failures"]), float(record["until"])
        except (ValueError, KeyError, TypeError):
            return 0, 0.0


def _login_key(address: str, username: str) -> str:
    return f"login-failures:{counted_as(address)}:{username.strip().lower()}"
