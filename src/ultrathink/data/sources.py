"""One entry point for every kind of market data: ``load_data(spec)``."""

from __future__ import annotations

from pathlib import Path

from ultrathink.data.embedded import DATASETS, load_dataset
from ultrathink.data.frame import MarketData
from ultrathink.errors import DataSourceError

#: the synthetic generator's spec prefix (``data/synthetic_spec.py``: not imported here, its
#: pydantic models cost start-up time that a run on real data never needs)
PREFIX = "synthetic"


def load_data(spec: str) -> MarketData:
    """Load market data from a spec string.

    Parameters
    ----------
    spec : str
        One of: an embedded dataset name (``sp500``, ``nasdaq``); ``synthetic`` or
        ``synthetic:key=value,...`` (see ``parse_synthetic_spec``); a path to a ``.csv``,
        ``.csv.gz``, ``.parquet`` or ``.pq`` file.

    Raises
    ------
    DataSourceError
        Unknown spec, missing or unreadable file.
    DataValidationError
        The file's content breaks a validation rule.
    ConfigError
        A malformed synthetic spec.
    """
    text = spec.strip()
    if text.lower() in DATASETS:
        return load_dataset(text)
    head = text.partition(":")[0].strip().lower()
    if head == PREFIX:
        from ultrathink.data.synthetic import generate, parse_synthetic_spec  # pydantic models

        return generate(parse_synthetic_spec(text))
    # lazy: the file readers pull in pandas and pyarrow (~80 MB) that synthetic runs never need
    from ultrathink.data.loaders import SUFFIXES, file_suffix, load_file

    if file_suffix(text) or Path(text).is_file():
        return load_file(text)
    raise DataSourceError(
        f"unknown data spec {spec!r}; accepted: an embedded dataset ({', '.join(DATASETS)}), "
        f"'synthetic' or 'synthetic:key=value,...' (e.g. synthetic:n_bars=5000,seed=7), "
        f"or a path to a {'/'.join(SUFFIXES)} file"
    )
