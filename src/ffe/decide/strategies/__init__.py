"""Built-in strategies; importing this package registers them."""

from ffe.decide.strategies.binary_edge import BinaryEdge
from ffe.decide.strategies.buy_and_hold import BuyAndHold
from ffe.decide.strategies.momentum import Momentum
from ffe.decide.strategies.sma_cross import SmaCross

__all__ = ["BinaryEdge", "BuyAndHold", "Momentum", "SmaCross"]
