"""ULTRATHINK: an event-driven platform for ML-driven trading.

One deterministic kernel replays market data through a strategy, pre-trade risk checks,
a paper broker and a portfolio, persisted in SQLite with a hash-chained audit log.
"""

__version__ = "0.1.0"
