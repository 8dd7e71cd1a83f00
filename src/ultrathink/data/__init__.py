"""Market data: embedded datasets, CSV/Parquet loaders, validation, synthetic generator.

The file readers and the validator load pandas and pyarrow (~80 MB of RSS); they are
imported on first use, so a synthetic or embedded run pays for them only when it needs them.
"""

from __future__ import annotations

import importlib
from typing import Any

from ultrathink.data.embedded import DATASETS, DEFAULT_DATASET, load_dataset
from ultrathink.data.frame import MarketData
from ultrathink.data.sources import load_data

_LAZY = {
    "SyntheticConfig": "ultrathink.data.synthetic",
    "generate": "ultrathink.data.synthetic",
    "parse_synthetic_spec": "ultrathink.data.synthetic",
    "load_csv": "ultrathink.data.loaders",
    "load_file": "ultrathink.data.loaders",
    "load_parquet": "ultrathink.data.loaders",
    "save_csv": "ultrathink.data.loaders",
    "save_parquet": "ultrathink.data.loaders",
    "validate_frame": "ultrathink.data.validate",
}

__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "MarketData",
    "SyntheticConfig",
    "generate",
    "load_csv",
    "load_data",
    "load_dataset",
    "load_file",
    "load_parquet",
    "parse_synthetic_spec",
    "save_csv",
    "save_parquet",
    "validate_frame",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ultrathink.data' has no attribute {name!r}")
