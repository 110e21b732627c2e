"""A backup's manifest: what it holds (schema revision, the file's size and SHA-256, every
table's row count and checksum), written beside it as ``<backup>.json``, and the durable file
writes both use."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ffe.domain.errors import StoreError
from ffe.store import migrate
from ffe.store.private import private_file
from ffe.store.tables import Digest

FORMAT = 1


@dataclass(frozen=True)
class Manifest:
    """What a backup holds, written beside it as ``<backup>.json``."""

    engine: str
    revision: str
    created_at: str
    database: str
    size: int
    sha256: str
    tables: dict[str, Digest]

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "engine": self.engine,
            "revision": self.revision,
            "created_at": self.created_at,
            "database": self.database,
            "size": self.size,
            "sha256": self.sha256,
            "tables": {
                name: {"rows": d.rows, "checksum": d.checksum} for name, d in self.tables.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown manifest format {data.get('format')!r}")
        return cls(
            engine=str(data["engine"]),
            revision=str(data["revision"]),
            created_at=str(data["created_at"]),
            database=str(data["database"]),
            size=int(data["size"]),
            sha256=str(data["sha256"]),
            tables={
                str(name): Digest(int(d["rows"]), str(d["checksum"]))
                for name, d in data["tables"].items()
            },
        )


def manifest_path(backup_file: Path) -> Path:
    return backup_file.with_name(f"{backup_file.name}.json")


async def read_manifest(backup_file: Path) -> Manifest:
    """The backup's manifest, once the file is checked to be the one the manifest describes."""
    where = manifest_path(backup_file)
    if not backup_file.is_file():
        raise StoreError(f"there is no backup at {backup_file}")
    if not where.is_file():
        raise StoreError(
            f"{backup_file.name} has no manifest ({where.name}) beside it: restore backups made "
            "by `ffe backup`, keeping the two files together"
        )
    try:
        manifest = Manifest.from_dict(json.loads(where.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreError(f"the manifest {where.name} is unreadable ({exc})") from exc
    size = backup_file.stat().st_size
    if size != manifest.size or await asyncio.to_thread(sha256_of, backup_file) != manifest.sha256:
        raise StoreError(
            f"{backup_file.name} is damaged or was changed after it was made: its "
            f"{'size' if size != manifest.size else 'SHA-256'} does not match {where.name}; "
            "nothing was restored"
        )
    known = {revision.id for revision in await migrate.history()}
    if manifest.revision not in known:
        raise StoreError(
            f"{backup_file.name} is at schema revision {manifest.revision}, which this ffe does "
            "not know (it was made by a newer ffe): restore it with that version"
        )
    return manifest


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomically(path: Path, content: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    private_file(partial)
    partial.write_text(content, encoding="utf-8")
    fsync_file(partial)
    os.replace(partial, path)


def fsync_file(path: Path) -> None:
    with path.open("rb+") as file:
        os.fsync(file.fileno())


def fsync_directory(directory: Path) -> None:
    """Make a rename durable (where the platform allows opening a directory)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
