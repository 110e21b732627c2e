"""One driver per study: the process running a study holds its lease until the run ends.

A run that finds trials left RUNNING takes them for an interrupted run's and fails them. That
is only right when no other process is driving the study: two jobs naming one study (a
request sent twice, another user's study named on purpose) would otherwise fail each other's
running trials, and the first then dies writing trials that are no longer its own. The lease
is a lock the operating system or the database drops with its holder, so a run that crashed
leaves none behind and a resume after a crash is never refused: a PostgreSQL advisory lock
held by a connection of the run, or an exclusive ``flock`` on a file beside a SQLite file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ffe.domain.errors import ConfigError

if TYPE_CHECKING:
    import sqlalchemy


class StudyLease:
    """The lease of study ``name`` in the storage behind ``engine``; ``release`` it after."""

    def __init__(self, engine: sqlalchemy.Engine, name: str) -> None:
        self.held = True  # where there is no lock to take (a database in memory): alone
        self._connection: sqlalchemy.Connection | None = None
        self._file: IO[bytes] | None = None
        digest = hashlib.blake2b(f"ffe.tune:{name}".encode(), digest_size=8).digest()
        if engine.dialect.name == "postgresql":
            self._lock_postgres(engine, int.from_bytes(digest, "big", signed=True))
        elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            self._lock_file(Path(str(engine.url.database)), digest.hex())
        if not self.held:
            raise ConfigError(
                f"study {name!r} is being run by another process right now: wait until it "
                "ends, or give another study name"
            )

    def _lock_postgres(self, engine: sqlalchemy.Engine, key: int) -> None:
        import sqlalchemy

        connection = engine.connect()
        query = sqlalchemy.text("SELECT pg_try_advisory_lock(:key)")
        self.held = bool(connection.execute(query, {"key": key}).scalar())
        connection.commit()  # the lock is the session's: it outlives the transaction
        if self.held:
            self._connection = connection
        else:
            connection.close()

    def _lock_file(self, database: Path, digest: str) -> None:
        import fcntl

        folder = database.with_name(f"{database.name}.leases")
        folder.mkdir(parents=True, exist_ok=True)
        handle = (folder / digest).open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.held = False
            handle.close()
            return
        self._file = handle

    def release(self) -> None:
        """Give the lease back (closing the file or the connection drops the lock)."""
        import sqlalchemy

        if self._connection is not None:
            # Unlocked before closing: a closed connection goes back to the pool, still
            # holding the session's lock.
            self._connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock_all()"))
            self._connection.commit()
            self._connection.close()
            self._connection = None
        if self._file is not None:
            self._file.close()
            self._file = None
