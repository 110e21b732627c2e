"""The app factory: ``create_app(components)`` wires routes, auth, limits, metrics, logs and
the dashboard from what the composition root hands out (``bootstrap.components(settings)``);
nothing connects until the app starts (its lifespan opens ``Services``)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ffe import __version__
from ffe.api.auth import SCOPES
from ffe.api.deps import SESSION_COOKIE, LoginRequiredError, required_scope
from ffe.api.routes.common import refusal
from ffe.api.services import Services
from ffe.domain.errors import (
    ConfigError,
    ConflictError,
    DataError,
    FfeError,
    NotFoundError,
    StoreError,
    StrategyError,
)
from ffe.obs import tracing
from ffe.obs.logs import new_request_id, request_id
from ffe.service import heap
from ffe.service.agents import AgentLaunch

if TYPE_CHECKING:
    from ffe.bootstrap import ApiOptions, Components

log = logging.getLogger(__name__)


def create_app(
    components: Components,
    services: Services | None = None,
    *,
    agent: AgentLaunch | None = None,
    worker_kind: str = "api",
) -> FastAPI:
    """The API and dashboard. With ``services`` given (tests), the app uses them as they are
    and does not close them; otherwise it opens its own at startup. ``agent``: start this
    paper agent in the process once the app is up (``ffe run``). ``worker_kind`` names the
    job worker the process runs, when it runs one (``jobs.in_api``), in the registry: api, or
    run for ``ffe run``."""

    app = FastAPI(
        title="Finance Feedback Engine",
        version=__version__,
        description="Decisions, risk, paper and live trading, backtests and forecasts.",
        lifespan=_lifespan(components, services, agent, worker_kind),
        # ffe counts and traces requests itself (RequestContext, api.otel_endpoint); FastAPI's
        # own telemetry would do it twice, and asks for OpenTelemetry providers per request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    _routes(app)
    _errors(app)
    app.openapi = _openapi_with_our_errors(app)  # type: ignore[method-assign]
    options = components.api
    if options.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(options.cors_origins),
            allow_credentials=True,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Requested-With"],
        )
    _edge(app, options)
    app.add_middleware(RequestContext)
    return app


def _edge(app: FastAPI, options: ApiOptions) -> None:
    """Bodies only from identified callers and only up to a size; security headers."""
    from ffe.api.bodies import BodyGuard
    from ffe.api.clients import TrustedProxies
    from ffe.api.headers import SecurityHeaders

    app.add_middleware(BodyGuard, max_bytes=options.max_body_bytes)
    app.add_middleware(SecurityHeaders, proxies=TrustedProxies(options.trusted_proxies))


def _lifespan(
    components: Components, services: Services | None, agent: AgentLaunch | None, worker_kind: str
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """What the app does at start-up and shutdown: open (and close) its services, warm and
    freeze the heap, start the paper agent."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services is not None:
            app.state.services = services
            yield
            return
        from ffe.obs.tracing import configure_tracing, shutdown_tracing

        traced = configure_tracing(components.api.otel_endpoint, "ffe-api")
        # The libraries the routes load on first use, imported before anything that runs on
        # threads starts (the analysis imports them too: heap.py), then everything made at
        # start-up frozen: full collections stay short instead of pausing requests.
        await asyncio.to_thread(heap.preload)
        opened = await Services.open(components, worker_kind=worker_kind)
        app.state.services = opened
        heap.settle()
        if agent is not None:
            try:
                await opened.supervisor.start(agent)
            except FfeError as exc:  # the API stays up and the dashboard says why
                opened.supervisor.error = str(exc)
                log.error("the paper agent did not start: %s", exc)
        try:
            yield
        finally:
            await opened.close()
            if traced:
                shutdown_tracing()

    return lifespan


def _routes(app: FastAPI) -> None:
    from ffe.api.routes import (
        admin,
        auth,
        docs,
        health,
        jobs,
        pages,
        runs,
        stream,
        trading,
        tune,
    )

    # Routes are matched in this order: the ones polled most (portfolio, status) first. They
    # go into the app's own table, not included router by router: FastAPI matches an included
    # router by walking its routes once to choose it and again to dispatch, which cost a
    # request on a later router up to a fifth of its time (each module's router already
    # carries its prefix and tags, and none declares dependencies of its own).
    for module in (trading, health, auth, jobs, tune, runs, admin, stream, docs, pages):
        app.router.routes.extend(module.router.routes)
    pages.mount_static(app)


def _errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        sent = request.headers.get("content-type", "")
        has_body = bool(sent) or request.headers.get("content-length", "0") not in ("", "0")
        if has_body and not _is_json(sent) and _body_refused(exc):  # a body, not said as JSON
            said = f"not {sent!r}" if sent else "it had no Content-Type"
            detail = f"send the body as JSON with Content-Type: application/json ({said})"
            return JSONResponse({"detail": detail}, 415)
        problems = [_problem(e) for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(problems), "errors": _plain(exc)}, 422)

    @app.exception_handler(FfeError)
    async def refused(request: Request, exc: FfeError) -> JSONResponse:
        code = _status_of(exc, request.method)
        body: dict[str, Any] = {"detail": str(exc)}
        if code == 503:  # the journal's address and error are for the log, not the caller
            log.error("journal unavailable on %s %s: %s", request.method, request.url.path, exc)
            rid = request_id.get()
            body["detail"] = f"the journal is unavailable: retry later (request id {rid})"
        if code == 422:  # the same shape as a schema refusal, as the spec declares for 422
            body["errors"] = [{"loc": ["body"], "msg": str(exc), "type": type(exc).__name__}]
        return JSONResponse(body, code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        cause = exc.__cause__
        if exc.status_code == 400 and isinstance(cause, UnicodeDecodeError):
            # FastAPI says only "There was an error parsing the body"
            detail = f"the body is not UTF-8 text (byte {cause.start}): send JSON encoded as UTF-8"
            return JSONResponse({"detail": detail}, 400)
        if exc.status_code == 405:
            # Starlette names only the methods of the first route on the path
            allowed = ", ".join(_methods_at(app, request.url.path))
            exc = StarletteHTTPException(405, exc.detail, headers={"Allow": allowed})
        return await http_exception_handler(request, exc)

    @app.exception_handler(LoginRequiredError)
    async def login(request: Request, exc: LoginRequiredError) -> RedirectResponse:
        from urllib.parse import quote

        return RedirectResponse(f"/login?next={quote(exc.next_path)}", status_code=303)


def _methods_at(app: FastAPI, path: str) -> list[str]:
    """Every method some route of ``app`` answers at ``path``."""
    methods = {
        method
        for route in app.routes
        if isinstance(route, APIRoute) and route.path_regex.match(path)
        for method in route.methods or ()
    }
    return sorted(methods)


def _status_of(exc: FfeError, method: str) -> int:
    """The HTTP status of an error the engine raised on purpose, by its type: what the caller
    must do (never by its message)."""
    if isinstance(exc, NotFoundError):
        return 404  # check the name against the list the message points to
    if isinstance(exc, ConflictError):
        return 409  # the state forbids it now: wait, or change the state first
    if isinstance(exc, StoreError):
        return 503  # the journal is down: retry later
    if isinstance(exc, DataError):
        return 404 if method == "GET" else 422  # a missing resource, or a request naming one
    # ForecastError by name: importing ffe.forecast would load scipy into every API process.
    if isinstance(exc, ConfigError | StrategyError) or type(exc).__name__ == "ForecastError":
        return 422  # the request names something that does not exist or cannot work
    return 400


def _openapi_with_our_errors(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The spec, with 422 answers described as this app sends them (``detail`` as one
    readable sentence and ``errors`` as the list of problems), and with how callers
    authenticate and the scope each operation needs. Built once, on first request."""
    original = app.openapi

    def spec() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        found = original()
        schemas = found.get("components", {}).get("schemas", {})
        if "HTTPValidationError" in schemas:
            schemas["HTTPValidationError"] = {
                "title": "HTTPValidationError",
                "type": "object",
                "required": ["detail", "errors"],
                "properties": {
                    "detail": {"type": "string", "title": "Detail"},
                    "errors": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/ValidationError"},
                    },
                },
            }
        _document_security(app, found)
        _document_refusals(found)
        app.openapi_schema = found
        return found

    return spec


# How deps.identify knows a caller, as the spec's security schemes (any one of them will do).
SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (ffe_...) or a session token from POST /api/v1/auth/login.",
    },
    "apiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key (ffe_...).",
    },
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": SESSION_COOKIE,
        "description": "The dashboard's session, set by POST /api/v1/auth/login; "
        "POST and DELETE must also send the X-Requested-With header.",
    },
}
_REFUSAL = {
    "title": "Refusal",
    "type": "object",
    "required": ["detail"],
    "properties": {"detail": {"type": "string", "title": "Detail"}},
}


def _document_security(app: FastAPI, spec: dict[str, Any]) -> None:
    """Declare the security schemes, and on each operation whose route checks a scope (the
    marks of ``deps.checks_scope``) the requirement and that scope; public ones stay bare."""
    components = spec.setdefault("components", {})
    components["securitySchemes"] = SECURITY_SCHEMES
    components.setdefault("schemas", {})["Refusal"] = _REFUSAL
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        scope = _scope_of(route)
        if scope is None:
            continue
        operations = spec.get("paths", {}).get(route.path_format, {})
        for method in route.methods or ():
            if method.lower() in operations:
                _secure(operations[method.lower()], scope)


def _scope_of(route: APIRoute) -> str | None:
    """The highest scope the route's dependencies (or the route itself) check, or None."""
    calls: list[object] = [route.endpoint]
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        calls += [d.call for d in dependant.dependencies]
        pending += dependant.dependencies
    scopes = {scope for scope in map(required_scope, calls) if scope}
    return max(scopes, key=SCOPES.index, default=None)


def _secure(operation: dict[str, Any], scope: str) -> None:
    wider = SCOPES[SCOPES.index(scope) + 1 :]
    also = f", or one that includes it ({', '.join(wider)})" if wider else ""
    said = f"Needs the `{scope}` scope{also}: send an API key or a session (see security)."
    operation["description"] = f"{operation.get('description', '')}\n\n{said}".lstrip()
    operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
    operation["x-required-scope"] = scope
    refusal = {"application/json": {"schema": {"$ref": "#/components/schemas/Refusal"}}}
    responses = operation.setdefault("responses", {})
    responses.setdefault("401", {"description": "No valid credentials", "content": refusal})
    responses.setdefault("403", {"description": "Not the scope this needs", "content": refusal})


# Answers any operation of a kind may give, whatever its route does: the ones a route gives
# for reasons of its own (409, a 404 found by a query) are declared on the route.
_NAMED = refusal("Nothing has this id or name")
_RATE_LIMITED = refusal("Too many requests (or failed credentials) from this caller: wait")
_TOO_LARGE = refusal("The body is over api.max_body_bytes")
_NOT_JSON = refusal("The body is not JSON (send Content-Type: application/json)")
_NOT_UTF8 = refusal("The body is not UTF-8 text")


def _document_refusals(spec: dict[str, Any]) -> None:
    """404 on operations that name something in their path, 429 on those that check a
    caller (rate limit, failed credentials) and on login (backoff), 400, 413 and 415 on
    those that take a body, and 503 on readiness."""
    for path, operations in spec.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "{" in path:
                responses.setdefault("404", _NAMED)
            if operation.get("security") or path == "/api/v1/auth/login":
                responses.setdefault("429", _RATE_LIMITED)
            if "requestBody" in operation:
                responses.setdefault("400", _NOT_UTF8)
                responses.setdefault("413", _TOO_LARGE)
                responses.setdefault("415", _NOT_JSON)
    login = spec.get("paths", {}).get("/api/v1/auth/login", {}).get("post")
    if login is not None:
        login["responses"].setdefault("401", refusal("Wrong user name or password"))
    ready = spec.get("paths", {}).get("/health/ready", {}).get("get")
    if ready is not None:
        ready["responses"].setdefault("503", {"description": "A check failed: see its answer"})


def _body_refused(exc: RequestValidationError) -> bool:
    """Whether the body as a whole was refused (not one of its fields)."""
    return any(tuple(e.get("loc", ())) == ("body",) for e in exc.errors())


def _is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _problem(error: Any) -> str:
    """One validation problem as a sentence that names the field."""
    if error.get("type") == "json_invalid":
        where = error["loc"][-1] if len(error["loc"]) > 1 else "?"
        reason = (error.get("ctx") or {}).get("error", error["msg"])
        return f"the body is not valid JSON (at character {where}: {reason})"
    field = ".".join(str(p) for p in error["loc"] if p != "body") or "body"
    return f"{field}: {error['msg']}"


def _plain(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]


class RequestContext:
    """Per request: an id (``X-Request-ID``, kept from the caller when sane), the request
    count and latency by route template for Prometheus, a span when tracing is on, one log
    line, and a 500 that carries the id when a route crashes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id_of(scope)
        token = request_id.set(rid)
        started = time.perf_counter()
        sent: dict[str, Any] = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent["started"], sent["status"] = True, message["status"]
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
                _rate_headers(scope, message)
            await send(message)

        try:
            if tracing.enabled():  # no span objects at all when nothing exports them
                method = scope["method"]
                with tracing.span(f"{method} request", **{"http.request.method": method}) as cur:
                    await self._answer(scope, receive, send_with_id, rid, sent)
                    cur.set_attribute("http.route", _template(scope))
                    cur.set_attribute("http.response.status_code", sent["status"])
            else:
                await self._answer(scope, receive, send_with_id, rid, sent)
        finally:
            elapsed = time.perf_counter() - started
            template, status_code = _template(scope), sent["status"]
            services = getattr(scope["app"].state, "services", None)
            if services is not None:
                services.metrics.observe_request(scope["method"], template, status_code, elapsed)
            log.info("%s %s %d %.1fms", scope["method"], template, status_code, elapsed * 1e3)
            request_id.reset(token)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, rid: str, sent: dict[str, Any]
    ) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception:
            # Answered here, inside the request's context, so the 500 carries the id the
            # operator will find in the log.
            log.exception("unhandled error on %s %s", scope["method"], scope.get("path"))
            if sent["started"]:
                raise
            await _internal_error(send, rid)


def _request_id_of(scope: Scope) -> str:
    incoming = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
    return incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else new_request_id()


def _template(scope: Scope) -> str:
    return getattr(scope.get("route"), "path", None) or "(unmatched)"


async def _internal_error(send: Send, rid: str) -> None:
    body = json.dumps({"detail": f"internal error (request id {rid})"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _rate_headers(scope: Scope, message: Message) -> None:
    state = scope.get("state") or {}
    decision = state.get("rate")
    if decision is None:
        return
    message["headers"] += [
        (b"x-ratelimit-limit", str(decision.limit).encode()),
        (b"x-ratelimit-remaining", str(max(0, decision.remaining)).encode()),
    ]


def app_from_environment() -> FastAPI:
    """For ``uvicorn --factory`` (``ffe serve --workers N``): settings from the environment
    and config files, read in each worker by the composition root."""
    from ffe import bootstrap

    components = bootstrap.load()
    components.configure_logging()
    return create_app(components)
