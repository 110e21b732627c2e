"""The OpenAPI spec and its interactive docs, behind the same auth as the API."""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from ffe.api.deps import Reader

router = APIRouter(include_in_schema=False)


@router.get("/openapi.json")
async def openapi(request: Request, who: Reader) -> Any:
    """The OpenAPI spec of the API."""
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def docs(who: Reader) -> HTMLResponse:
    """Interactive API docs (Swagger UI, served from the package)."""
    page = _swagger_page()
    headers = {"Content-Security-Policy": _docs_csp(page), "Cache-Control": "no-store"}
    return HTMLResponse(page, headers=headers)


@functools.cache
def _swagger_page() -> str:
    # Served from the package, not a CDN: the docs work offline and leak nothing.
    page = get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="ffe API",
        swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url="/static/img/favicon.svg",
    )
    return bytes(page.body).decode()


def _docs_csp(page: str) -> str:
    """What the Swagger UI page loads, and nothing else: its bundle and styles from
    /static, its one inline script (by hash), the spec and "Try it out" calls to this
    origin, data: images from its stylesheet, and inline styles its widgets set."""
    inline = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(page)
    )
    return (
        f"default-src 'none'; script-src 'self'{inline}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'none'"
    )


_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
