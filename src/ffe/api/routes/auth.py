"""Logging in to the dashboard, out again, and who am I."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status

from ffe.api.auth import AuthError, check_login
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
async def logout(response: Response, who: Reader) -> Any:
    """Forget the session cookie."""
    response.delete_cookie(SESSION_COOKIE, path="/")
    return {"logged_out": who.name}


@router.get("/me")
async def me(who: Reader) -> Any:
    """Who the caller is and what it may do."""
    return who.as_dict()
