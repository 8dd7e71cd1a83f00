"""Validation rules: each rule reports its id, the first offending row and the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ultrathink.data import load_csv, validate_frame
from ultrathink.data.validate import RULES
from ultrathink.errors import DataValidationError

HEADER = "timestamp,open,high,low,close,volume"
GOOD_ROWS = [
    "2020-01-01T00:00:00Z,10,11,9,10.5,100",
    "2020-01-01T00:01:00Z,10.5,11,10,10.8,120",
    "2020-01-01T00:02:00Z,10.8,11.2,10.6,11,90",
    "2020-01-01T00:03:00Z,11,11.5,10.9,11.4,80",
    "2020-01-01T00:04:00Z,11.4,11.6,11.1,11.2,70",
]


def write_csv(tmp_path: Path, rows: list[str], header: str = HEADER) -> Path:
    path = tmp_path / "bars.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def with_row(row_number: int, line: str) -> list[str]:
    rows = list(GOOD_ROWS)
    rows[row_number - 1] = line
    return rows


def expect_rule(path: Path, rule: str, row: int | None) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        load_csv(path)
    error = info.value
    assert (error.rule, error.row) == (rule, row)
    assert str(path) in str(error)
    return error


ROW_CASES = [
    ("unparseable_timestamp", "not-a-date,10.8,11.2,10.6,11,90"),
    ("unparseable_timestamp", ",10.8,11.2,10.6,11,90"),
    ("non_numeric", "2020-01-01T00:02:00Z,10.8,11.2,10.6,abc,90"),
    ("not_finite", "2020-01-01T00:02:00Z,10.8,inf,10.6,11,90"),
    ("not_finite", "2020-01-01T00:02:00Z,10.8,11.2,10.6,,90"),
    ("not_finite", "2020-01-01T00:02:00Z,10.8,11.2,10.6,11,NaN"),
    ("non_positive_price", "2020-01-01T00:02:00Z,10.8,11.2,0,11,90"),
    ("non_positive_price", "2020-01-01T00:02:00Z,-1,11.2,-2,11,90"),
    ("high_below_max_open_close", "2020-01-01T00:02:00Z,10.8,10.9,10.6,11,90"),
    ("low_above_min_open_close", "2020-01-01T00:02:00Z,10.8,11.2,10.9,11,90"),
    ("negative_volume", "2020-01-01T00:02:00Z,10.8,11.2,10.6,11,-1"),
    ("duplicate_timestamp", "2020-01-01T00:01:00Z,10.8,11.2,10.6,11,90"),
    ("decreasing_timestamp", "2019-12-31T23:59:00Z,10.8,11.2,10.6,11,90"),
]


@pytest.mark.parametrize(("rule", "line"), ROW_CASES)
def test_rule_reports_id_row_and_file(tmp_path: Path, rule: str, line: str) -> None:
    path = write_csv(tmp_path, with_row(3, line))

    expect_rule(path, rule, 3)


def test_every_rule_has_a_test() -> None:
    tested = {rule for rule, _ in ROW_CASES} | {"missing_columns", "empty", "missing_symbol"}

    assert tested == set(RULES)


def test_missing_columns_lists_missing_and_found(tmp_path: Path) -> None:
    path = write_csv(tmp_path, ["2020-01-01,1,1,1,1"], header="Date,open,high,low,close")

    error = expect_rule(path, "missing_columns", None)

    assert "'volume'" in error.detail
    assert "'Date'" in error.detail


def test_header_only_file_is_empty(tmp_path: Path) -> None:
    expect_rule(write_csv(tmp_path, []), "empty", None)


def test_missing_symbol(tmp_path: Path) -> None:
    rows = [f"AAA,{r}" for r in GOOD_ROWS]
    rows[1] = "," + GOOD_ROWS[1]

    expect_rule(write_csv(tmp_path, rows, header="symbol," + HEADER), "missing_symbol", 2)


def test_first_offending_row_is_reported(tmp_path: Path) -> None:
    rows = list(GOOD_ROWS)
    rows[1] = "2020-01-01T00:01:00Z,10.5,11,10,10.8,-5"
    rows[3] = "2020-01-01T00:03:00Z,11,11.5,10.9,11.4,-6"

    error = expect_rule(write_csv(tmp_path, rows), "negative_volume", 2)

    assert "-5" in error.detail


def test_rules_are_checked_in_order(tmp_path: Path) -> None:
    rows = list(GOOD_ROWS)
    rows[0] = "2020-01-01T00:00:00Z,10,11,9,10.5,-1"
    rows[4] = "garbage,11.4,11.6,11.1,11.2,70"

    expect_rule(write_csv(tmp_path, rows), "unparseable_timestamp", 5)


def test_blank_line_keeps_file_row_numbers(tmp_path: Path) -> None:
    rows = [*GOOD_ROWS[:2], "", *GOOD_ROWS[2:]]

    expect_rule(write_csv(tmp_path, rows), "unparseable_timestamp", 3)


def test_duplicates_and_order_are_per_symbol(tmp_path: Path) -> None:
    rows = [f"{s},{r}" for r in GOOD_ROWS for s in ("BBB", "AAA")]

    data = load_csv(write_csv(tmp_path, rows, header="symbol," + HEADER))

    assert data.symbols == ("AAA", "BBB")
    assert len(data) == 10


def test_decreasing_is_checked_in_file_order_per_symbol(tmp_path: Path) -> None:
    rows = [f"AAA,{GOOD_ROWS[1]}", f"BBB,{GOOD_ROWS[0]}", f"AAA,{GOOD_ROWS[0]}"]

    expect_rule(write_csv(tmp_path, rows, header="symbol," + HEADER), "decreasing_timestamp", 3)


def test_non_adjacent_duplicate_is_found(tmp_path: Path) -> None:
    rows = [GOOD_ROWS[0], GOOD_ROWS[1], GOOD_ROWS[2], GOOD_ROWS[0]]

    error = expect_rule(write_csv(tmp_path, rows), "duplicate_timestamp", 4)

    assert "row 1" in error.detail


def frame(**overrides: object) -> pd.DataFrame:
    columns: dict[str, object] = {
        "timestamp": ["2020-01-01", "2020-01-02"],
        "open": [1.0, 2.0],
        "high": [2.0, 3.0],
        "low": [0.5, 1.5],
        "close": [1.5, 2.5],
        "volume": [10, 20],
    }
    columns.update(overrides)
    return pd.DataFrame(columns)


def test_column_names_are_case_insensitive_and_aliases_work() -> None:
    df = frame().rename(columns={"timestamp": "Date", "open": "OPEN", "close": "Close"})

    data = validate_frame(df.assign(extra=1), "x", default_symbol="SPX")

    assert data.symbols == ("SPX",)
    assert data.start_ns == pd.Timestamp("2020-01-01", tz="UTC").value
    np.testing.assert_array_equal(data.close, [1.5, 2.5])


JAN_1 = "2020-01-01T00:00:00+00:00"
JAN_2 = "2020-01-02T00:00:00+00:00"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["2020-01-01", "2020-01-02"], [JAN_1, JAN_2]),
        (["2020-01-01T02:00+02:00", "2020-01-02 00:00"], [JAN_1, JAN_2]),
        (["01/01/2020", "01/02/2020"], [JAN_1, JAN_2]),
        ([1577836800, 1577923200], [JAN_1, JAN_2]),
        ([1577836800000, 1577923200000], [JAN_1, JAN_2]),
        (pd.to_datetime(["2020-01-01", "2020-01-02"]), [JAN_1, JAN_2]),
        (pd.to_datetime(["2020-01-01", "2020-01-02"], utc=True), [JAN_1, JAN_2]),
    ],
)
def test_timestamps_become_utc_nanoseconds(values: object, expected: list[str]) -> None:
    data = validate_frame(frame(timestamp=values), "x")

    assert data.ts_ns.tolist() == [pd.Timestamp(e).value for e in expected]


def test_nanosecond_timestamps_are_kept() -> None:
    values = ["2020-01-01T00:00:00.000000001Z", "2020-01-01T00:00:00.000000002Z"]

    data = validate_frame(frame(timestamp=values), "x")

    assert np.diff(data.ts_ns).tolist() == [1]


def test_symbols_are_stripped_and_sorted() -> None:
    df = frame(timestamp=["2020-01-01"] * 2, symbol=[" BBB", "AAA "])

    data = validate_frame(df, "x")

    assert data.symbols == ("AAA", "BBB")
    np.testing.assert_array_equal(data.open, [2.0, 1.0])


def test_out_of_range_timestamp_is_unparseable() -> None:
    with pytest.raises(DataValidationError) as info:
        validate_frame(frame(timestamp=["2020-01-01", "3000-01-01"]), "x")

    assert (info.value.rule, info.value.row) == ("unparseable_timestamp", 2)


def test_validates_a_million_rows() -> None:
    n = 1_000_000
    ts = np.arange(n, dtype=np.int64) * 60_000_000_000
    price = np.full(n, 100.0)
    df = pd.DataFrame({"timestamp": ts // 10**9, "open": price, "high": price, "low": price})

    data = validate_frame(df.assign(close=price, volume=1.0), "big")

    assert len(data) == n
    assert data.end_ns == int(ts[-1])


@pytest.mark.parametrize("value", ["now", "today", "12:30", "Jan 5"])
def test_clock_relative_timestamps_are_rejected(value: str) -> None:
    with pytest.raises(DataValidationError) as info:
        validate_frame(frame(timestamp=["2020-01-01", value]), "x")

    assert (info.value.rule, info.value.row) == ("unparseable_timestamp", 2)


def test_row_numbers_are_positions_even_with_repeated_index_labels() -> None:
    df = frame(volume=[1, -1]).set_axis([7, 7])

    with pytest.raises(DataValidationError) as info:
        validate_frame(df, "x")

    assert (info.value.rule, info.value.row) == ("negative_volume", 2)
