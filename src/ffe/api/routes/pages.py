"""Dashboard pages and their static assets.

Each page is an HTML shell for a logged-in user; its script reads the JSON API under
``/api/v1`` with the session cookie the login sets. A stranger is sent to ``/login``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from ffe.api.auth import Principal
from ffe.api.deps import PageUser
from ffe.web.render import render

router = APIRouter(include_in_schema=False)

_FOREVER = "public, max-age=31536000, immutable"
_DEFAULT_PAGE = "/overview"


def _csp(request: Request) -> str:
    # Same origin only: the dashboard must work offline, and a script injected into a
    # rationale or a symbol name could not call home.
    host = request.url.netloc
    return (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        f"img-src 'self' data:; connect-src 'self' ws://{host} wss://{host}; "
        "frame-ancestors 'self'; base-uri 'self'; form-action 'self'"
    )


def _html(request: Request, template: str, **context: object) -> HTMLResponse:
    headers = {"Cache-Control": "no-store", "Content-Security-Policy": _csp(request)}
    return HTMLResponse(render(template, **context), headers=headers)


def _page(request: Request, user: Principal, page: str, **context: object) -> HTMLResponse:
    return _html(request, f"{page}.html", user=user, page=page, **context)


def safe_next(target: str | None) -> str:
    """A local path to go to after login; anything else (another host) goes to the default."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return _DEFAULT_PAGE
    # Browsers drop tabs and newlines from URLs and read a backslash as a slash, so
    # "/\t/evil.example" would leave the site: no control characters, no backslashes.
    if "\\" in target or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return _DEFAULT_PAGE
    return target


@router.get("/login")
async def login(
    request: Request, next_path: Annotated[str | None, Query(alias="next")] = None
) -> HTMLResponse:
    return _html(request, "login.html", page="login", next_path=safe_next(next_path))


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse(_DEFAULT_PAGE, status_code=303)


@router.get("/overview")
async def overview(request: Request, user: PageUser) -> HTMLResponse:
    return _page(request, user, "overview")


@router.get("/agent")
async def agent(request: Request, user: PageUser) -> HTMLResponse:
    return _page(request, user, "agent")


@router.get("/decisions")
async def decisions(request: Request, user: PageUser) -> HTMLResponse:
    return _page(request, user, "decisions")


@router.get("/backtests")
async def backtests(request: Request, user: PageUser) -> HTMLResponse:
    return _page(request, user, "backtests")


@router.get("/backtests/{job_id}")
async def backtest_job(request: Request, user: PageUser, job_id: str) -> HTMLResponse:
    return _page(request, user, "backtest_job", job_id=job_id)


@router.get("/optimization")
async def optimization(request: Request, user: PageUser) -> HTMLResponse:
    return _page(request, user, "optimization")


@router.get("/analysis")
async def analysis(request: Request, user: PageUser) -> HTMLResponse:
    return _page(request, user, "analysis")


@router.get("/health")
async def health(request: Request, user: PageUser) -> HTMLResponse:
    return _page(request, user, "health")


class _DashboardStatic(StaticFiles):
    """Static files; versioned URLs (``?v=``) and vendored libraries are cached for good,
    everything else is revalidated (ETag) on each use."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        versioned = b"v=" in scope.get("query_string", b"")
        if versioned or Path(path).parts[:1] == ("vendor",):
            response.headers["Cache-Control"] = _FOREVER
        else:
            response.headers["Cache-Control"] = "no-cache"
        return response


def mount_static(app: FastAPI) -> None:
    """Serve the dashboard's CSS, scripts and vendored chart library at ``/static``."""
    app.mount("/static", _DashboardStatic(packages=[("ffe.web", "static")]), name="static")
