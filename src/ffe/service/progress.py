"""How a use case reports progress to whoever runs it (a progress bar, a job's row)."""

from __future__ import annotations

from collections.abc import Callable

ReportProgress = Callable[[int, int], None]
"""Called with (done, total) in the use case's own unit (segments, grid points, forecasts):
first with done = 0 once the total is known, then as work finishes. A use case that says
nothing of its progress never calls it."""
