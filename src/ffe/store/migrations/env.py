"""Alembic's environment for ffe's journal. Run through ``ffe.store.migrate`` (the ``ffe db``
commands), which hands over an open connection; there is no alembic.ini."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context

from ffe.store.models import Base
from ffe.store.types import UtcDateTime


def _render_item(kind: str, item: Any, _context: Any) -> str | Literal[False]:
    # UtcDateTime only converts in Python; the column is a plain timestamp with time zone,
    # and writing it so keeps migrations independent of ffe's code.
    if kind == "type" and isinstance(item, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `ffe db upgrade`, not the alembic command")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by copying tables
    compare_type=True,
    render_item=_render_item,
)
with context.begin_transaction():
    context.run_migrations()
