"""Small bar files written into tmp_path, shared by the data tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

HEADER = "time,open,high,low,close,volume"
# Four valid daily bars; tests break one line at a time (the header is line 1).
GOOD_ROWS = (
    "2024-01-02,100,101,99,100.5,1000",
    "2024-01-03,100.5,102,100,101.5,1100",
    "2024-01-04,101.5,103,101,102,1200",
    "2024-01-05,102,104,101.5,103,900",
)

WriteBars = Callable[..., Path]


@pytest.fixture
def write_bars(tmp_path: Path) -> WriteBars:
    """Write ``rows`` under ``header`` to ``tmp_path/in/<name>`` and return the path."""

    def write(*rows: str, header: str = HEADER, name: str = "bars.csv") -> Path:
        path = tmp_path / "in" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
        return path

    return write


@pytest.fixture
def good_rows() -> list[str]:
    """The valid rows, as a list a test may change."""
    return list(GOOD_ROWS)
