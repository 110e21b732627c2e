"""The OpenAPI spec tells the truth: every operation that needs a caller says how to
authenticate and which scope it needs (public ones say nothing), and the answers of the
routes it describes match the schemas it declares for them."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
from fastapi.routing import APIRoute
from tests.support.wait import wait_for

from .test_auth import PUBLIC, _concrete, _routes

SCHEMES = {"bearer", "apiKeyHeader", "sessionCookie"}
BELOW = {"trade": "viewer", "admin": "trader"}  # a key whose scope is one short of it
DESCRIBED = [  # the answers the spec declares, and a path that gets one
    ("/api/v1/status", "/api/v1/status"),
    ("/api/v1/agent", "/api/v1/agent"),
    ("/api/v1/portfolio", "/api/v1/portfolio"),
    ("/api/v1/positions", "/api/v1/positions"),
    ("/api/v1/orders", "/api/v1/orders"),
    ("/api/v1/fills", "/api/v1/fills"),
    ("/api/v1/equity", "/api/v1/equity"),
    ("/api/v1/decisions", "/api/v1/decisions"),
    ("/api/v1/approvals", "/api/v1/approvals?status=pending"),
    ("/api/v1/approvals", "/api/v1/approvals?status=approved"),
    ("/api/v1/runs", "/api/v1/runs"),
    ("/api/v1/backtests/defaults", "/api/v1/backtests/defaults"),
]


def _spec(api) -> dict[str, Any]:
    response = api.client.get("/openapi.json", headers=api.headers("viewer"))
    assert response.status_code == 200
    return response.json()


def _operations(api, spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every route the spec describes, walking the app's routes
    as the auth test does."""
    found = []
    for template, methods in _routes(api.client.app.routes):
        for method in sorted(methods or ()):
            operation = spec["paths"].get(template, {}).get(method.lower())
            if operation is not None:  # pages, the docs and the stream are not in the spec
                found.append((method, template, operation))
    return found


def _conforms(api, spec: dict[str, Any], template: str, path: str, method: str = "GET") -> Any:
    """The answer to ``path``, checked against the 200 schema the spec declares."""
    response = api.client.request(method, path, headers=api.headers())
    assert response.status_code == 200, (path, response.text)
    declared = spec["paths"][template][method.lower()]["responses"]["200"]
    schema = declared["content"]["application/json"]["schema"]
    assert schema.get("$ref"), f"{method} {template} declares no answer"
    validator = jsonschema_rs.Draft202012Validator(
        {**schema, "components": spec["components"]}, validate_formats=True
    )
    body = response.json()
    errors = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(body)]
    assert not errors, (path, errors)
    return body


def test_spec_declares_how_callers_authenticate(api):
    schemes = _spec(api)["components"]["securitySchemes"]

    assert set(schemes) == SCHEMES
    assert (schemes["bearer"]["type"], schemes["bearer"]["scheme"]) == ("http", "bearer")
    assert schemes["apiKeyHeader"]["in"] == "header"
    assert schemes["apiKeyHeader"]["name"] == "X-API-Key"
    assert schemes["sessionCookie"]["in"] == "cookie"
    assert schemes["sessionCookie"]["name"] == "ffe_session"


def test_operation_when_its_route_needs_auth_then_spec_gives_security_and_scope(api):
    spec = _spec(api)

    operations = _operations(api, spec)

    for method, template, operation in operations:
        if template in PUBLIC:
            assert "security" not in operation, (method, template)
            assert "x-required-scope" not in operation, (method, template)
            continue
        scope = operation.get("x-required-scope")
        assert scope in ("read", "trade", "admin"), (method, template)
        assert {name for alt in operation["security"] for name in alt} == SCHEMES
        assert f"`{scope}` scope" in operation["description"]
        assert {"401", "403"} <= set(operation["responses"])
    walked = {(m, t) for m, t, _ in operations}
    in_spec = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert walked == in_spec
    assert ("GET", "/api/v1/portfolio") in walked  # checks its caller itself, not by dependency
    assert ("POST", "/api/v1/auth/login") in walked


def test_operation_scope_in_spec_is_the_one_enforced(api):
    spec = _spec(api)
    scoped = {
        (method, template): operation["x-required-scope"]
        for method, template, operation in _operations(api, spec)
        if operation.get("x-required-scope", "read") != "read"
    }
    assert scoped[("DELETE", "/api/v1/keys/{prefix}")] == "admin"

    for (method, template), scope in scoped.items():
        response = api.client.request(
            method, _concrete(template), headers=api.headers(BELOW[scope])
        )

        assert response.status_code == 403, (method, template, response.text)
        assert scope in response.json()["detail"]


def test_documented_answers_are_not_validated_per_request(api):
    described = {template for template, _ in DESCRIBED}
    routes = [r for r in api.client.app.routes if isinstance(r, APIRoute)]

    for route in routes:
        if route.path in described:
            # documented by responses=, so no model re-validates the answer per request
            assert route.response_model in (None, Any), route.path


def test_answers_when_nothing_ran_yet_then_match_their_declared_schemas(api):
    spec = _spec(api)

    for template, path in DESCRIBED:
        _conforms(api, spec, template, path)


def test_answers_of_an_agent_that_traded_match_their_declared_schemas(api):
    spec = _spec(api)
    body = {"strategy": "buy_and_hold", "speed": 0, "approval": "manual"}
    started = api.client.post("/api/v1/agent/start", json=body, headers=api.headers("trader"))
    assert started.status_code == 202, started.text
    pending = wait_for(lambda: _conforms(api, spec, *DESCRIBED[8])["items"])
    _conforms(api, spec, "/api/v1/portfolio", "/api/v1/portfolio")  # while it runs: live
    _conforms(api, spec, "/api/v1/positions", "/api/v1/positions")
    approve = "/api/v1/approvals/{approval_id}/approve"

    approved = _conforms(
        api, spec, approve, f"/api/v1/approvals/{pending[0]['id']}/approve", "POST"
    )
    wait_for(
        lambda: not _conforms(api, spec, "/api/v1/agent", "/api/v1/agent")["supervised"]["running"]
    )

    assert approved["status"] in ("approved", "sent")
    answers = {path: _conforms(api, spec, template, path) for template, path in DESCRIBED}
    assert answers["/api/v1/fills"]["items"]
    assert answers["/api/v1/orders"]["items"]
    assert answers["/api/v1/decisions"]["items"]
    assert answers["/api/v1/equity"]["points"]
    run = answers["/api/v1/runs"]["items"][0]["id"]
    _conforms(api, spec, "/api/v1/runs/{run_id}", f"/api/v1/runs/{run}")
    equity = _conforms(api, spec, "/api/v1/runs/{run_id}/equity", f"/api/v1/runs/{run}/equity")
    assert equity["points"]
