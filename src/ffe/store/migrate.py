"""Schema migrations (Alembic, shipped inside the package): what ``ffe db`` runs.

Every function takes a ``Database`` and runs Alembic on one of its connections, inside one
transaction where the database allows it (both SQLite and PostgreSQL do for DDL), so a
migration that fails half way leaves the schema as it was.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from ffe.domain.errors import StoreError
from ffe.store.database import Database

if TYPE_CHECKING:
    from alembic.config import Config

SCRIPT_LOCATION = "ffe.store:migrations"
# Alembic, and the scripts it imports to find the head, cost a few hundred milliseconds; a
# command on an up-to-date journal only reads the two revision ids (``_quick_head``).
_REVISION = re.compile(r"^revision\s*(?::[^=]+)?=\s*[\"'](\w+)[\"']", re.MULTILINE)
_DOWN = re.compile(r"^down_revision\s*(?::[^=]+)?=\s*(?:[\"'](\w+)[\"']|None)", re.MULTILINE)


@dataclass(frozen=True)
class Revision:
    id: str
    down: str | None
    message: str
    is_head: bool
    is_current: bool


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this version of ffe knows."""
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(_config()).get_heads()
    if len(heads) != 1:
        raise StoreError(f"the migrations have {len(heads)} heads; expected one")
    return heads[0]


async def _run(db: Database, doing: str, work: Callable[[Connection], Any]) -> Any:
    with db.errors(doing):
        async with db.engine.begin() as connection:
            return await connection.run_sync(work)


async def upgrade(db: Database, revision: str = "head", *, attempts: int = 3) -> str | None:
    """Migrate up to ``revision``; return the revision the database is then at.

    Two processes that start on a new database at once (two commands, or an API and an
    agent) both find it empty and both create the tables; the second to commit fails. Its
    migration rolled back whole, so it looks again: at the head now, it is done; otherwise
    (a lock held too long, say) it tries again, ``attempts`` times in all."""
    target = head() if revision == "head" else revision
    for attempt in range(1, attempts + 1):
        try:
            await _run(db, "migrate", lambda c: _command().upgrade(_config(c), revision))
            break
        except StoreError:
            try:
                if await current(db) == target:
                    break  # another process migrated it meanwhile
            except StoreError:
                pass
            if attempt == attempts:
                raise
            await asyncio.sleep(0.2 * attempt)
    return await current(db)


async def downgrade(db: Database, revision: str) -> str | None:
    """Migrate down to ``revision`` (``base`` removes every table); return where it stands."""
    await _run(db, "migrate", lambda c: _command().downgrade(_config(c), revision))
    return await current(db)


async def current(db: Database) -> str | None:
    """The revision the database is at; None for an empty (never migrated) database."""

    from alembic.runtime.migration import MigrationContext

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    result: str | None = await _run(db, "read", read)
    return result


async def history(db: Database | None = None) -> list[Revision]:
    """Every revision, newest first, marking the head and (given a database) the current one."""
    from alembic.script import ScriptDirectory

    at = await current(db) if db is not None else None
    script = ScriptDirectory.from_config(_config())
    heads = set(script.get_heads())
    return [
        Revision(
            id=rev.revision,
            down=rev.down_revision if isinstance(rev.down_revision, str | None) else None,
            message=(rev.doc or "").strip(),
            is_head=rev.revision in heads,
            is_current=rev.revision == at,
        )
        for rev in script.walk_revisions()
    ]


async def pending_changes(db: Database) -> list[Any]:
    """Differences between the models and the database's schema (empty when they agree)."""

    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from ffe.store.models import Base

    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    result: list[Any] = await _run(db, "read", compare)
    return result


async def ensure_schema(db: Database, *, auto_upgrade: bool) -> None:
    """Make sure the database is at the head revision before it is used.

    With ``auto_upgrade`` (the embedded SQLite default), an empty or older database is
    migrated; otherwise a database that is behind is an error that says what to run."""
    quick = _quick_head()
    if quick is not None and await _quick_current(db) == quick:
        return
    at, wanted = await current(db), head()
    if at == wanted:
        return
    known = {revision.id for revision in await history()}
    if at is not None and at not in known:
        raise StoreError(
            f"the database {db} is at revision {at}, which this version of ffe does not know "
            "(it was migrated by a newer ffe): upgrade ffe"
        )
    if not auto_upgrade:
        raise StoreError(
            f"the database {db} is at revision {at or 'none (empty)'}, ffe needs {wanted}: "
            "run `ffe db upgrade`"
        )
    await upgrade(db)


async def new_revision(db: Database, message: str) -> str:
    """Write a migration for what the models changed since ``db``'s revision (for developers:
    upgrade an empty database to head first, change the models, then run this)."""

    def write(connection: Connection) -> str:
        script = _command().revision(_config(connection), message=message, autogenerate=True)
        return str(getattr(script, "path", script))

    result: str = await _run(db, "read", write)
    return result


def _command() -> Any:
    from alembic import command

    return command


def _quick_head() -> str | None:
    """The head read from the scripts' ``revision`` and ``down_revision`` lines without
    Alembic; None when that is not clear-cut (then Alembic decides)."""
    revisions: dict[str, str | None] = {}
    for script in resources.files("ffe.store.migrations").joinpath("versions").iterdir():
        if not script.name.endswith(".py") or script.name.startswith("__"):
            continue
        source = script.read_text(encoding="utf-8")
        found, down = _REVISION.findall(source), _DOWN.findall(source)
        if len(found) != 1 or len(down) != 1:
            return None
        revisions[found[0]] = down[0] or None
    heads = set(revisions) - set(revisions.values())
    return heads.pop() if len(heads) == 1 else None


async def _quick_current(db: Database) -> str | None:
    """The revision in ``alembic_version``; None when it cannot be read that simply."""
    try:
        async with db.engine.connect() as connection:
            rows = (await connection.execute(text("SELECT version_num FROM alembic_version"))).all()
    except (SQLAlchemyError, OSError):
        return None
    return str(rows[0][0]) if len(rows) == 1 else None
