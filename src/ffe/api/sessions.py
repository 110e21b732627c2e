"""Dashboard sessions: HS256 JWTs (PyJWT) that last only as long as their user does (a
changed password, a disabled or deleted account ends them) and that a logout revokes in
every worker, through the shared cache (``ffe.kv``, Redis when configured).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from sqlalchemy import select

from ffe.api.auth import ROLE_SCOPES, SCOPES, AuthError, Principal, SessionError
from ffe.kv import Cache
from ffe.store.database import Database
from ffe.store.models import User

_REVOKED = "session-revoked:"  # + a token id: a logged-out session, in the shared cache
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SessionClaims:
    """What a session token with a good signature, not yet expired, says."""

    principal: Principal
    version: str  # the password version it was issued for
    token_id: str  # its ``jti``: what a logout revokes
    expires: datetime


@dataclass(frozen=True, slots=True)
class SessionTokens:
    """Signs and checks dashboard sessions (HS256 JWTs, each with a random ``jti``)."""

    secret: str
    ttl_s: int

    def issue(self, principal: Principal, version: str = "") -> tuple[str, datetime]:
        """A signed session for ``principal``; ``version`` ties it to the user's password."""
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=self.ttl_s)
        claims = {
            "sub": principal.name,
            "scopes": sorted(principal.scopes),
            "pv": version,
            "iat": now,
            "exp": expires,
            "jti": secrets.token_hex(16),
        }
        return jwt.encode(claims, self.secret, algorithm="HS256"), expires

    def read(self, token: str) -> SessionClaims:
        """The claims of a token whose signature holds and which has not expired."""
        try:
            claims = jwt.decode(
                token, self.secret, algorithms=["HS256"], options={"require": ["exp", "sub"]}
            )
        except jwt.ExpiredSignatureError:
            raise SessionError("session expired: log in again") from None
        except jwt.PyJWTError:
            raise SessionError("invalid session token: log in again") from None
        scopes = frozenset(str(s) for s in claims.get("scopes", ()) if s in SCOPES)
        # A signed token without a jti can still be revoked: by a digest of the token.
        token_id = str(claims.get("jti") or hashlib.sha256(token.encode()).hexdigest()[:32])
        return SessionClaims(
            Principal(str(claims["sub"]), "user", scopes),
            str(claims.get("pv", "")),
            token_id,
            datetime.fromtimestamp(int(claims["exp"]), UTC),
        )

    def check(self, token: str) -> Principal:
        """The user a token was issued to, if its signature holds and it has not expired."""
        return self.read(token).principal


def password_version(password_hash: str) -> str:
    """A short fingerprint of a password hash: sessions carry it, so a new password ends them."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


@dataclass(slots=True)
class _UserState:
    role: str
    disabled: bool
    version: str
    checked_until: float


class SessionChecker:
    """Dashboard sessions that last only as long as their user does: a changed password, a
    disabled or deleted account ends them, and the role is read again (a demotion takes
    effect), within ``cache_s`` seconds in every process.

    A logout revokes its token until the token expires: at once in this process, and in
    the others through ``revocations`` (the shared cache, Redis when configured), at once
    for a token they have not checked in the last ``cache_s`` seconds and within
    ``cache_s`` for one they have. While Redis is unreachable a logout holds in its own
    process only, and the other processes do not learn of it later.
    """

    def __init__(
        self,
        db: Database,
        tokens: SessionTokens,
        revocations: Cache,
        cache_s: float = 30.0,
        *,
        shared: bool = False,
    ) -> None:
        self.db, self.tokens, self.revocations, self.cache_s = db, tokens, revocations, cache_s
        self.shared = shared  # revocations reach the other workers (Redis)
        self._users: dict[str, _UserState] = {}
        self._revoked: dict[str, float] = {}  # token id -> its expiry (epoch seconds)
        self._live: dict[str, float] = {}  # token id -> monotonic: not revoked until then

    async def issue(self, principal: Principal) -> tuple[str, datetime]:
        """A session token for a user who just logged in, and when it expires."""
        state = await self._user(principal.name, fresh=True)
        return self.tokens.issue(principal, "" if state is None else state.version)

    async def check(self, token: str) -> Principal:
        """The user of a session that is still valid; ``SessionError`` otherwise."""
        claims = self.tokens.read(token)  # signature and expiry first
        if await self._is_revoked(claims):
            raise SessionError("this session was logged out: log in again")
        state = await self._user(claims.principal.name)
        if state is None or state.disabled or state.version != claims.version:
            raise SessionError("this session has ended (password changed or user disabled): log in")
        return Principal(claims.principal.name, "user", ROLE_SCOPES[state.role])

    async def revoke(self, token: str) -> bool:
        """End a session for every process until it expires; False when ``token`` is no
        valid session (nothing to end)."""
        try:
            claims = self.tokens.read(token)
        except AuthError:
            return False
        self._remember_revoked(claims)
        key = _REVOKED + claims.token_id
        # Past the token's own expiry by a minute, for workers whose clocks run behind.
        ttl_s = (claims.expires - datetime.now(UTC)).total_seconds() + 60.0
        await self.revocations.set(key, b"1", ttl_s)
        if not self.shared:
            where, level = "in this process (no Redis: other workers are not told)", logging.INFO
        elif await self.revocations.get(key) is None:
            where, level = "in this process only: Redis is down", logging.WARNING
        else:
            where, level = "in every worker", logging.INFO
        log.log(
            level, "session %s of %s logged out %s", claims.token_id, claims.principal.name, where
        )
        return True

    def forget(self) -> None:
        """Drop what is remembered, so the next use asks the database and the shared cache
        (revocations made or seen here are kept)."""
        self._users.clear()
        self._live.clear()

    async def _is_revoked(self, claims: SessionClaims) -> bool:
        token_id = claims.token_id
        if token_id in self._revoked:
            return True
        if self._live.get(token_id, 0.0) > time.monotonic():
            return False
        if await self.revocations.get(_REVOKED + token_id) is not None:
            self._remember_revoked(claims)  # and so it holds here through a Redis outage
            return True
        if len(self._live) > 10_000:
            self._live.clear()
        self._live[token_id] = time.monotonic() + self.cache_s
        return False

    def _remember_revoked(self, claims: SessionClaims) -> None:
        self._live.pop(claims.token_id, None)
        if len(self._revoked) > 1_000:  # only expired ones may go: they are refused anyway
            now = time.time()
            self._revoked = {k: exp for k, exp in self._revoked.items() if exp > now}
        self._revoked[claims.token_id] = claims.expires.timestamp()

    async def _user(self, name: str, *, fresh: bool = False) -> _UserState | None:
        known = self._users.get(name)
        if known is not None and not fresh and known.checked_until > time.monotonic():
            return known
        async with self.db.session() as session:
            user = await session.scalar(select(User).where(User.username == name))
        if user is None:
            self._users.pop(name, None)
            return None
        state = _UserState(
            user.role,
            user.disabled,
            password_version(user.password_hash),
            time.monotonic() + self.cache_s,
        )
        if len(self._users) > 10_000:
            self._users.clear()
        self._users[name] = state
        return state
