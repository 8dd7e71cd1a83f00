"""Embedded datasets shipped in ``ultrathink/data/datasets`` (copied from ``arch``)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from importlib.resources import files

import numpy as np
import pandas as pd
import pytest

from ultrathink.data import DATASETS, DEFAULT_DATASET, embedded, load_dataset, validate_frame
from ultrathink.data.loaders import load_csv
from ultrathink.errors import DataSourceError

# MarketData.sha256() of the bars as loaded through arch 8.0.0 (arch.data.<name>.load()),
# computed before the data moved into the package: the shipped files must give the same bits
ARCH_SHA256 = {
    "sp500": "9e4e6af4e7da91c63becd15858a622a90dc0fe3b5b55d07df614c5002590765a",
    "nasdaq": "5b0f54a0d91cdd81305fcae17d613103ee2ff9969464007a49bb0865e7dc8ce4",
}
# (row, ts_ns, open, high, low, close, volume) as arch returned them
ARCH_SPOT_VALUES = {
    "sp500": [
        (0, 915408000000000000, 1229.22998, 1248.810059, 1219.099976, 1228.099976, 877000000.0),
        (2500, 1228867200000000000, 892.169983, 908.27002, 885.450012, 899.23999, 5942130000.0),
        (-1, 1546214400000000000, 2498.939941, 2509.23999, 2482.820068, 2506.850098, 3.44287e9),
    ],
    "nasdaq": [
        (0, 915408000000000000, 2207.540039, 2233.570068, 2192.679932, 2208.050049, 936660000.0),
        (2500, 1228867200000000000, 1563.660034, 1584.160034, 1542.079956, 1565.47998, 1.9556e9),
        (-1, 1546214400000000000, 6649.52002, 6659.959961, 6570.060059, 6635.279785, 2.09856e9),
    ],
}
PRICES = ("open", "high", "low", "close", "volume")


@pytest.mark.parametrize(("name", "symbol"), [("sp500", "SP500"), ("nasdaq", "NASDAQ")])
def test_dataset_shape_and_dates(name: str, symbol: str) -> None:
    data = load_dataset(name)

    assert len(data) == 5031
    assert data.symbols == (symbol,)
    assert data.start_ns == pd.Timestamp("1999-01-04", tz="UTC").value
    assert data.end_ns == pd.Timestamp("2018-12-31", tz="UTC").value
    assert data.name == f"embedded:{name}"


@pytest.mark.parametrize("name", sorted(ARCH_SHA256))
def test_bars_are_bit_identical_to_what_arch_returned(name: str) -> None:
    data = load_dataset(name)

    assert data.sha256() == ARCH_SHA256[name]
    for row, ts_ns, *values in ARCH_SPOT_VALUES[name]:
        assert int(data.ts_ns[row]) == ts_ns
        assert [float(getattr(data, c)[row]) for c in PRICES] == values


def test_close_is_raw_close_not_adjusted() -> None:
    # arch's sp500.csv.gz: 1999-01-04 Close 1228.099976, 2018-12-31 Close 2506.850098 (raw
    # closes; Adj Close equals Close for an index, so the raw value is the one to pin)
    close = load_dataset("sp500").close

    assert (close[0], close[-1]) == (1228.099976, 2506.850098)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_dataset_passes_validation_again(name: str) -> None:
    data = load_dataset(name)

    again = validate_frame(data.to_frame(), "again")

    assert again.sha256() == data.sha256()


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_shipped_file_reads_the_same_through_the_csv_loader(name: str) -> None:
    path = files("ultrathink.data") / "datasets" / f"{name}.csv.gz"

    assert load_csv(str(path)).sha256() == load_dataset(name).sha256()


def test_readme_records_the_checksums_the_loader_checks() -> None:
    folder = files("ultrathink.data") / "datasets"
    readme = (folder / "README.md").read_text(encoding="utf-8")

    for name, file in embedded._FILES.items():
        actual = hashlib.sha256((folder / file.name).read_bytes()).hexdigest()
        assert actual == file.sha256, f"{file.name} changed: update embedded.py and README.md"
        assert re.search(rf"`{re.escape(file.name)}` \| [\d,]+ \| `{actual}`", readme)
        assert ARCH_SHA256[name] in readme


def test_damaged_file_is_refused_with_its_checksums() -> None:
    wrong = embedded._File("sp500.csv.gz", "SP500", "0" * 64)

    with pytest.raises(DataSourceError, match=r"sp500\.csv\.gz.*sha256 fbe1b3.*expected 0{64}"):
        embedded._read_verified(wrong)


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


LOAD_AND_LIST_MODULES = """
import json, sys
from ultrathink.data.embedded import load_dataset
data = load_dataset("sp500")
print(json.dumps({"n_bars": len(data), "modules": sorted(sys.modules)}))
"""


@pytest.fixture(scope="module")
def modules_after_loading() -> set[str]:
    # a fresh interpreter: this test process has imported pandas, arch may be installed
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_LIST_MODULES], capture_output=True, text=True, check=True
    )
    report = json.loads(result.stdout)
    assert report["n_bars"] == 5031
    return {name.partition(".")[0] for name in report["modules"]}


def test_loading_does_not_import_arch_scipy_or_statsmodels(modules_after_loading: set) -> None:
    assert not {"arch", "scipy", "statsmodels", "matplotlib", "sklearn"} & modules_after_loading


def test_loading_needs_numpy_only(modules_after_loading: set) -> None:
    # start-up path of every backtest: pandas and pyarrow cost ~0.5 s and ~60 MB to import
    assert "numpy" in modules_after_loading
    assert not {"pandas", "pyarrow"} & modules_after_loading


def test_loaded_columns_are_contiguous_float64() -> None:
    data = load_dataset("nasdaq")

    for column in PRICES:
        array = getattr(data, column)
        assert array.dtype == np.float64
        assert array.flags.c_contiguous
