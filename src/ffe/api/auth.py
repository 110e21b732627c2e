"""Who is calling: API keys with scopes and dashboard users with passwords (the session a
login hands out is in ``sessions``).

Secrets are never stored: an API key is kept as a public prefix (to find it) and an argon2
hash of the whole key; a password as an argon2 hash. A key is shown once, when it is made.
Verifying argon2 costs tens of milliseconds on purpose, so a verified key is remembered for
``cache_s`` seconds (by a SHA-256 of the key, in this process only); revoking a key takes
effect within that time, and at once in the process that revoked it (``forget``). A key whose
prefix is unknown or revoked is refused without a hash, and hashes run on an executor of
their own (``hashing``), so a flood of bogus keys cannot starve other work of threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select, update

from ffe.domain.errors import ConfigError, FfeError, NotFoundError
from ffe.store.database import Database
from ffe.store.models import ROLES, ApiKey, User
from ffe.store.repositories import unit_of_work

SCOPES = ("read", "trade", "admin")
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "trader": frozenset({"read", "trade"}),
    "admin": frozenset(SCOPES),
}
KEY_PREFIX = "ffe_"
_hasher = PasswordHasher()
# Checked when a name or key prefix is unknown, so timing does not tell which ones exist: the
# hash of a random secret thrown away, made with _hasher's parameters (a test keeps them the
# same). A constant, because hashing at import made every `ffe` command that touches users or
# keys 0.1 s slower; it cannot let anyone in, as an unknown name is refused whatever matches.
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$cjDAaMjEPuuLXFqGGvOXuw"
    "$w6YwnmQqHSONAG7iT15wLZox5NCBz08tKe6FhrlZ3SY"
)


class AuthError(FfeError):
    """The caller could not be identified: log in again or send a valid key."""


class NoCredentialsError(AuthError):
    """The request brought no credentials (or a cookie without its CSRF header): nothing
    was tried, so nothing counts as a failed attempt."""


class SessionError(AuthError):
    """A session token or cookie that does not hold (expired, logged out, forged). It cost
    no hash, so it is never counted as a failed attempt nor answered with 429: the 401 is
    what sends a dashboard user back to the login page."""


class WrongSecretError(AuthError):
    """A key with a real prefix and a wrong secret: the one refusal that cost a hash."""

    def __init__(self, message: str, prefix: str) -> None:
        super().__init__(message)
        self.prefix = prefix


#: Called with a key's prefix just before its hash is checked; raises to refuse the check.
HashGate = Callable[[str], Awaitable[None]]


async def check_hash(executor: Executor | None, stored_hash: str, secret: str) -> bool:
    """``verify_secret`` on ``executor`` (the loop's default one when None)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, verify_secret, stored_hash, secret)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a dashboard user or an API key, and what it may do."""

    name: str
    kind: Literal["user", "key"]
    scopes: frozenset[str]
    ident: str = ""  # unique: a key's prefix (names may repeat), a user's name

    @property
    def limit_key(self) -> str:
        """What its rate limit is counted against."""
        return f"{self.kind}:{self.ident or self.name}"

    @property
    def actor(self) -> str:
        """How the audit log names the caller."""
        return f"{self.kind}:{self.name}"

    def allows(self, scope: str) -> bool:
        """Whether the caller has ``scope``."""
        return scope in self.scopes

    def as_dict(self) -> dict[str, Any]:
        """The caller as JSON: name, kind and scopes."""
        return {"name": self.name, "kind": self.kind, "scopes": sorted(self.scopes)}


def check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """The scopes, refused with a message naming the valid ones when one is unknown. Each
    scope implies the ones below it (admin > trade > read)."""
    given = frozenset(s.strip().lower() for s in scopes if s.strip())
    unknown = given - set(SCOPES)
    if unknown or not given:
        raise ConfigError(
            f"unknown scope {', '.join(sorted(unknown)) or '(none given)'}: use read, trade "
            "or admin (admin includes trade, trade includes read)"
        )
    top = max(SCOPES.index(s) for s in given)
    return frozenset(SCOPES[: top + 1])


def hash_secret(secret: str) -> str:
    """An argon2 hash of a password or key."""
    return _hasher.hash(secret)


def verify_secret(stored_hash: str, secret: str) -> bool:
    """Whether ``secret`` matches ``stored_hash`` (False for a malformed hash)."""
    try:
        return _hasher.verify(stored_hash, secret)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# -- API keys ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: ``key`` is shown to the user once and never stored."""

    id: int
    name: str
    key: str
    prefix: str
    scopes: frozenset[str]


async def create_key(db: Database, name: str, scopes: Iterable[str], actor: str) -> NewKey:
    """Make an API key with ``scopes``; the audit log records who made it."""
    name = name.strip()
    if not name or len(name) > 64:
        raise ConfigError("a key needs a name of 1 to 64 characters (who or what uses it)")
    granted = check_scopes(scopes)
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    async with unit_of_work(db) as uow:
        row = ApiKey(name=name, prefix=prefix, key_hash=hash_secret(key), scopes=sorted(granted))
        uow.session.add(row)
        await uow.session.flush()
        await uow.audit.record(actor, "key.create", prefix, {"name": name, "scopes": row.scopes})
        return NewKey(row.id, name, key, prefix, granted)


async def list_keys(db: Database) -> list[ApiKey]:
    """Every API key (hashes, never the keys), oldest first."""
    async with db.session() as session:
        return list((await session.scalars(select(ApiKey).order_by(ApiKey.id))).all())


async def revoke_key(db: Database, ref: str, actor: str) -> ApiKey:
    """Revoke the key whose prefix (or id) is ``ref``."""
    async with unit_of_work(db) as uow:
        query = select(ApiKey).where(
            (ApiKey.prefix == ref) | (ApiKey.id == int(ref) if ref.isdigit() else False)
        )
        row = (await uow.session.scalars(query)).one_or_none()
        if row is None:
            raise NotFoundError(f"no API key {ref!r} (see `ffe keys list`)")
        row.revoked_at = row.revoked_at or datetime.now(UTC)
        await uow.audit.record(actor, "key.revoke", row.prefix, {"name": row.name})
        return row


@dataclass(slots=True)
class _Known:
    principal: Principal
    prefix: str
    checked_until: float  # monotonic: trust it without asking the database until then
    used_written: float  # monotonic: when last_used_at was last written


class KeyVerifier:
    """Checks presented API keys against the database, remembering good ones.

    The argon2 check runs once per key and process, on a worker thread (it takes tens to
    hundreds of milliseconds on purpose), and requests that present the same unknown key at
    once share that one check. Every ``cache_s`` a remembered key is re-checked for
    revocation in the background with one cheap query, while requests go on being served:
    a revoked key is refused once that check has seen it. A re-check that cannot reach the
    database keeps the key (a revocation is a database write: none can have happened that
    the check could see) and is tried again ``cache_s`` later, so keys already in use, such
    as Prometheus's scrape key, still work through a database outage and /metrics goes on
    reporting it. ``last_used_at`` is written at most once every ``used_every_s`` per key.
    """

    def __init__(
        self,
        db: Database,
        cache_s: float = 30.0,
        used_every_s: float = 60.0,
        *,
        hashing: Executor | None = None,
    ) -> None:
        self.db = db
        self.hashing = hashing
        self.cache_s = cache_s
        self.used_every_s = used_every_s
        self._known: dict[bytes, _Known] = {}
        self._checking: dict[bytes, asyncio.Future[_Known]] = {}
        self._generation = 0  # bumped by forget(): checks begun before it prove nothing

    async def verify(self, key: str, gate: HashGate | None = None) -> Principal:
        """The principal a key belongs to; ``AuthError`` for a bad or revoked key. ``gate``
        is awaited before a hash is checked, and may refuse it by raising."""
        digest = hashlib.sha256(key.encode()).digest()
        known = self._known.get(digest)
        if known is not None:
            if known.checked_until <= time.monotonic() and digest not in self._checking:
                self._check(digest, self._revalidate(known), known)  # in the background
            return known.principal
        pending = self._checking.get(digest)
        if pending is None:
            pending = self._check(digest, self._lookup(key, gate))
        return (await asyncio.shield(pending)).principal

    def _check(
        self,
        digest: bytes,
        work: Coroutine[Any, Any, _Known],
        remembered: _Known | None = None,
    ) -> asyncio.Future[_Known]:
        """Run one check of a key; its result is remembered, a failure forgets the key, but
        for a re-check of a ``remembered`` key that failed for any reason but the key's own
        (the database did not answer): that key stays, to be re-checked ``cache_s`` later."""

        generation = self._generation

        async def run() -> _Known:
            try:
                checked = await work
            except AuthError:
                self._known.pop(digest, None)
                raise
            except BaseException:
                if remembered is None or self._known.get(digest) is not remembered:
                    self._known.pop(digest, None)
                else:
                    remembered.checked_until = time.monotonic() + self.cache_s
                raise
            finally:
                if self._checking.get(digest) is task:
                    del self._checking[digest]
            # A check that read the key before a revocation here must not vouch for it after.
            if generation == self._generation:
                if len(self._known) > 10_000:
                    self._known.clear()
                self._known[digest] = checked
            return checked

        task = asyncio.ensure_future(run())
        task.add_done_callback(_retrieve)
        self._checking[digest] = task
        return task

    async def settle(self) -> None:
        """Wait for the checks under way (tests, shutdown)."""
        await asyncio.gather(*self._checking.values(), return_exceptions=True)

    def forget(self) -> None:
        """Drop remembered keys (after a revocation in this process), and the checks under
        way with them: a revoked key is refused here from now on."""
        self._generation += 1
        self._known.clear()
        self._checking.clear()

    async def _lookup(self, key: str, gate: HashGate | None) -> _Known:
        prefix = key[len(KEY_PREFIX) :].partition("_")[0] if key.startswith(KEY_PREFIX) else ""
        if not prefix:
            raise AuthError("malformed API key: expected ffe_<prefix>_<secret>")
        async with self.db.session() as session:
            row = (
                await session.scalars(select(ApiKey).where(ApiKey.prefix == prefix))
            ).one_or_none()
        # Prefixes are not secret (they name keys in lists and logs): refusing an unknown one
        # without a hash tells a caller nothing it could not learn, and costs nothing.
        if row is None or row.revoked_at is not None:
            raise AuthError("invalid or revoked API key")
        if gate is not None:
            await gate(prefix)
        if not await check_hash(self.hashing, row.key_hash, key):
            raise WrongSecretError("invalid or revoked API key", prefix)
        principal = Principal(row.name, "key", frozenset(row.scopes), row.prefix)
        return await self._revalidate(_Known(principal, prefix, 0.0, 0.0))

    async def _revalidate(self, known: _Known) -> _Known:
        """Still there and not revoked? Also note the key's use, at most once a minute."""
        now = time.monotonic()
        async with self.db.session() as session:
            found = (
                await session.execute(
                    select(ApiKey.id, ApiKey.revoked_at).where(ApiKey.prefix == known.prefix)
                )
            ).one_or_none()
            if found is None or found.revoked_at is not None:
                raise AuthError("invalid or revoked API key")
            if now - known.used_written >= self.used_every_s:
                await session.execute(
                    update(ApiKey)
                    .where(ApiKey.id == found.id)
                    .values(last_used_at=datetime.now(UTC))
                )
                known.used_written = now
        known.checked_until = time.monotonic() + self.cache_s
        return known


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a background check's failure as seen: the next request meets it as AuthError."""
    if not task.cancelled():
        task.exception()


# -- users and sessions -----------------------------------------------------------------------


async def create_user(db: Database, username: str, password: str, role: str, actor: str) -> User:
    """Add a dashboard user; passwords shorter than 8 characters are refused."""
    username = check_new_user(username, role)
    check_password(password)
    async with unit_of_work(db) as uow:
        taken = await uow.session.scalar(select(User.id).where(User.username == username))
        if taken is not None:
            raise ConfigError(f"user {username!r} exists: pick another name")
        user = User(username=username, password_hash=hash_secret(password), role=role)
        uow.session.add(user)
        await uow.session.flush()
        await uow.audit.record(actor, "user.create", username, {"role": role})
        return user


def check_new_user(username: str, role: str) -> str:
    """The username, stripped, once it and the role are valid (before asking a password)."""
    username = username.strip()
    if not username or len(username) > 64:
        raise ConfigError("a username has 1 to 64 characters")
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    return username


def check_password(password: str) -> None:
    """Refuse a password shorter than 8 characters."""
    if len(password) < 8:
        raise ConfigError("a password needs at least 8 characters")


async def user_exists(db: Database, username: str) -> bool:
    async with db.session() as session:
        found = await session.scalar(select(User.id).where(User.username == username.strip()))
        return found is not None


async def set_password(db: Database, username: str, password: str, actor: str) -> None:
    """Give a user a new password (8 characters at least); their sessions end."""
    check_password(password)
    async with unit_of_work(db) as uow:
        user = await uow.session.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFoundError(f"no user {username!r} (see `ffe users list`)")
        user.password_hash = hash_secret(password)
        await uow.audit.record(actor, "user.password", username, None)


async def count_users(db: Database) -> int:
    """How many dashboard users exist."""
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(User)) or 0)


async def list_users(db: Database) -> list[User]:
    """Every dashboard user, oldest first."""
    async with db.session() as session:
        return list((await session.scalars(select(User).order_by(User.id))).all())


async def check_login(
    db: Database, username: str, password: str, hashing: Executor | None = None
) -> Principal:
    """The user, if the password is right and the account enabled; else ``AuthError``.
    The hash is checked on ``hashing`` (the loop's default executor when None)."""
    async with db.session() as session:
        user = await session.scalar(select(User).where(User.username == username))
    stored = user.password_hash if user is not None else _DUMMY_HASH
    good = await check_hash(hashing, stored, password)
    if user is None or not good or user.disabled:
        raise AuthError("wrong username or password")
    return Principal(user.username, "user", ROLE_SCOPES[user.role])
