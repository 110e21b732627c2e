"""Tasks nobody awaits (a cache refresh behind the answer already sent, a state published
after a command): their failure is logged once and marked retrieved. Left alone, every such
task failing during a journal outage ended as a "Task exception was never retrieved"
traceback when it was collected."""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, TypeVar

from ffe.domain.errors import FfeError

log = logging.getLogger(__name__)

T = TypeVar("T", bound="asyncio.Task[Any]")


def watched(task: T, what: str) -> T:
    """``task``, whose failure will be logged as ``what`` failed, and retrieved."""
    task.add_done_callback(functools.partial(_report, what))
    return task


def _report(what: str, task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    failure = task.exception()  # retrieved: asyncio will not report it again
    if isinstance(failure, FfeError):  # its message says what to fix; no traceback needed
        log.warning("%s failed: %s", what, failure)
    elif failure is not None:
        log.error("%s failed", what, exc_info=failure)
