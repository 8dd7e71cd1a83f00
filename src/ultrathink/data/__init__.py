"""Market data: embedded datasets, CSV/Parquet loaders, validation, synthetic generator."""

from ultrathink.data.embedded import DATASETS, DEFAULT_DATASET, load_dataset
from ultrathink.data.frame import MarketData
from ultrathink.data.loaders import load_csv, load_file, load_parquet, save_csv, save_parquet
from ultrathink.data.sources import load_data
from ultrathink.data.synthetic import SyntheticConfig, generate, parse_synthetic_spec
from ultrathink.data.validate import validate_frame

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
