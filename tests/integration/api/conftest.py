"""An API on a journal of its own, with a user and a key of each role."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient

from ffe.config import Settings, load_settings

PASSWORD = "correct horse battery"


@dataclass
class Api:
    client: TestClient
    settings: Settings
    keys: dict[str, str] = field(default_factory=dict)  # role -> key

    def headers(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    @property
    def services(self):  # type: ignore[no-untyped-def]
        return self.client.app.state.services  # type: ignore[attr-defined]


async def _seed(settings: Settings) -> dict[str, str]:
    from ffe import bootstrap
    from ffe.api import auth

    db = await bootstrap.open_journal(settings)
    try:
        keys = {}
        for role, scopes in (("viewer", ["read"]), ("trader", ["trade"]), ("admin", ["admin"])):
            await auth.create_user(db, role, PASSWORD, role, "test")
            keys[role] = (await auth.create_key(db, f"{role}-key", scopes, "test")).key
        return keys
    finally:
        await db.dispose()


def make_api(
    monkeypatch: pytest.MonkeyPatch, peer: str = "testclient", **env: str
) -> Iterator[Api]:
    from ffe import bootstrap
    from ffe.api.app import create_app

    monkeypatch.setenv("FFE__PRECOMPUTE__INTERVAL_S", "3600")
    # No scheduled analysis unless a test asks: each one fits models for a second.
    monkeypatch.setenv("FFE__PRECOMPUTE__SYMBOLS", "[]")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    keys = asyncio.run(_seed(settings))
    app = create_app(bootstrap.components(settings))
    with TestClient(app, raise_server_exceptions=False, client=(peer, 50000)) as client:
        yield Api(client, settings, keys)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    yield from make_api(monkeypatch)


@pytest.fixture
def jobs_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    """An API that runs the jobs submitted to it in its own process (``jobs.in_api``), as
    ``ffe run`` does; without it they wait for an ``ffe worker``."""
    yield from make_api(monkeypatch, FFE__JOBS__IN_API="true")


@pytest.fixture
def api_with(monkeypatch: pytest.MonkeyPatch) -> Callable[..., AbstractContextManager[Api]]:
    """``with api_with(FFE__API__RATE_LIMIT="5") as api:`` an API with these settings
    (``peer=`` the address its test client connects from)."""
    return contextlib.contextmanager(lambda **env: make_api(monkeypatch, **env))


@pytest.fixture
def password() -> str:
    return PASSWORD
