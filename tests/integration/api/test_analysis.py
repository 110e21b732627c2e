"""GET /api/v1/analysis/{symbol}: read from the cache another process fills (``ffe serve``
beside ``ffe precompute``), or computed in the API itself (``ffe run``, precompute.in_api)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager

import httpx
from tests.support.wait import wait_for

from ffe.config import Settings
from ffe.service.analysis import Failure

from .conftest import Api

Make = Callable[..., AbstractContextManager[Api]]


def _get(api: Api, symbol: str) -> httpx.Response:
    return api.client.get(f"/api/v1/analysis/{symbol}", headers=api.headers("viewer"))


def _precompute_once(settings: Settings) -> dict[str, Failure]:
    """What ``ffe precompute --once`` does, from this test: one round into the journal."""
    from ffe import bootstrap
    from ffe.kv import make_backends
    from ffe.service.analysis import open_analysis

    async def once() -> dict[str, Failure]:
        db = await bootstrap.open_journal(settings)
        try:
            _, schedule = open_analysis(bootstrap.components(settings), db, make_backends(None))
            return await schedule.run_once()
        finally:
            await db.dispose()

    return asyncio.run(once())


def test_analysis_when_precompute_elsewhere_then_read_from_journal_cache(api_with: Make) -> None:
    with api_with(FFE__PRECOMPUTE__SYMBOLS='["SP500", "NOPE"]') as api:
        waiting = _get(api, "SP500")
        failed = _precompute_once(api.settings)
        found = _get(api, "SP500")
        nope = _get(api, "NOPE")

    assert waiting.status_code == 202
    assert waiting.headers["Retry-After"] == "5"
    assert "`ffe precompute`" in waiting.json()["detail"]
    assert found.status_code == 200
    assert found.json()["computed_at"]
    assert list(failed) == ["NOPE"]  # no bars: its failure is cached for the API to say
    assert nope.status_code == 404
    assert "NOPE" in nope.json()["detail"]


def test_analysis_when_precompute_elsewhere_and_symbol_not_configured_then_404_names_setting(
    api_with: Make,
) -> None:
    with api_with(FFE__PRECOMPUTE__SYMBOLS='["SP500"]') as api:
        response = _get(api, "NASDAQ")
        unknown = _get(api, "MADEUP")

    assert response.status_code == 404
    assert "add NASDAQ to precompute.symbols" in response.json()["detail"]
    assert "FFE__PRECOMPUTE__SYMBOLS" in response.json()["detail"]
    assert unknown.status_code == 404
    assert "no bars for symbol 'MADEUP'" in unknown.json()["detail"]


def test_analysis_when_computed_in_api_then_202_until_ready_then_200(api_with: Make) -> None:
    with api_with(FFE__PRECOMPUTE__IN_API="true") as api:
        first = _get(api, "NASDAQ")  # not scheduled (symbols: []): computed on request
        ready = wait_for(lambda: (r := _get(api, "NASDAQ")).status_code == 200 and r, 120, 0.2)
        unknown = _get(api, "MADEUP")
        here = api.services.analysis.here

    assert first.status_code == 202
    assert first.headers["Retry-After"] == "2"
    assert ready.json()["computed_at"]
    assert unknown.status_code == 404
    assert not here.refreshing("MADEUP")
    assert "MADEUP" not in here.failures
