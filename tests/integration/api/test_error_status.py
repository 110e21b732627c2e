"""Errors the engine raises on purpose get their HTTP status from their type (not found 404,
conflict 409, journal down 503), never from the words of their message."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI

from ffe.domain.errors import FfeError, StoreError
from ffe.store.models import Approval, Run
from ffe.store.repositories import unit_of_work

from .conftest import Api, make_api


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One API for the module: each test adds rows of its own (distinct ids)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FFE__DATA__DIR", str(tmp_path_factory.mktemp("error-status")))
        mp.delenv("FFE__DATABASE__URL", raising=False)
        yield from make_api(mp, FFE__API__RATE_LIMIT="1000000")


def _call(api: Api, work: Any, *args: Any) -> Any:
    return api.client.portal.call(work, *args)  # type: ignore[union-attr]


async def _add_run(api: Api, run_id: str, status: str = "running") -> None:
    async with unit_of_work(api.services.db) as uow:
        uow.session.add(
            Run(
                id=run_id,
                kind="paper",
                strategy="sma_cross",
                params={},
                symbols=["SP500"],
                config={},
                code_version="test",
                status=status,
                started_at=datetime.now(UTC),
            )
        )


async def _add_decided_approval(api: Api, run_id: str) -> int:
    now = datetime.now(UTC)
    async with unit_of_work(api.services.db) as uow:
        approval = Approval(
            run_id=run_id,
            account="paper",
            client_order_id="test-approval-1",
            time=now,
            symbol="SP500",
            quantity=1.0,
            reference_price=100.0,
            status="approved",
            expires_at=now + timedelta(hours=1),
        )
        uow.session.add(approval)
        await uow.session.flush()
        return approval.id


def test_report_when_run_still_running_then_409_says_so(api: Api) -> None:
    _call(api, _add_run, api, "a1" * 16)

    response = api.client.get(f"/api/v1/runs/{'a1' * 16}/report", headers=api.headers())

    assert response.status_code == 409, response.text
    assert "still running" in response.json()["detail"]


def test_report_when_run_failed_without_stats_then_404_says_why(api: Api) -> None:
    _call(api, _add_run, api, "b2" * 16, "failed")

    response = api.client.get(f"/api/v1/runs/{'b2' * 16}/report", headers=api.headers())

    assert response.status_code == 404, response.text
    assert "has no report" in response.json()["detail"]


def test_get_run_when_unknown_then_404_names_it(api: Api) -> None:
    response = api.client.get("/api/v1/runs/0123abcd", headers=api.headers())

    assert response.status_code == 404
    assert "no run '0123abcd'" in response.json()["detail"]


def test_get_run_when_prefix_ambiguous_then_404_asks_for_more(api: Api) -> None:
    _call(api, _add_run, api, "cafe" + "1" * 28)
    _call(api, _add_run, api, "cafe" + "2" * 28)

    response = api.client.get("/api/v1/runs/cafe", headers=api.headers())

    assert response.status_code == 404, response.text
    assert "ambiguous: give more of it" in response.json()["detail"]


def test_approve_when_already_decided_then_409_says_its_state(api: Api) -> None:
    _call(api, _add_run, api, "d4" * 16)
    approval_id = _call(api, _add_decided_approval, api, "d4" * 16)

    response = api.client.post(
        f"/api/v1/approvals/{approval_id}/approve", headers=api.headers("trader")
    )

    assert response.status_code == 409, response.text
    assert "already approved" in response.json()["detail"]


def test_get_job_when_unknown_then_404_names_it(api: Api) -> None:
    response = api.client.get("/api/v1/jobs/" + "e" * 32, headers=api.headers())

    assert response.status_code == 404
    assert "no job" in response.json()["detail"]


def test_revoke_key_when_unknown_then_404_names_it(api: Api) -> None:
    response = api.client.delete("/api/v1/keys/0badc0de", headers=api.headers())

    assert response.status_code == 404, response.text
    assert "no API key '0badc0de'" in response.json()["detail"]


def _raising(app: FastAPI, path: str, error: FfeError) -> None:
    async def route() -> None:
        raise error

    app.router.add_api_route(path, route)


def test_store_error_when_message_starts_with_no_then_still_503(api: Api) -> None:
    _raising(api.client.app, "/test/outage", StoreError("no running server at 10.0.0.9:5432"))  # type: ignore[arg-type]

    response = api.client.get("/test/outage")

    assert response.status_code == 503
    assert "the journal is unavailable" in response.json()["detail"]


def test_plain_error_when_message_says_already_running_then_not_409(api: Api) -> None:
    error = FfeError("no strategy: the sweep already running needs one")
    _raising(api.client.app, "/test/words", error)  # type: ignore[arg-type]

    response = api.client.get("/test/words")

    assert response.status_code == 400
