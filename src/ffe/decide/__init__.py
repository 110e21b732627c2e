"""Strategies and the decision engine."""

from ffe.decide.strategy import Strategy, available, make_strategy, parameters, register

__all__ = ["Strategy", "available", "make_strategy", "parameters", "register"]
