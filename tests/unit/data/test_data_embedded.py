"""Embedded datasets from the ``arch`` package."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ultrathink.data import DATASETS, DEFAULT_DATASET, load_dataset, validate_frame
from ultrathink.errors import DataSourceError


@pytest.mark.parametrize(("name", "symbol"), [("sp500", "SP500"), ("nasdaq", "NASDAQ")])
def test_dataset_shape_and_dates(name: str, symbol: str) -> None:
    data = load_dataset(name)

    assert len(data) == 5031
    assert data.symbols == (symbol,)
    assert data.start_ns == pd.Timestamp("1999-01-04", tz="UTC").value
    assert data.end_ns == pd.Timestamp("2018-12-31", tz="UTC").value
    assert data.name == f"embedded:{name}"


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_dataset_passes_validation_again(name: str) -> None:
    data = load_dataset(name)

    again = validate_frame(data.to_frame(), "again")

    assert again.sha256() == data.sha256()


def test_close_is_raw_close_not_adjusted() -> None:
    from arch.data import sp500

    raw = sp500.load()

    np.testing.assert_array_equal(load_dataset("sp500").close, raw["Close"].to_numpy())


def test_datasets_are_cached_and_read_only() -> None:
    data = load_dataset("SP500")

    assert load_dataset("sp500") is data
    with pytest.raises(ValueError, match="read-only"):
        data.close[0] = 1.0


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(DataSourceError, match=r"unknown dataset 'dax'.*nasdaq.*sp500"):
        load_dataset("dax")


def test_default_dataset_exists() -> None:
    assert DEFAULT_DATASET in DATASETS
