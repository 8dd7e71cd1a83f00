"""CSV/Parquet loaders: clean errors for bad files, exact round-trips."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from ultrathink.data import MarketData, SyntheticConfig, generate, load_csv, load_file
from ultrathink.data.loaders import default_symbol, load_parquet, save_csv, save_parquet
from ultrathink.errors import DataSourceError, DataValidationError

HEADER = "timestamp,open,high,low,close,volume\n"
ROW = "2020-01-01,10,11,9,10.5,100\n"


def assert_same(a: MarketData, b: MarketData) -> None:
    assert a.symbols == b.symbols
    for name in ("ts_ns", "symbol_idx", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), strict=True)
    assert a.sha256() == b.sha256()


@pytest.fixture(scope="module")
def sample() -> MarketData:
    config = SyntheticConfig(n_bars=500, symbols=("AAA", "BBB"), freq="1s", seed=3)
    return generate(config)


@pytest.mark.parametrize("name", ["bars.csv", "bars.csv.gz", "bars.parquet", "bars.pq"])
def test_round_trip_is_exact(tmp_path: Path, sample: MarketData, name: str) -> None:
    path = tmp_path / name
    save = save_parquet if name.endswith(("parquet", "pq")) else save_csv

    save(sample, path)
    loaded = load_file(path)

    assert_same(loaded, sample)
    assert loaded.name == str(path)


@pytest.mark.parametrize("name", ["ns.csv", "ns.parquet"])
def test_round_trip_keeps_nanoseconds(tmp_path: Path, name: str) -> None:
    ts = np.array([1, 1_000_000_001, 1_600_000_000_123_456_789], dtype=np.int64)
    price = np.array([0.1, 1 / 3, 12345.678901234567])
    data = MarketData.from_arrays(ts, ["X"] * 3, price, price, price, price, price)
    path = tmp_path / name

    (save_csv if name.endswith("csv") else save_parquet)(data, path)

    assert_same(load_file(path), data)


def test_csv_timestamps_are_iso_utc(tmp_path: Path, sample: MarketData) -> None:
    path = tmp_path / "bars.csv"

    save_csv(sample, path)

    lines = path.read_text().splitlines()
    assert lines[0] == "timestamp,symbol,open,high,low,close,volume"
    assert lines[1].startswith("2020-01-01T00:00:00Z,AAA,")


def test_file_without_symbol_column_uses_file_name(tmp_path: Path) -> None:
    path = tmp_path / "spy.csv.gz"
    path.write_bytes(gzip.compress((HEADER + ROW).encode()))

    assert load_file(path).symbols == ("SPY",)
    assert load_csv(path, symbol="XYZ").symbols == ("XYZ",)


def test_default_symbol_strips_data_suffixes() -> None:
    assert default_symbol("/a/b/msft.parquet") == "MSFT"
    assert default_symbol("x.y.CSV.GZ") == "X.Y"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("random.csv", np.random.default_rng(0).bytes(4000)),
        ("binary.csv", b"\x00\x01hello,world\n1,2,3\n\xff\xfe"),
        ("quote.csv", b'timestamp,open\n"unterminated\n'),
        ("ragged.csv", (HEADER + ROW + "2020-01-02,1,2,3,4,5,6,7\n").encode()),
        ("random.parquet", np.random.default_rng(1).bytes(4000)),
        ("notgzip.csv.gz", b"this is not gzip"),
    ],
)
def test_garbage_file_gives_data_source_error(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    with pytest.raises(DataSourceError, match=name):
        load_file(path)


def test_text_that_is_not_ohlcv_fails_validation(tmp_path: Path) -> None:
    path = tmp_path / "prose.csv"
    path.write_text("Lorem ipsum dolor sit amet\nconsectetur adipiscing elit\n")

    with pytest.raises(DataValidationError) as info:
        load_file(path)

    assert info.value.rule == "missing_columns"


@pytest.mark.parametrize("name", ["zero.csv", "zero.parquet", "zero.csv.gz"])
def test_zero_byte_file_is_empty(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")

    with pytest.raises(DataValidationError) as info:
        load_file(path)

    assert info.value.rule == "empty"
    assert name in str(info.value)


@pytest.mark.parametrize("content", ["\n\n", HEADER, HEADER + "\n\n"])
def test_blank_or_header_only_csv_is_empty(tmp_path: Path, content: str) -> None:
    path = tmp_path / "blank.csv"
    path.write_text(content)

    with pytest.raises(DataValidationError) as info:
        load_csv(path)

    assert info.value.rule == "empty"


def test_empty_parquet_is_empty(tmp_path: Path, sample: MarketData) -> None:
    path = tmp_path / "empty.parquet"
    sample.to_frame().iloc[:0].to_parquet(path)

    with pytest.raises(DataValidationError) as info:
        load_parquet(path)

    assert info.value.rule == "empty"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="not found"):
        load_file(tmp_path / "nope.csv")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "dir.csv"
    folder.mkdir()

    with pytest.raises(DataSourceError, match="not a file"):
        load_file(folder)


def test_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "bars.txt"
    path.write_text(HEADER + ROW)

    with pytest.raises(DataSourceError, match=r"unknown suffix.*\.parquet"):
        load_file(path)


def test_parquet_with_datetime_index_is_read(tmp_path: Path, sample: MarketData) -> None:
    path = tmp_path / "indexed.parquet"
    sample.for_symbol("AAA").to_frame().set_index("timestamp").to_parquet(path)

    loaded = load_parquet(path)

    np.testing.assert_array_equal(loaded.close, sample.for_symbol("AAA").close)


def test_write_error_is_data_source_error(tmp_path: Path, sample: MarketData) -> None:
    with pytest.raises(DataSourceError, match="cannot write"):
        save_csv(sample, tmp_path / "missing-dir" / "x.csv")


def test_csv_round_trip_quotes_awkward_symbols(tmp_path: Path) -> None:
    ts = np.array([0, 0, 60_000_000_000], dtype=np.int64)
    price = np.array([1.5, 2.5, 3.5])
    data = MarketData.from_arrays(ts, ["A,B", 'Q"X', "A,B"], price, price, price, price, price)
    path = tmp_path / "awkward.csv"

    save_csv(data, path)

    assert_same(load_csv(path), data)
