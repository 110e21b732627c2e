"""JSON for cached values and events: one encoding, whether the bytes stay in process or not."""

from __future__ import annotations

import json
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID


def _default(value: object) -> object:
    # Domain messages carry datetimes, Decimals and enums; JSON has strings for them.
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serialisable: convert it to str first")


def encode(value: Any) -> bytes:
    """Compact JSON bytes; datetimes as ISO strings, Decimals and UUIDs as strings."""
    return json.dumps(value, default=_default, separators=(",", ":")).encode()


def decode(data: bytes) -> Any:
    """The value `encode` made; ValueError when the bytes are not JSON."""
    return json.loads(data)
