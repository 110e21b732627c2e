"""What `ffe run` says at start: the first login (a password printed only in development),
which run the agent would resume, and a port already taken."""

from __future__ import annotations

import socket
import stat

import pytest

from ffe import bootstrap
from ffe.api import auth
from ffe.cli.startup import FIRST_PASSWORD_FILE, check_port, first_login
from ffe.config import load_settings
from ffe.domain.errors import ConfigError


async def _first_login_and_db(monkeypatch: pytest.MonkeyPatch, **env: str):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    db = await bootstrap.open_journal(settings)
    return settings, db, await first_login(settings, db)


async def test_first_login_when_development_then_password_printed_and_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, db, said = await _first_login_and_db(monkeypatch)
    try:
        assert said is not None
        password = said.split("with password [bold]")[1].split("[/bold]")[0]
        assert await auth.check_login(db, "admin", password)
        assert not (settings.data.dir / FIRST_PASSWORD_FILE).exists()
    finally:
        await db.dispose()


async def test_first_login_when_production_then_password_only_in_a_0600_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, db, said = await _first_login_and_db(monkeypatch, FFE__API__ENVIRONMENT="production")
    try:
        path = settings.data.dir / FIRST_PASSWORD_FILE
        password = path.read_text().strip()
        assert said is not None
        assert str(path) in said
        assert password not in said
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert await auth.check_login(db, "admin", password)
    finally:
        await db.dispose()


async def test_first_login_when_password_set_in_environment_then_used_and_never_printed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chosen = "a long chosen password"
    settings, db, said = await _first_login_and_db(
        monkeypatch, FFE__API__ENVIRONMENT="production", FFE__API__FIRST_ADMIN_PASSWORD=chosen
    )
    try:
        assert said is not None
        assert chosen not in said
        assert "api.first_admin_password" in said
        assert await auth.check_login(db, "admin", chosen)
        assert not (settings.data.dir / FIRST_PASSWORD_FILE).exists()
    finally:
        await db.dispose()


async def test_first_login_when_a_user_exists_then_nothing_made_or_said(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings()
    db = await bootstrap.open_journal(settings)
    try:
        await auth.create_user(db, "ops", "a password long enough", "admin", "test")

        said = await first_login(settings, db)

        assert said is None
        assert [u.username for u in await auth.list_users(db)] == ["ops"]
    finally:
        await db.dispose()


def test_check_port_when_taken_then_says_in_use_and_a_free_one() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(ConfigError, match=rf"^port {port} is in use; try --port \d+$"):
            check_port("127.0.0.1", port)


def test_check_port_when_free_then_passes() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    check_port("127.0.0.1", port)  # no error: nothing listens there
