"""Brokers and the fill model."""

from ffe.execution.fill_model import FillAt, FillModel
from ffe.execution.simulated import SimFill, SimOrder, SimulatedBroker

__all__ = ["FillAt", "FillModel", "SimFill", "SimOrder", "SimulatedBroker"]
