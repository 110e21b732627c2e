"""Files and folders that only their owner may read. The journal (and so its WAL, its
backups and their manifests) holds every order, the users' password hashes and the API keys'
hashes: it is created 0600 in a folder created 0700, whatever the umask allows."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def private_folder(path: Path) -> None:
    """Create ``path`` (with any missing parents) for its owner only. A folder that exists
    already keeps the mode its owner gave it."""
    try:
        path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(f"{path} is a file, not a folder") from None


def private_file(path: Path) -> None:
    """Create ``path`` empty for its owner only, unless it exists (then it is left as it is).
    SQLite gives a database's -wal and -shm files the mode of the database file."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
