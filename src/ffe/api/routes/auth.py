"""Logging in to the dashboard, out again, and who am I."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status

from ffe.api.auth import KEY_PREFIX, AuthError, check_login
from ffe.api.deps import SESSION_COOKIE, Reader, ServicesDep
from ffe.api.schemas import Login

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


@router.post("/login")
async def login(body: Login, request: Request, response: Response, services: ServicesDep) -> Any:
    """Check a username and password; answer a session token and set it as a cookie."""
    address = request.client.host if request.client else "unknown"
    limit = services.settings.api.login_rate_limit
    await services.check_rate(request, f"login:{address}", limit)
    # Per name too: behind a load balancer every caller may share one address.
    await services.check_rate(request, f"login-user:{body.username.lower()}", limit)
    try:
        principal = await check_login(services.db, body.username, body.password)
    except AuthError as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc)) from None
    token, expires = await services.sessions.issue(principal)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=services.settings.api.session_ttl_s,
        httponly=True,
        samesite="strict",
        secure=services.settings.api.environment == "production",
        path="/",
    )
    return {"token": token, "expires_at": expires.isoformat(), "user": principal.as_dict()}


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
