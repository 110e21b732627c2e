"""Bar timeframes such as ``1d`` or ``15m``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ffe.domain.errors import DataError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"^(\d+)([smhdw])$")


@dataclass(frozen=True, slots=True)
class Timeframe:
    """A bar length, parsed from strings like ``1d``, ``4h``, ``15m``."""

    count: int
    unit: str

    @classmethod
    def parse(cls, text: str) -> Timeframe:
        if text.strip().endswith("M"):
            # Exchanges write a month as 1M; reading it as one minute would be silently wrong.
            raise DataError(
                f"timeframe {text!r} is ambiguous: months are not supported; "
                "write minutes with a lower-case m, like 15m"
            )
        match = _PATTERN.match(text.strip().lower())
        if match is None or int(match.group(1)) == 0:
            raise DataError(
                f"timeframe {text!r} is not valid: use a count and a unit, "
                "like 1d, 4h, 15m, 30s or 1w"
            )
        return cls(int(match.group(1)), match.group(2))

    @property
    def seconds(self) -> int:
        return self.count * _UNITS[self.unit]

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"
