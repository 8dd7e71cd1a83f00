"""File readers under hostile input: early refusal, one-line bounded errors, bounded memory."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ultrathink.data import MarketData, load_csv, load_file, validate_frame
from ultrathink.data.loaders import BLOCK_BYTES, MAX_BLANK_ROWS, MAX_COLUMNS, save_csv
from ultrathink.errors import DataError, DataSourceError, DataValidationError

HEADER = "timestamp,open,high,low,close,volume\n"
ROW = "2020-01-01T00:00:00Z,10,11,9,10.5,100\n"
MAX_ERROR_CHARS = 600  # besides the path: rule, 300 quoted characters, the fix


def refusal(path: Path, kind: type[DataError] = DataSourceError) -> str:
    with pytest.raises(kind) as info:
        load_file(path)
    message = str(info.value)
    assert "\n" not in message
    assert len(message) - len(str(path)) < MAX_ERROR_CHARS, message[:2000]
    assert str(path) in message
    return message


def minutes(n_rows: int, start: int = 0) -> list[str]:
    stamps = pd.date_range("2020-01-01", periods=start + n_rows, freq="min", tz="UTC")[start:]
    return [f"{t:%Y-%m-%dT%H:%M:%SZ},10,11,9,10.5,100\n" for t in stamps]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("huge_line.csv", HEADER + ROW + "," * (2 * BLOCK_BYTES) + "\n", "longer than the limit"),
        ("huge_value.csv", HEADER + "x" * (3 * BLOCK_BYTES) + ",1,1,1,1,1\n", "longer than"),
        ("wide_header.csv", "," * 200_000 + "\n" + ROW, "header (line 1) is longer"),
        ("many_columns.csv", ",".join(f"c{i}" for i in range(MAX_COLUMNS + 1)) + "\n", "columns"),
        ("sparse.csv", HEADER + ",,,,,\n" * (MAX_BLANK_ROWS + 1), "blank rows in a row from row 1"),
        ("blank_lines.csv", HEADER + ROW + "\n" * 50_000, "blank rows in a row from row 2"),
        ("nul.csv", HEADER + ROW + "\x00" * 100, "binary content (a NUL byte"),
        ("latin1.csv", "timestamp,open,high,low,close,volume,r\xe9sum\xe9\n", "not UTF-8"),
        ("ragged.csv", HEADER + ROW + "2020-01-02," + "7," * 5000 + "\n", "row 2 has 5002 fields"),
        ("short.csv", HEADER + ROW + ROW + "2020-01-02,1,2,3\n", "row 3 has 4 fields where the"),
    ],
)
def test_malformed_csv_is_refused_with_a_short_line(
    tmp_path: Path, name: str, content: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content.encode("latin-1" if "latin1" in name else "utf-8"))

    assert expected in refusal(path)


def test_gzip_bomb_of_commas_is_refused_in_its_first_block(tmp_path: Path) -> None:
    path = tmp_path / "bomb.csv.gz"
    path.write_bytes(gzip.compress(HEADER.encode() + b"," * 50_000_000))  # 50 KB on disk

    assert "longer than the limit" in refusal(path)


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        ("2020-01-01," + "9" * 100_000 + "x,11,9,10.5,100", "non_numeric"),
        ("y" * 100_000 + ",10,11,9,10.5,100", "unparseable_timestamp"),
    ],
)
def test_long_bad_values_are_quoted_cut_to_300_characters(
    tmp_path: Path, line: str, rule: str
) -> None:
    path = tmp_path / "long.csv"
    path.write_text(HEADER + ROW + line + "\n")

    message = refusal(path, DataValidationError)

    assert f"row 2: {rule}" in message
    assert "… (99,7" in message  # what was cut is counted


def test_missing_columns_error_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "names.csv"
    path.write_text(
        ",".join(f"column_{i}_{'n' * 200}" for i in range(60)) + "\n" + "1," * 59 + "1\n"
    )

    assert "missing columns" in refusal(path, DataValidationError)


def test_parquet_missing_columns_error_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "wide.parquet"
    pd.DataFrame({f"c{i}_{'n' * 100}": [1.0] for i in range(200)}).to_parquet(path)

    message = refusal(path, DataValidationError)

    assert "missing columns" in message
    assert "has 200 column(s)" in message


@pytest.mark.parametrize("content", [HEADER.strip(), HEADER.strip() + ",symbol"])
def test_header_without_a_line_end_is_empty(tmp_path: Path, content: str) -> None:
    path = tmp_path / "header.csv"
    path.write_text(content)

    with pytest.raises(DataValidationError) as info:
        load_csv(path)

    assert info.value.rule == "empty"


def test_up_to_the_limit_of_trailing_blank_rows_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "padded.csv"
    path.write_text(HEADER + ROW + ",,,,,\n" * 10 + "\n" * (MAX_BLANK_ROWS - 10))

    assert len(load_csv(path)) == 1


def test_blank_rows_before_more_data_are_refused_at_the_first(tmp_path: Path) -> None:
    path = tmp_path / "gap.csv"
    path.write_text(HEADER + "".join(minutes(3)) + "\n" * 5 + "".join(minutes(2, start=3)))

    with pytest.raises(DataValidationError) as info:
        load_csv(path)

    assert (info.value.rule, info.value.row) == ("unparseable_timestamp", 4)


# enough rows for many 1 MiB blocks: the streamed reader must number and merge them right
N_MANY = 150_000


@pytest.fixture(scope="module")
def many_rows() -> list[str]:
    return minutes(N_MANY)


@pytest.mark.parametrize(
    ("row", "replacement", "rule"),
    [
        (140_001, "2020-01-01T00:00:00Z,10,11,9,10.5,100\n", "duplicate_timestamp"),
        (120_000, "2020-01-01T00:00:00Z,10,11,9,abc,100\n", "non_numeric"),
        (100_000, "someday,10,11,9,10.5,100\n", "unparseable_timestamp"),
        (90_000, "2021-01-01T00:00:00Z,10,11,9,10.5,-1\n", "negative_volume"),
    ],
)
def test_row_numbers_hold_across_blocks(
    tmp_path: Path, many_rows: list[str], row: int, replacement: str, rule: str
) -> None:
    rows = list(many_rows)
    rows[row - 1] = replacement
    path = tmp_path / "many.csv"
    path.write_text(HEADER + "".join(rows))
    assert path.stat().st_size > 4 * BLOCK_BYTES

    with pytest.raises(DataValidationError) as info:
        load_csv(path)

    assert (info.value.rule, info.value.row) == (rule, row)


def test_symbols_across_blocks_get_one_code_each(tmp_path: Path) -> None:
    n_bars = 60_000  # per symbol; rows interleave BBB, AAA, CCC
    ts = np.arange(n_bars, dtype=np.int64) * 60_000_000_000
    price = np.linspace(10, 20, n_bars)
    symbols = np.repeat(np.array(["BBB", "AAA", "CCC"])[None, :], n_bars, axis=0).ravel()
    data = MarketData.from_arrays(np.repeat(ts, 3), symbols, *[np.repeat(price, 3)] * 5)
    path = tmp_path / "three.csv.gz"
    save_csv(data, path)

    loaded = load_csv(path)

    assert loaded.symbols == ("AAA", "BBB", "CCC")
    assert loaded.sha256() == data.sha256()


# the CSV reader casts cells with Arrow; the reader it replaced (pandas.read_csv, then
# validate_frame) is the reference for what each cell means
CELLS = [
    "2020-01-02T09:30:00Z,10,11,9,10.5,100",
    "2020-01-02T09:30:00.123456789Z,10,11,9,10.5,100",
    "2020-01-02T10:30:00+01:00,10,11,9,10.5,100",
    "2020-01-02,10,11,9,10.5,100",
    "2020-01-02 09:30:00,10,11,9,10.5,100",
    "2020-01-02T09:30,10,11,9,10.5,100",
    "01/02/2020,10,11,9,10.5,100",
    "1577957400,10,11,9,10.5,100",
    "1577957400.5,10,11,9,10.5,100",
    "1577957400000,10,11,9,10.5,100",
    "3000-01-01,10,11,9,10.5,100",
    "2016-12-31T23:59:60Z,10,11,9,10.5,100",
    "2020-02-30,10,11,9,10.5,100",
    "now,10,11,9,10.5,100",
    ",10,11,9,10.5,100",
    *(
        f'2020-01-02,1,20,0.5,"{number}",100'
        for number in ["10", "10.5", " 10", "1e1", "+10", ".5", "10.", "nan", "NaN", "inf"]
    ),
    *(f'2020-01-02,1,20,0.5,"{number}",100' for number in ["1,5", "$10", "", "-0", "True"]),
    # several rows: one column type for the whole file, as pandas inferred it
    "1577836800000,1,2,0.5,1.5,10\n,1,2,0.5,1.5,10",
    "1577836800000,1,2,0.5,1.5,10\nNA,1,2,0.5,1.5,10",
    "1577836800,1,2,0.5,1.5,10\n1577836800.5,1,2,0.5,1.5,10",
    "2020-01-01,1,2,0.5,1.5,10\n2020-01-02T00:00:00Z,1,2,0.5,1.5,10",
]


def outcome(path: Path, reader: object) -> object:
    try:
        data = reader(path)  # type: ignore[operator]
    except DataValidationError as error:
        return (error.rule, error.row)
    return (data.ts_ns.tolist(), data.close.tolist(), data.symbols)


def pandas_reader(path: Path) -> MarketData:
    frame = pd.read_csv(path, skip_blank_lines=False, low_memory=False)
    return validate_frame(frame, str(path), default_symbol="ONE")


@pytest.mark.parametrize("line", CELLS)
def test_csv_cells_mean_what_they_meant_to_pandas(tmp_path: Path, line: str) -> None:
    path = tmp_path / "one.csv"
    path.write_text(f"{HEADER}{line}\n")

    assert outcome(path, load_csv) == outcome(path, pandas_reader)


LOAD = """
import sys
from ultrathink.data import load_file
try:
    load_file(sys.argv[1])
except Exception as error:
    print(type(error).__name__, str(error)[:200])
"""
# the parent of the loading process reports its peak: RUSAGE_CHILDREN of this test process
# would also count every earlier subprocess of the session
MEASURE = """
import json, resource, subprocess, sys
load = subprocess.run([sys.executable, "-c", sys.argv[1], sys.argv[2]], capture_output=True)
peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"peak_mib": peak_mib, "out": load.stdout.decode(), "err": load.stderr.decode()}))
"""


def peak_rss_mib(path: Path) -> tuple[float, str]:
    """Peak RSS of a fresh interpreter that loads ``path``, measured by its own parent."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, LOAD, str(path)], capture_output=True, text=True, check=True
    )
    report = json.loads(done.stdout)
    assert report["err"] == "", report["err"]
    return report["peak_mib"], report["out"]


def write_malformed(path: Path, kind: str, size_bytes: int) -> None:
    with path.open("wb") as out:
        if kind == "garbage":
            out.write(np.random.default_rng(0).bytes(size_bytes))
            return
        out.write(HEADER.encode())
        if kind == "huge_lines":
            line = b"," * (size_bytes // 5) + b"\n"
            out.write(line * 5)
        elif kind == "sparse":
            out.write(b",,,,,\n" * (size_bytes // 6))
        elif kind == "all_rows_then_duplicate":  # every row is read before the order check
            out.write(ROW.encode() * (size_bytes // len(ROW)))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["garbage", "huge_lines", "sparse", "all_rows_then_duplicate"])
def test_reading_a_50_mb_malformed_file_has_bounded_memory(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.csv"
    write_malformed(path, kind, 50_000_000)
    size_mib = path.stat().st_size / 2**20

    peak_mib, out = peak_rss_mib(path)

    assert out.startswith(("DataSourceError", "DataValidationError")), out
    assert peak_mib < 10 * size_mib + 300, f"{kind}: peak {peak_mib:.0f} MiB for {size_mib:.0f} MiB"


@pytest.mark.parametrize("n_rows", [3, N_MANY])
def test_loaded_columns_are_writable_arrays_of_their_own(
    tmp_path: Path, many_rows: list[str], n_rows: int
) -> None:
    path = tmp_path / "own.csv"
    path.write_text(HEADER + "".join(many_rows[:n_rows]))

    data = load_csv(path)

    for name in ("ts_ns", "symbol_idx", "open", "high", "low", "close", "volume"):
        assert getattr(data, name).flags.writeable, name
