"""Keeping the garbage collector's full passes short in a long-lived server.

A full collection walks every tracked object not frozen, holding the event loop while it
does: with the data libraries imported after start-up (pandas, pyarrow, scipy, statsmodels:
about 100,000 objects) one took 50 to 80 ms, which was most of the API's p99 under load.
So a server imports what its routes load on first use before it starts answering, then
freezes what start-up built (``gc.freeze``: those objects live as long as the process).
Later warm-ups (the paper agent's strategy, the first analysis) freeze what they loaded too.
"""

from __future__ import annotations

import gc


def preload() -> None:
    """Import the libraries the routes would otherwise import on first use: the data
    loaders, the bundled bars' packages and the forecasting stack. Seconds, the first time:
    run it on a thread."""
    import ffe.data  # pandas, pyarrow
    from ffe.data.bundled import import_libraries

    import_libraries()
    # The forecasting stack too (0.15 s more): routes, the analysis and the agent's warm-up
    # import it on first use, and two threads importing it at once can meet in a circular
    # import (narwhals, through scikit-learn), where Python raises _DeadlockError in one.
    import ffe.decide.analysis  # noqa: F401


def settle() -> None:
    """Collect what is garbage now, then move every survivor out of the collector's sight.
    One pause (a full pass over the whole heap) at a start-up or warm-up, instead of one on
    every full pass after it.

    Everything frozen before is thawed first: what was alive at the last freeze and is
    garbage since (a stopped agent, say) is collected now instead of kept for good."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
