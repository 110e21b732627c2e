"""The API against its own OpenAPI spec: schemathesis sends valid and invalid requests to every
operation with an admin key; none may get a server error, and answers must match the spec
where it declares them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from ffe import bootstrap
from ffe.api.app import create_app
from ffe.config import Settings

from .conftest import PASSWORD, Api, make_api

# Deterministic and bounded: the same cases on every run. The coverage phase adds the
# boundaries of every constraint (lengths, ranges, patterns, missing and extra fields, wrong
# types, wrong methods); the fuzzing phase 25 cases of each mode (valid, invalid) on top.
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20240101,
        "generation": {"max-examples": 25, "deterministic": True, "database": "none"},
        "phases": {"coverage": {"enabled": True}, "fuzzing": {"enabled": True}},
    }
)


def _spec() -> dict[str, Any]:
    # What /openapi.json serves (test_served_spec_is_the_one_fuzzed checks it). Building the
    # app connects to nothing, and settings do not change its routes.
    return create_app(bootstrap.components(Settings.model_construct())).openapi()


SCHEMA = schemathesis.openapi.from_dict(_spec(), config=CONFIG)
# Revoking a key by prefix or id can revoke the admin key every other case sends (ids 1-3 are
# the fixture's keys), so that operation runs on an API of its own, called with a session
# token that no revocation touches. Nothing else is left out.
REVOKE = SCHEMA.include(method="DELETE", path_regex=r"^/api/v1/keys/")
EVERYTHING_ELSE = SCHEMA.exclude(method="DELETE", path_regex=r"^/api/v1/keys/")


def _fuzz_api(mp: pytest.MonkeyPatch, data_dir: str) -> Iterator[Api]:
    mp.setenv("FFE__DATA__DIR", data_dir)
    mp.delenv("FFE__DATABASE__URL", raising=False)
    # The HTTP layer is under test, not the jobs: they stay queued (no jobs.in_api, and no
    # worker), so a fuzzed sweep of 2000 points never runs.
    yield from make_api(
        mp,
        FFE__API__RATE_LIMIT="1000000",
        FFE__API__LOGIN_RATE_LIMIT="1000000",
        # wrong passwords and bogus keys are what a fuzzer sends: no backoff, no throttle
        FFE__API__LOGIN_FAILURES_FREE="1000000",
        FFE__API__AUTH_FAILURES_LIMIT="1000000",
        FFE__API__ANALYSIS_SYMBOLS="[]",  # no background analysis to wait for at shutdown
    )


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One API for all operations (one per xdist worker): one per operation would cost
    seconds each. Module-scoped, so it sets its own data directory."""
    with pytest.MonkeyPatch.context() as mp:
        yield from _fuzz_api(mp, str(tmp_path_factory.mktemp("fuzz")))


@pytest.fixture(scope="module")
def revoking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, dict[str, str]]]:
    """An API of its own and the admin's session token."""
    with pytest.MonkeyPatch.context() as mp:
        for api in _fuzz_api(mp, str(tmp_path_factory.mktemp("revoke"))):
            login = api.client.post(
                "/api/v1/auth/login", json={"username": "admin", "password": PASSWORD}
            )
            yield api, {"Authorization": f"Bearer {login.json()['token']}"}


def _send(api: Api, case: schemathesis.Case, headers: dict[str, str]) -> httpx.Response:
    """The case through the fixture's test client, where the app's lifespan already runs."""
    sent = case.as_transport_kwargs(base_url=str(api.client.base_url), headers=headers)
    # Credentials are the fixture's: a generated X-API-Key or cookie beside them is refused
    # (every credential a request presents must hold), so the case would test only that.
    ours = {name.lower() for name in headers}
    sent["headers"] = {
        name: value
        for name, value in sent["headers"].items()
        if name.lower() in ours or name.lower() not in {"x-api-key", "cookie", "authorization"}
    }
    body: dict[str, Any] = {}
    if "json" in sent:
        body["json"] = sent["json"]
    elif sent.get("data") is not None:
        data = sent["data"]
        body["content"] = data if isinstance(data, bytes) else str(data).encode()
    return api.client.request(
        sent["method"],
        sent["url"],
        headers=sent["headers"],
        params=sent["params"],
        follow_redirects=False,
        **body,
    )


def _check(case: schemathesis.Case, response: httpx.Response) -> None:
    # A 401 or 429 means the case never got past auth or the rate limit: it tested nothing.
    # Logging in with a wrong password is the one route that answers 401 itself.
    refused = {429} if case.path == "/api/v1/auth/login" else {401, 429}
    assert response.status_code not in refused, response.text
    checks = [not_a_server_error, content_type_conformance, response_schema_conformance]
    case.validate_response(response, checks=checks)


def _stop_started_agent(api: Api, response: httpx.Response) -> None:
    # Otherwise every later start is refused as "already running" and never reaches the
    # agent's construction with the fuzzed strategy and parameters.
    if response.request.url.path == "/api/v1/agent/start" and response.status_code == 202:
        api.client.portal.call(api.services.supervisor.stop, 10.0)


def test_served_spec_is_the_one_fuzzed(fuzzed: Api) -> None:
    served = fuzzed.client.get("/openapi.json", headers=fuzzed.headers())

    assert served.status_code == 200
    assert served.json() == _spec()


@EVERYTHING_ELSE.parametrize()
def test_operation_when_fuzzed_then_no_server_error_and_answer_matches_spec(
    case: schemathesis.Case, fuzzed: Api
) -> None:
    response = _send(fuzzed, case, fuzzed.headers("admin"))
    _stop_started_agent(fuzzed, response)

    _check(case, response)


@REVOKE.parametrize()
def test_revoke_key_when_fuzzed_then_no_server_error_and_answer_matches_spec(
    case: schemathesis.Case, revoking: tuple[Api, dict[str, str]]
) -> None:
    api, headers = revoking

    response = _send(api, case, headers)

    _check(case, response)


def test_validation_error_when_answered_then_matches_its_declared_schema(fuzzed: Api) -> None:
    case = SCHEMA["/api/v1/orders"]["GET"].Case(query={"limit": 0})

    response = _send(fuzzed, case, fuzzed.headers("admin"))

    assert response.status_code == 422
    case.validate_response(response, checks=[response_schema_conformance])


def test_refusal_when_422_then_matches_its_declared_schema(fuzzed: Api) -> None:
    case = SCHEMA["/api/v1/backtests"]["POST"].Case(
        body={"params": {"fsat": 5}}, media_type="application/json"
    )

    response = _send(fuzzed, case, fuzzed.headers("admin"))

    assert response.status_code == 422
    case.validate_response(response, checks=[response_schema_conformance])
