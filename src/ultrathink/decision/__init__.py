"""Decision: strategies turn market events (and later model predictions) into orders."""

from ultrathink.decision.strategy import Strategy

__all__ = ["Strategy"]
