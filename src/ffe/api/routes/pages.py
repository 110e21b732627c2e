"""Dashboard pages and their static assets.

Each page is an HTML shell for a logged-in user; its script reads the JSON API under
``/api/v1`` with the session cookie the login sets. A stranger is sent to ``/login``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.convertors import Convertor, register_url_convertor
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from ffe.api.auth import Principal
from ffe.api.deps import PageUser
from ffe.web.render import render

router = APIRouter(include_in_schema=False)

_FOREVER = "public, max-age=31536000, immutable"
_DEFAULT_PAGE = "/overview"
# The pages that are a template and nothing else, each at ``/<name>``.
PAGES = frozenset(
    {"overview", "agent", "decisions", "backtests", "optimization", "analysis", "health"}
)


class _PageName(Convertor[str]):
    """One of ``PAGES`` as a path segment.

    The route matches only these names, so any other path answers as an unknown path always
    has (404 before any login check, not a 405 or a redirect to log in), and the route never
    takes a path meant for ``/metrics``, ``/docs`` or the ``/static`` mount.
    """

    regex = "|".join(sorted(PAGES))

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("dashboard_page", _PageName())


def _csp(request: Request) -> str:
    # Same origin only: the dashboard must work offline, and a script injected into a
    # rationale or a symbol name could not call home.
    host = request.url.netloc
    return (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        f"img-src 'self' data:; connect-src 'self' ws://{host} wss://{host}; "
        "frame-ancestors 'self'; base-uri 'self'; form-action 'self'; object-src 'none'"
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


@router.get("/{page:dashboard_page}")
async def dashboard_page(request: Request, user: PageUser, page: str) -> HTMLResponse:
    return _page(request, user, page)


@router.get("/backtests/{job_id}")
async def backtest_job(request: Request, user: PageUser, job_id: str) -> HTMLResponse:
    return _page(request, user, "backtest_job", job_id=job_id)


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
