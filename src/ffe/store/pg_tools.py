"""PostgreSQL's client tools (pg_dump, pg_restore), run against a journal database."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

from ffe.domain.errors import StoreError
from ffe.store.database import Database

_CLIENT_TOOLS = (
    "install the PostgreSQL client tools (Debian/Ubuntu: apt install postgresql-client; "
    "macOS: brew install libpq), at the server's major version or newer"
)


def client_tool(name: str, doing: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise StoreError(
            f"{name} is not on PATH, and it is needed to {doing} PostgreSQL: " + _CLIENT_TOOLS
        )
    return found


def libpq_arguments(db: Database) -> tuple[list[str], dict[str, str]]:
    """Connection arguments for pg_dump/pg_restore; the password goes in the environment,
    never on a command line another user could read."""
    url = db.url
    args = [f"--dbname={url.database or 'postgres'}"]
    args += [f"--host={url.host}"] if url.host else []
    args += [f"--port={url.port}"] if url.port else []
    args += [f"--username={url.username}"] if url.username else []
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    for option in ("sslmode", "ssl"):
        if option in url.query:
            env["PGSSLMODE"] = str(url.query[option])
    return args, env


async def run_client_tool(command: list[str], db: Database | None) -> None:
    """Run a PostgreSQL client tool (against ``db`` when given); a failure is a StoreError
    quoting what the tool said."""
    args, env = libpq_arguments(db) if db is not None else ([], None)
    process = await asyncio.create_subprocess_exec(
        *command[:1],
        *args,
        *command[1:],
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    _, err = await process.communicate()
    if process.returncode != 0:
        said = " ".join(err.decode(errors="replace").split())[:500] or "no message"
        where = f" on {db}" if db is not None else ""
        raise StoreError(
            f"{Path(command[0]).name} failed{where} (exit {process.returncode}): {said}"
        )
