"""Market data: embedded datasets, CSV/Parquet loaders, validation, synthetic generator."""

from ultrathink.data.frame import MarketData

__all__ = ["MarketData"]
