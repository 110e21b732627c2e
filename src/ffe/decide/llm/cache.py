"""A directory of LLM answers, so a backtest with an LLM replays exactly, and offline.

Each answer is one JSON file named by the SHA-256 of everything that shapes it: provider kind,
the server's base URL, model, messages, schema and seed. Files are written to a temporary name
and moved into place with ``os.replace``, so a reader never sees half a file. Only answers
that parsed as a valid view are stored (the caller decides), so a bad answer is asked again.

Modes: ``read_write`` (default) reads hits and stores new answers; ``read_only`` never asks a
server, and a miss raises ``LlmCacheMiss``; ``off`` neither reads nor writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from ffe.decide.llm.schema import LlmError

log = logging.getLogger(__name__)

CacheMode = Literal["read_write", "read_only", "off"]
CACHE_MODES: tuple[str, ...] = get_args(CacheMode)


class LlmCacheError(LlmError):
    """The answer cache could not be read or written: check the named directory."""

    reason = "cache"


class LlmCacheMiss(LlmCacheError):  # noqa: N818 (a miss reads better than a MissError)
    """A read-only cache holds no answer for a prompt: record it first with a server."""


def cache_key(
    kind: str,
    base_url: str,
    model: str,
    messages: Sequence[Mapping[str, str]],
    schema: Mapping[str, Any],
    seed: int,
) -> str:
    """The SHA-256 (hex) naming the answer to this exact request, from this server: two
    servers (or two models of one) never share an answer."""
    request = {
        "kind": kind,
        "base_url": base_url.rstrip("/"),
        "model": model,
        "messages": [dict(m) for m in messages],
        "schema": schema,
        "seed": seed,
    }
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    """Answers stored as ``<directory>/<key[:2]>/<key>.json``."""

    def __init__(self, directory: Path, mode: CacheMode = "read_write") -> None:
        if mode not in CACHE_MODES:
            raise ValueError(f"cache mode {mode!r} is not one of {', '.join(CACHE_MODES)}")
        self.directory = Path(directory)
        self.mode: CacheMode = mode

    def path(self, key: str) -> Path:
        """Where the answer named ``key`` is stored."""
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        """The stored answer, or None to ask the server. LlmCacheMiss when read-only."""
        if self.mode == "off":
            return None
        answer = self._read(self.path(key))
        if answer is None and self.mode == "read_only":
            raise LlmCacheMiss(
                f"no cached LLM answer {key[:12]} in {self.directory} (cache mode read_only); "
                "run once with the server reachable and cache mode read_write to record it",
                brief="no cached answer (cache mode read_only)",
            )
        return answer

    def put(self, key: str, answer: str, about: Mapping[str, Any] | None = None) -> None:
        """Store ``answer`` under ``key`` (with ``about`` for people reading the file)."""
        if self.mode != "read_write":
            return
        record = {"key": key, **(about or {}), "answer": answer}
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, json.dumps(record, indent=1, ensure_ascii=False))
        except OSError as exc:
            raise LlmCacheError(
                f"cannot store an LLM answer in {self.directory}: {exc}",
                brief="cannot store the answer",
            ) from exc

    def _read(self, path: Path) -> str | None:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable LLM cache file %s: %s", path, exc)
            return None
        answer = record.get("answer") if isinstance(record, dict) else None
        if not isinstance(answer, str):
            log.warning("ignoring LLM cache file %s: it holds no answer", path)
            return None
        return answer


def _write_atomically(path: Path, text: str) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".writing-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
