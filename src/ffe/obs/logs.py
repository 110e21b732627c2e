"""Logging for the service: one handler on the root logger, JSON lines in production.

Modules log through ``logging.getLogger(__name__)``; the entry point calls
``configure_logging`` once. Each line carries the request id of the request being served
(``request_id``, set by the API's middleware) and the trace id when a span is recording, so a
line leads to its request and its trace. Fields passed with ``extra=`` become JSON fields, with
the values of secret-looking keys masked; pass mappings through ``redact`` before logging them
in messages.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TextIO

from ffe.obs.tracing import current_trace_id

__all__ = [
    "MASK",
    "bind_request_id",
    "configure_logging",
    "new_request_id",
    "redact",
    "request_id",
]

request_id: ContextVar[str | None] = ContextVar("ffe_request_id", default=None)
"""The id of the request being served, or None outside a request."""

MASK = "***"
"""What ``redact`` puts in place of a secret."""

_SECRET_KEY = re.compile(r"key|secret|password|token|authorization|cookie", re.IGNORECASE)
_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
# Attributes every LogRecord has; whatever else is on a record came from ``extra=``.
_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "request_id", "trace_id", "taskName"}
)


def new_request_id() -> str:
    """A fresh request id: 16 random hex digits (as unlikely to repeat as a UUID's first 16,
    without building a UUID on every request)."""
    return os.urandom(8).hex()


@contextmanager
def bind_request_id(rid: str | None = None) -> Iterator[str]:
    """Set ``request_id`` (a new one by default) for the block, then restore the previous."""
    rid = rid or new_request_id()
    token = request_id.set(rid)
    try:
        yield rid
    finally:
        request_id.reset(token)


def redact(mapping: Mapping[str, object]) -> dict[str, object]:
    """A copy with the values of secret-looking keys masked, nested mappings included.

    A key is secret-looking when it contains key, secret, password, token, authorization or
    cookie, in any case (``api_key``, ``X-Auth-Token``, ``Set-Cookie``).
    """
    return {
        str(k): MASK if _SECRET_KEY.search(str(k)) else _redact_value(v) for k, v in mapping.items()
    }


def _redact_value(value: object) -> object:
    if isinstance(value, Mapping):
        return redact(value)
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


class _ContextFilter(logging.Filter):
    """Stamps each record with the request and trace ids of the context that logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.trace_id = current_trace_id()
        return True


def _utc_iso(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


class _JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": _utc_iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in ("request_id", "trace_id"):
            if getattr(record, field, None):
                line[field] = getattr(record, field)
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        extra = {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS}
        # The fields above win over an ``extra=`` field of the same name.
        line.update((k, v) for k, v in redact(extra).items() if k not in line)
        return json.dumps(line, default=str, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    """``time LEVEL logger [request id] message``, times in UTC."""

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        head = f"{_utc_iso(record.created)} {record.levelname:<8} {record.name}"
        text = f"{head} [{rid}] {record.getMessage()}" if rid else f"{head} {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


class _FfeHandler(logging.StreamHandler[TextIO]):
    """The handler ``configure_logging`` installs; its type marks it as ours."""


def _point_at(handler: _FfeHandler, stream: TextIO) -> None:
    # setStream flushes the old stream first, which raises once that stream is closed (a
    # buffer a CLI runner or a test captured with, since thrown away).
    if getattr(handler.stream, "closed", False):
        handler.stream = stream
    else:
        handler.setStream(stream)


def configure_logging(
    level: str = "WARNING", json_format: bool = False, *, stream: TextIO | None = None
) -> None:
    """Configure the root logger: level, and one handler writing JSON lines or plain text.

    Idempotent: a second call updates the handler installed by the first instead of adding
    another. ``stream`` defaults to standard error.
    """
    name = level.upper()
    if name not in _LEVELS:
        raise ValueError(f"unknown log level {level!r}: use one of {', '.join(_LEVELS)}")
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _FfeHandler)), None)
    if handler is None:
        handler = _FfeHandler(stream or sys.stderr)
        handler.addFilter(_ContextFilter())
        root.addHandler(handler)
    elif stream is not None:
        _point_at(handler, stream)
    handler.setFormatter(_JsonFormatter() if json_format else _TextFormatter())
    root.setLevel(name)
