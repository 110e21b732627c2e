"""Finance Feedback Engine: a trading decision engine that learns from its own results."""

__version__ = "0.1.0"
