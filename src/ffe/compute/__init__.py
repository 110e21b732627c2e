"""Where embarrassingly parallel work runs: the executor port and its local implementation.

Imports nothing else from ffe, so every layer (backtest, forecast, decide, tune) may use it.
"""

from ffe.compute.executor import Executor, LocalExecutor, Session, in_order

__all__ = ["Executor", "LocalExecutor", "Session", "in_order"]
