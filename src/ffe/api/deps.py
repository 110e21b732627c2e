"""Dependencies the routes declare, so a signature reads as documentation:

    async def approve(id: int, services: ServicesDep, who: Trader) -> ...

``Reader``, ``Trader`` and ``Admin`` authenticate the caller (API key, bearer session token
or the dashboard's session cookie), check its scope and count it against its rate limit.
``PageUser`` does the same for dashboard pages, sending a stranger to the login page.
Each of these checks is marked with its scope (``checks_scope``), which is how the OpenAPI
spec knows what every operation needs (``required_scope``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request, WebSocket, status

from ffe.api.auth import (
    KEY_PREFIX,
    SCOPES,
    AuthError,
    HashGate,
    NoCredentialsError,
    Principal,
)
from ffe.api.services import Services
from ffe.api.throttle import ThrottledError

SESSION_COOKIE = "ffe_session"
CSRF_HEADER = "x-requested-with"
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SCOPE_MARK = "ffe_required_scope"
_F = TypeVar("_F", bound=Callable[..., Any])


async def get_services(request: Request) -> Services:
    """The facade the app opened at start-up."""
    # async: a plain def would be sent to the thread pool on every request
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


class LoginRequiredError(Exception):
    """A dashboard page was asked for without a valid session: redirect to the login page."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"}
    )


def refusal(exc: AuthError) -> HTTPException:
    """The answer to a caller who could not be identified: 401, or 429 once its address has
    failed too often."""
    if isinstance(exc, ThrottledError):
        return HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            str(exc),
            headers={"Retry-After": str(exc.retry_after_s)},
        )
    return _unauthorized(str(exc))


async def identify(
    services: Services,
    headers: Mapping[str, str],
    cookies: Mapping[str, str],
    method: str,
    address: str,
) -> Principal:
    """Who sent a request with these headers and cookies from ``address``; ``AuthError``
    when nobody valid (``ThrottledError`` once the address has failed too often)."""
    throttle = services.throttle
    try:
        return await _credential(services, headers, cookies, method, throttle.gate(address))
    except AuthError as exc:
        raise await throttle.refused(address, exc) from None


async def _credential(
    services: Services,
    headers: Mapping[str, str],
    cookies: Mapping[str, str],
    method: str,
    gate: HashGate,
) -> Principal:
    """The caller by the first credential the request presents (Authorization, X-API-Key,
    the session cookie). Every credential presented must hold: one that does not is refused
    even when another would pass, so a mix-up is answered, never guessed past."""
    presented = _presented(headers, cookies)
    if not presented:
        raise NoCredentialsError(
            "authentication required: send Authorization: Bearer <API key or session token>, "
            "or X-API-Key, or log in to the dashboard"
        )
    if presented[0][0] == "cookie" and method in _UNSAFE and not headers.get(CSRF_HEADER):
        raise NoCredentialsError(f"cookie sessions must send the {CSRF_HEADER} header on {method}")
    principals = [await _check(services, kind, value, gate) for kind, value in presented]
    return principals[0]


def _presented(headers: Mapping[str, str], cookies: Mapping[str, str]) -> list[tuple[str, str]]:
    """Each credential the request carries, as (kind, value), the one that decides first."""
    presented: list[tuple[str, str]] = []
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise AuthError("the Authorization header must be 'Bearer <API key or session token>'")
        credential = credential.strip()
        presented.append(("key" if credential.startswith(KEY_PREFIX) else "token", credential))
    api_key = headers.get("x-api-key")
    if api_key is not None:
        presented.append(("key", api_key.strip()))
    session = cookies.get(SESSION_COOKIE)
    if session is not None:
        presented.append(("cookie", session))
    return presented


async def _check(services: Services, kind: str, value: str, gate: HashGate) -> Principal:
    if kind == "key":
        return await services.keys.verify(value, gate)
    return await services.sessions.check(value)


async def authenticate(request: Request, scope: str) -> Principal:
    """The caller, checked for ``scope`` and counted against its rate limit."""
    services: Services = request.app.state.services
    # A request with a body was identified before its body was read (bodies.BodyGuard).
    principal: Principal | None = getattr(request.state, "identified", None)
    if principal is None:
        address = services.proxies.client(request.scope)
        try:
            principal = await identify(
                services, request.headers, request.cookies, request.method, address
            )
        except AuthError as exc:
            raise refusal(exc) from None
    request.state.principal = principal
    await services.check_rate(request, principal.limit_key)
    if not principal.allows(scope):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"this needs the {scope!r} scope; {principal.actor} has "
            f"{', '.join(sorted(principal.scopes)) or 'none'}",
        )
    return principal


def checks_scope(scope: str) -> Callable[[_F], _F]:
    """Mark a function (a dependency, or a route that calls ``authenticate`` itself) as
    checking ``scope``. Only the OpenAPI spec reads the mark, once: nothing per request."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}: use one of {', '.join(SCOPES)}")

    def mark(func: _F) -> _F:
        setattr(func, _SCOPE_MARK, scope)
        return func

    return mark


def required_scope(func: object) -> str | None:
    """The scope ``func`` was marked as checking, or None."""
    scope = getattr(func, _SCOPE_MARK, None)
    return scope if isinstance(scope, str) else None


def _scoped(scope: str) -> object:
    # One flat dependency per route: every nested one costs FastAPI a resolution per request.
    @checks_scope(scope)
    async def check(request: Request) -> Principal:
        return await authenticate(request, scope)

    return check


Reader = Annotated[Principal, Depends(_scoped("read"))]
Trader = Annotated[Principal, Depends(_scoped("trade"))]
Admin = Annotated[Principal, Depends(_scoped("admin"))]


async def _page_user(request: Request, services: ServicesDep) -> Principal:
    session = request.cookies.get(SESSION_COOKIE)
    if not session:
        raise LoginRequiredError(request.url.path)
    try:
        principal = await services.sessions.check(session)
    except AuthError:
        raise LoginRequiredError(request.url.path) from None
    request.state.principal = principal
    return principal


PageUser = Annotated[Principal, Depends(_page_user)]


async def websocket_principal(websocket: WebSocket, services: Services) -> Principal | None:
    """The caller of a WebSocket (cookie, bearer header or ``?token=``), or None."""
    cookies = dict(websocket.cookies)
    token = websocket.query_params.get("token")
    headers = dict(websocket.headers)
    if token and "authorization" not in headers:
        headers["authorization"] = f"Bearer {token}"
    address = services.proxies.client(websocket.scope)
    try:
        return await identify(services, headers, cookies, "GET", address)
    except AuthError:
        return None
