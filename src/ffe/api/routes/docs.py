"""The OpenAPI spec and its interactive docs, behind the same auth as the API."""

from __future__ import annotations

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
    # Served from the package, not a CDN: the docs work offline and leak nothing.
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="ffe API",
        swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
        swagger_favicon_url="/static/img/favicon.svg",
    )
