"""Recorded runs: backtests written to the journal and read back (for ``ffe runs`` and the
API). Sits above ``backtest`` and ``store`` so that neither has to know the other."""
