"""What a worker process needs besides its work's arguments, sent to it by value.

A spawned pool's worker, a job's process or a cluster task starts from a fresh interpreter:
state the caller built at run time (the strategy files it read, see ``ffe.decide.plugins``)
is not there, and reading it again by path could find another text, or no file at all on
another machine. A module holding such state registers it once with ``carry``; executors
send ``carried()`` with the work, and the worker calls ``install`` before running any item.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Carried = tuple[tuple[Callable[[Any], None], Any], ...]

# (export, install) pairs; install must be a module-level function so it pickles by name
_CARRIERS: list[tuple[Callable[[], Any], Callable[[Any], None]]] = []


def carry(export: Callable[[], Any], install: Callable[[Any], None]) -> None:
    """Send ``export()`` to every worker started from now on, where ``install`` takes it."""
    if (export, install) not in _CARRIERS:
        _CARRIERS.append((export, install))


def carried() -> Carried:
    """The state to send to a worker now: each ``install`` with what to give it."""
    return tuple((install, export()) for export, install in _CARRIERS)


def install(state: Carried) -> None:
    """In a worker: install each part of the state ``carried`` exported."""
    for take, value in state:
        take(value)
