"""Real daily OHLCV data shipped offline with the ``arch`` package.

``sp500`` (symbol ``SP500``) and ``nasdaq`` (symbol ``NASDAQ``): 5,031 trading days from
1999-01-04 to 2018-12-31. ``close`` is the raw close, not the dividend-adjusted one. Each
dataset is read and validated once per process; the returned arrays are read-only because the
same ``MarketData`` object is shared by every caller.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from ultrathink.data.frame import MarketData
from ultrathink.errors import DataSourceError

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_DATASET = "sp500"


def _from_arch(raw: pd.DataFrame, dataset: str, symbol: str) -> MarketData:
    from ultrathink.data.validate import validate_frame  # lazy: pulls in pandas

    frame = raw.reset_index()[["Date", "Open", "High", "Low", "Close", "Volume"]]
    data = validate_frame(frame, f"embedded:{dataset}", default_symbol=symbol)
    columns = (data.ts_ns, data.symbol_idx, data.open, data.high, data.low, data.close)
    for array in (*columns, data.volume):
        array.flags.writeable = False
    return data


@functools.cache
def load_sp500() -> MarketData:
    """Return the S&P 500 index, daily, 1999-01-04..2018-12-31 (symbol ``SP500``)."""
    from arch.data import sp500

    return _from_arch(sp500.load(), "sp500", "SP500")


@functools.cache
def load_nasdaq() -> MarketData:
    """Return the NASDAQ Composite index, daily, 1999-01-04..2018-12-31 (symbol ``NASDAQ``)."""
    from arch.data import nasdaq

    return _from_arch(nasdaq.load(), "nasdaq", "NASDAQ")


DATASETS: dict[str, Callable[[], MarketData]] = {
    "sp500": load_sp500,
    "nasdaq": load_nasdaq,
}


def load_dataset(name: str) -> MarketData:
    """Return an embedded dataset by name.

    Parameters
    ----------
    name : str
        One of ``DATASETS`` (case-insensitive), e.g. ``"sp500"``.

    Raises
    ------
    DataSourceError
        For an unknown name; the message lists the known ones.
    """
    loader = DATASETS.get(name.strip().lower())
    if loader is None:
        raise DataSourceError(f"unknown dataset {name!r}; known datasets: {sorted(DATASETS)}")
    return loader()
