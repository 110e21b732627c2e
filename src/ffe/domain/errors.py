"""The error hierarchy, grouped by what the operator must do.

A risk denial is not an error: it is a value (see ``ffe.domain.orders.Denied``).
"""

from __future__ import annotations


class FfeError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(FfeError, ValueError):
    """The configuration is wrong: fix the named setting and start again.

    Also a ValueError, since it is raised for values that configure a component."""


class DataError(FfeError):
    """Market data is missing or malformed: fix the named file or symbol."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")


class StrategyError(FfeError):
    """A strategy was misconfigured or misbehaved: fix the strategy or its parameters."""


class BrokerError(FfeError):
    """The broker refused or failed a request: stop and inspect."""


class TemporaryBrokerError(BrokerError):
    """The broker is temporarily unavailable: retry later."""


class StoreError(FfeError):
    """The journal's database could not be read or written: check the named database (is it
    running, reachable, writable, migrated?) and retry. A failed write leaves nothing behind."""


class NotFoundError(FfeError, LookupError):
    """What was named (a run, job, key, user, approval, symbol) does not exist, or names no
    single one: check the name against the list the message points to."""


class ConflictError(FfeError):
    """What was named exists but its state forbids this now (already running, still running,
    already decided): wait for it to change, or change it first (the message says how)."""
