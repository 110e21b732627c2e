"""The live stream's messages: one bus channel, one shape."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

EVENTS = "events"  # the bus channel the WebSocket stream fans out, in every worker


def event_message(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """``{"type", "time", "data"}``: what every stream client receives."""
    return {"type": kind, "time": datetime.now(UTC).isoformat(), "data": data}
