"""Broken data files: `backtest --data FILE` and `data validate FILE` fail cleanly (exit 2).

The one-line error names the file, the row (when the problem is in a row) and the rule.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HEADER = "timestamp,open,high,low,close,volume\n"
GOOD = "2020-01-01,10,11,9,10.5,100\n"
GARBAGE = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(128, 256)) * 8

# name -> (file content, rule, row or None)
CASES: dict[str, tuple[bytes | None, str, int | None]] = {
    "missing_column": (b"timestamp,open,high,low,volume\n2020-01-01,10,11,9,100\n",
                       "missing_columns", None),
    "nan_close": ((HEADER + GOOD + "2020-01-02,10,11,9,NaN,100\n").encode(), "not_finite", 2),
    "empty_close": ((HEADER + GOOD + GOOD.replace("01-01", "01-02").replace("10.5", "")).encode(),
                    "not_finite", 2),
    "negative_price": ((HEADER + GOOD + GOOD + "2020-01-03,-10,11,9,10.5,100\n").encode(),
                       "non_positive_price", 3),
    "zero_price": ((HEADER + "2020-01-01,10,11,9,0,100\n").encode(), "non_positive_price", 1),
    "high_below_open_close": ((HEADER + GOOD + "2020-01-02,10,10.2,9,10.5,100\n").encode(),
                              "high_below_max_open_close", 2),
    "low_above_open_close": ((HEADER + GOOD + "2020-01-02,10,11,10.2,10.5,100\n").encode(),
                             "low_above_min_open_close", 2),
    "negative_volume": ((HEADER + GOOD + "2020-01-02,10,11,9,10.5,-1\n").encode(),
                        "negative_volume", 2),
    "duplicate_timestamp": ((HEADER + GOOD + "2020-01-02,10,11,9,10.5,100\n" + GOOD).encode(),
                            "duplicate_timestamp", 3),
    "decreasing_timestamp": ((HEADER + "2020-01-03,10,11,9,10.5,100\n" + GOOD).encode(),
                             "decreasing_timestamp", 2),
    "non_numeric": ((HEADER + GOOD + "2020-01-02,10,11,9,$10,100\n").encode(), "non_numeric", 2),
    "bad_timestamp": ((HEADER + GOOD + "yesterday,10,11,9,10.5,100\n").encode(),
                      "unparseable_timestamp", 2),
    "empty_file": (b"", "empty", None),
    "header_only": (HEADER.encode(), "empty", None),
    "garbage_binary": (GARBAGE, "cannot read CSV file", None),
    "nonexistent": (None, "not found", None),
    "huge_line": ((HEADER + GOOD + "," * 3_000_000 + "\n").encode(), "longer than the limit", None),
    "blank_padding": ((HEADER + GOOD + ",,,,,\n" * 5_000).encode(), "blank rows in a row", None),
    "too_many_columns": ((",".join(f"c{i}" for i in range(500)) + "\n").encode(), "columns", None),
    "huge_value": ((HEADER + GOOD + "2020-01-02,10,11,9," + "9" * 500_000 + "x,100\n").encode(),
                   "non_numeric", 2),
}  # fmt: skip


def write_case(tmp_path: Path, name: str) -> Path:
    content = CASES[name][0]
    path = tmp_path / f"{name}.csv"
    if content is not None:
        path.write_bytes(content)
    return path


def assert_clean_error(result, path: Path, rule: str, row: int | None) -> None:
    assert result.code == 2
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err[:2000]
    line = lines[0]
    assert len(line) < len(str(path)) + 600, "quoted input is cut to a readable length"
    assert line.startswith("error: ")
    assert str(path) in line, "the error names the file"
    assert rule in line, "the error names the rule"
    if row is not None:
        assert f"row {row}:" in line, "the error names the row"


@pytest.mark.parametrize("name", list(CASES))
def test_data_validate_rejects_broken_file(cli, tmp_path: Path, name: str) -> None:
    path = write_case(tmp_path, name)
    _, rule, row = CASES[name]

    result = cli("data", "validate", str(path))

    assert_clean_error(result, path, rule, row)
    assert result.out == ""


@pytest.mark.parametrize("name", list(CASES))
def test_backtest_rejects_broken_file(cli, tmp_path: Path, name: str) -> None:
    path = write_case(tmp_path, name)
    _, rule, row = CASES[name]
    db = tmp_path / "store.db"

    result = cli("backtest", "--json", "--db", str(db), "--data", str(path))

    assert_clean_error(result, path, rule, row)
    assert result.out == ""
    assert not db.exists(), "nothing is stored for data that cannot be loaded"


@pytest.mark.parametrize("suffix", [".parquet", ".csv.gz"])
def test_garbage_in_other_formats_is_a_clean_error(cli, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(GARBAGE)

    result = cli("data", "validate", str(path))

    assert result.code == 2
    assert "Traceback" not in result.err
    assert str(path) in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_directory_as_data_is_a_clean_error(cli, tmp_path: Path) -> None:
    folder = tmp_path / "folder.csv"
    folder.mkdir()

    result = cli("data", "validate", str(folder))

    assert result.code == 2
    assert "not a file" in result.err


def test_valid_file_passes_validation(cli, tmp_path: Path) -> None:
    path = tmp_path / "ok.csv"
    path.write_text(HEADER + GOOD + GOOD.replace("01-01", "01-02"), encoding="utf-8")

    result = cli("data", "validate", str(path))

    assert result.code == 0
    assert result.out.startswith(f"OK: {path}: 2 bars, 1 symbol(s)")


def test_validation_error_shows_values_as_plain_numbers(cli, tmp_path: Path) -> None:
    path = write_case(tmp_path, "negative_price")

    result = cli("data", "validate", str(path))

    assert result.code == 2
    assert "open=-10.0" in result.err
    assert "np.float64" not in result.err


def test_ragged_csv_error_is_one_line(cli, tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("a\n1\n1,2,3\n", encoding="utf-8")

    result = cli("data", "validate", str(path))

    assert result.code == 2
    assert str(path) in result.err
    assert len(result.err.strip().splitlines()) == 1, result.err


def test_broken_file_in_a_real_subprocess(cli_subprocess, tmp_path: Path) -> None:
    path = write_case(tmp_path, "high_below_open_close")

    result = cli_subprocess("backtest", "--no-store", "--data", str(path))

    assert_clean_error(result, path, "high_below_max_open_close", 2)
