"""Logging in to the dashboard, out again, and who am I."""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status

from ffe.api.auth import KEY_PREFIX, AuthError, check_login
from ffe.api.deps import SESSION_COOKIE, Reader, ServicesDep
from ffe.api.schemas import Login
from ffe.api.services import Services
from ffe.api.throttle import counted_as

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


@router.post("/login")
async def login(body: Login, request: Request, response: Response, services: ServicesDep) -> Any:
    """Check a username and password; answer a session token and set it as a cookie."""
    address = services.proxies.client(request.scope)
    limit = services.options.login_rate_limit
    await services.check_rate(request, f"login:{counted_as(address)}", limit)
    # Wrong passwords slow down the address that sends them, for that user only: the user
    # is never locked, so the right password from elsewhere still logs in.
    await _wait_for_backoff(services, address, body.username)
    try:
        principal = await check_login(services.db, body.username, body.password, services.hashing)
    except AuthError as exc:
        await services.backoff.failed(address, body.username)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc)) from None
    await services.backoff.succeeded(address, body.username)
    token, expires = await services.sessions.issue(principal)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=services.options.session_ttl_s,
        httponly=True,
        samesite="strict",
        secure=services.options.production,
        path="/",
    )
    return {"token": token, "expires_at": expires.isoformat(), "user": principal.as_dict()}


async def _wait_for_backoff(services: Services, address: str, username: str) -> None:
    wait_s = await services.backoff.claim(address, username)
    if wait_s > 0:
        retry = max(1, math.ceil(wait_s))
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many login attempts for {username!r} from {address} (wrong passwords, "
            f"or several at once): retry in {retry}s",
            headers={"Retry-After": str(retry)},
        )


@router.post("/logout")
async def logout(request: Request, response: Response, who: Reader, services: ServicesDep) -> Any:
    """End the sessions the request carries (bearer token and cookie) in every worker, and
    forget the cookie."""
    for token in _session_tokens(request):
        await services.sessions.revoke(token)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return {"logged_out": who.name}


def _session_tokens(request: Request) -> set[str]:
    """The session tokens sent: a bearer that is no API key, and the cookie (both end, as a
    cookie left valid after logout would keep working wherever it was copied)."""
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    tokens = {request.cookies.get(SESSION_COOKIE, "")}
    if scheme.lower() == "bearer" and not credential.strip().startswith(KEY_PREFIX):
        tokens.add(credential.strip())
    return tokens - {""}


@router.get("/me")
async def me(who: Reader) -> Any:
    """Who the caller is and what it may do."""
    return who.as_dict()
