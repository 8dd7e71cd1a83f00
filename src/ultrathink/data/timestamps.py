"""Timestamp parsing and formatting: anything date-like to UTC int64 nanoseconds and back.

Accepted input: datetime columns (naive = UTC, aware = converted), ISO 8601 strings and dates
(``1999-01-04`` is midnight UTC), other date strings whose format pandas can infer from the
first value, and integer epoch timestamps whose unit (s, ms, us or ns) follows from their
magnitude. ``timestamps_from_text`` parses an Arrow text column in C where that is exact.
"""

from __future__ import annotations

import warnings
from typing import Literal, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_INT64_MAX = np.iinfo(np.int64).max
_CLOCK_WORDS = ("now", "today")
# largest absolute epoch value (per unit) still read as that unit; beyond it, the next unit
_EPOCH_UNITS: tuple[tuple[float, int], ...] = (
    (1e11, 1_000_000_000),
    (1e14, 1_000_000),
    (1e17, 1_000),
    (float("inf"), 1),
)


def parse_timestamps(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Parse a column of timestamps to UTC nanoseconds.

    Parameters
    ----------
    column : pandas.Series
        Datetimes, date strings or integer epoch values.

    Returns
    -------
    ts_ns : numpy.ndarray
        int64 UTC nanoseconds (undefined where ``bad``).
    bad : numpy.ndarray
        bool mask of values that are missing, unreadable or outside 1677..2262.
    """
    column = column.reset_index(drop=True)  # positional alignment even for repeated labels
    if pd.api.types.is_bool_dtype(column):
        return np.zeros(len(column), dtype=np.int64), np.ones(len(column), dtype=bool)
    if pd.api.types.is_numeric_dtype(column):
        return _from_epoch(column)
    if isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(column):
        return _to_ns(pd.to_datetime(column, utc=True))
    return _to_ns(_parse_strings(column))


def _parse_strings(column: pd.Series) -> pd.Series:
    try:
        parsed = pd.to_datetime(column, utc=True, format="ISO8601", errors="coerce")
    except (TypeError, ValueError):
        parsed = pd.Series(pd.NaT, index=column.index, dtype="datetime64[ns, UTC]")
    parsed = parsed.mask(_clock_words(column))
    failed = parsed.isna().to_numpy() & column.notna().to_numpy()
    if failed.any():
        retry = _parse_other_formats(column[failed])
        unit = _finest_unit(parsed, retry)
        parsed = parsed.dt.as_unit(unit)
        parsed.loc[failed] = retry.dt.as_unit(unit)
    return parsed


def _clock_words(column: pd.Series) -> np.ndarray:
    # pandas reads "now"/"today" as the wall clock: never valid market data
    try:
        lengths = column.str.len()
    except AttributeError:
        lengths = column.astype(str).str.len()
    short = np.flatnonzero(lengths.to_numpy(dtype=np.float64, na_value=np.inf) < 8)
    mask = np.zeros(len(column), dtype=bool)
    if short.shape[0]:
        words = column.iloc[short].astype(str).str.strip().str.lower()
        mask[short[words.isin(_CLOCK_WORDS).to_numpy()]] = True
    return mask


def _parse_other_formats(subset: pd.Series) -> pd.Series:
    # only strings with a 4-digit year: dateutil fills a missing date from today's clock
    has_year = subset.astype(str).str.contains(r"\d{4}", regex=True).to_numpy()
    empty = pd.Series(pd.NaT, index=subset.index, dtype="datetime64[ns, UTC]")
    if not has_year.any():
        return empty
    with warnings.catch_warnings():
        # pandas warns when it cannot infer one format and parses value by value
        warnings.simplefilter("ignore", UserWarning)
        try:
            parsed = pd.to_datetime(subset[has_year], utc=True, errors="coerce")
        except (TypeError, ValueError):
            return empty
    return parsed.reindex(subset.index)


_Unit = Literal["s", "ms", "us", "ns"]
# pandas.read_csv's default NA words (pandas._libs.parsers.STR_NA_VALUES)
_NA_TEXT = pa.array([
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
])  # fmt: skip


def timestamps_from_text(array: pa.Array) -> np.ndarray | pd.Series:
    """Read an Arrow text column of timestamps the fast way where that is exact.

    Returns ``datetime64[ns]`` UTC values when Arrow's ISO 8601 parser takes every value (all
    with a zone offset, or all without: naive = UTC); else epoch numbers as an int64 or
    float64 Series (pandas' NA words missing), as ``pandas.read_csv`` would infer them; else
    the text as a Series. ``parse_timestamps`` reads the two Series forms.
    """
    for zone in ("UTC", None):
        try:
            ts = pc.cast(array, pa.timestamp("ns", zone))
        except pa.ArrowInvalid:
            continue
        return ts.cast(pa.int64()).to_numpy().view("datetime64[ns]")
    numbers = pc.if_else(pc.is_in(array, _NA_TEXT), pa.scalar(None, array.type), array)
    for epoch in (pa.int64(), pa.float64()):
        try:
            return pc.cast(numbers, epoch).to_pandas()
        except pa.ArrowInvalid:
            continue
    return array.to_pandas()


def _finest_unit(*series: pd.Series) -> _Unit:
    units = [s.dt.unit for s in series]
    return next(u for u in cast(tuple[_Unit, ...], ("ns", "us", "ms", "s")) if u in units)


def _to_ns(parsed: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    lo = pd.Timestamp.min.tz_localize("UTC")
    hi = pd.Timestamp.max.tz_localize("UTC")
    out_of_range = ((parsed < lo) | (parsed > hi)).to_numpy()
    bad = parsed.isna().to_numpy() | out_of_range
    safe = parsed.where(~out_of_range, pd.Timestamp(0, tz="UTC"))
    ts_ns = pd.DatetimeIndex(safe).as_unit("ns").asi8.copy()
    ts_ns[bad] = 0
    return ts_ns, bad


def _from_epoch(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    finite = np.where(bad, 0.0, values)
    peak = float(np.abs(finite).max()) if finite.shape[0] else 0.0
    ns_per_unit = next(scale for limit, scale in _EPOCH_UNITS if peak < limit)
    if pd.api.types.is_integer_dtype(column) and not column.hasnans:
        ints = column.to_numpy(dtype=np.int64)
        bad |= np.abs(ints) > _INT64_MAX // ns_per_unit
        return np.where(bad, 0, ints) * ns_per_unit, bad
    scaled = finite * ns_per_unit
    bad |= np.abs(scaled) >= 2.0**63
    return np.where(bad, 0.0, np.round(scaled)).astype(np.int64), bad


def format_ns(ts_ns: int) -> str:
    """Format UTC nanoseconds as ISO 8601, e.g. ``2020-01-02T09:30:00Z``."""
    return str(format_ns_array(np.asarray([ts_ns], dtype=np.int64))[0])


def format_ns_array(ts_ns: np.ndarray) -> np.ndarray:
    """Format UTC nanoseconds as ISO 8601 strings with one precision that loses nothing.

    Whole seconds print as ``2020-01-02T09:30:00Z``; sub-second values use the finest of
    ms, us or ns that every value needs, so parsing the strings gives back ``ts_ns`` exactly.
    """
    ts = np.asarray(ts_ns, dtype=np.int64)
    unit: _Unit = "ns"
    steps: tuple[tuple[_Unit, int], ...] = (("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000))
    for name, scale in steps:
        if not (ts % scale).any():
            unit = name
            break
    as_dt = ts.astype("datetime64[ns]")
    return np.asarray(np.datetime_as_string(as_dt, unit=unit, timezone="UTC"))
