"""Validate OHLCV rows and turn them into ``MarketData``.

Every rule has a stable id and reports the first offending row (1-based, in the order of the
input, header excluded), the offending value and how to fix it. Rules are checked in this
order; the first rule that fails raises ``DataValidationError``:

``missing_columns``, ``empty``, ``unparseable_timestamp``, ``missing_symbol``, ``non_numeric``,
``not_finite``, ``non_positive_price``, ``high_below_max_open_close``,
``low_above_min_open_close``, ``negative_volume``, ``duplicate_timestamp``,
``decreasing_timestamp``.

``BarsBuilder`` takes the rows in chunks (the file readers feed it one block at a time, so a
malformed file is refused at its first bad block, not after being read whole): the row rules
(``unparseable_timestamp`` to ``negative_volume``) run on each chunk in that order, the order
rules (``duplicate_timestamp``, ``decreasing_timestamp``) once over all rows at the end. A
one-chunk input such as ``validate_frame``'s DataFrame sees exactly the order above.

All checks are vectorised: a million rows validate in a fraction of a second. Quoted input in
messages is cut to ``MAX_QUOTED_CHARS`` characters, so an error stays one readable line. The
row checks need pandas; ``check_values`` and ``check_order`` need only numpy, and this module
imports pandas on first use, so the embedded datasets validate without loading it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ultrathink.data.frame import MarketData
from ultrathink.errors import DataValidationError

if TYPE_CHECKING:
    import pandas as pd

    Column = pd.Series | np.ndarray

RULES: tuple[str, ...] = (
    "missing_columns",
    "empty",
    "unparseable_timestamp",
    "missing_symbol",
    "non_numeric",
    "not_finite",
    "non_positive_price",
    "high_below_max_open_close",
    "low_above_min_open_close",
    "negative_volume",
    "duplicate_timestamp",
    "decreasing_timestamp",
)
VALUE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
TIMESTAMP_ALIASES: tuple[str, ...] = ("timestamp", "datetime", "date", "time")
MAX_QUOTED_CHARS = 300
_NAN_WORDS = frozenset({"nan", "-nan", "+nan", "na", "n/a", "null", "none", ""})
_NO_ROWS = np.empty(0)


def clip(text: str, limit: int = MAX_QUOTED_CHARS) -> str:
    """Return ``text`` cut to ``limit`` characters, ending ``… (N more characters)`` if cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def quote(value: object, limit: int = MAX_QUOTED_CHARS) -> str:
    """Return ``repr(value)`` cut to about ``limit`` characters (see ``clip``)."""
    if isinstance(value, str) and len(value) > limit:
        # cut before repr: a 1 MiB field must not be copied into a 1 MiB message first
        return f"{value[:limit]!r}… ({len(value) - limit:,} more characters)"
    return clip(repr(value), limit)


def validate_frame(df: pd.DataFrame, source: str, *, default_symbol: str = "UNKNOWN") -> MarketData:
    """Check OHLCV rows against the validation rules and return them as ``MarketData``.

    Parameters
    ----------
    df : pandas.DataFrame
        Columns ``timestamp`` (or ``date``/``datetime``/``time``), ``open``, ``high``, ``low``,
        ``close``, ``volume`` and optionally ``symbol``; names are case-insensitive, other
        columns are ignored. Row order is the order of the source file.
    source : str
        File or dataset name, used in error messages and as ``MarketData.name``.
    default_symbol : str
        Symbol of every row when there is no ``symbol`` column.

    Returns
    -------
    MarketData
        The bars sorted by (timestamp, symbol).

    Raises
    ------
    DataValidationError
        On the first broken rule (see the module docstring), naming the row and the value.
    """
    columns = resolve_columns(list(df.columns), source)
    df = df.reset_index(drop=True)  # positions are row numbers; labels may repeat
    builder = BarsBuilder(source, default_symbol=default_symbol)
    builder.add({name: df[label] for name, label in columns.items()})
    return builder.finish()


def resolve_columns(names: Sequence[object], source: str) -> dict[str, object]:
    """Map ``timestamp``, the value columns and ``symbol`` to their labels in ``names``.

    Raises
    ------
    DataValidationError
        ``missing_columns`` when the timestamp or a value column is absent.
    """
    by_lower: dict[str, object] = {}
    for column in names:
        key = str(column).strip().lstrip("\ufeff").lower()
        by_lower.setdefault(key, column)
    resolved: dict[str, object] = {}
    timestamp = next((by_lower[a] for a in TIMESTAMP_ALIASES if a in by_lower), None)
    if timestamp is not None:
        resolved["timestamp"] = timestamp
    for name in (*VALUE_COLUMNS, "symbol"):
        if name in by_lower:
            resolved[name] = by_lower[name]
    missing = [n for n in ("timestamp", *VALUE_COLUMNS) if n not in resolved]
    if missing:
        found = quote([str(c) for c in names[:64]])  # the count below says if more exist
        raise DataValidationError(
            source,
            "missing_columns",
            f"missing columns {missing}; the header has {len(names):,} column(s): {found}; fix: "
            f"provide "
            f"columns timestamp (or date/datetime/time), open, high, low, close, volume and "
            f"optionally symbol (names are case-insensitive)",
        )
    return resolved


class BarsBuilder:
    """Validate OHLCV rows chunk by chunk and assemble them into one ``MarketData``.

    Parameters
    ----------
    source : str
        File or dataset name, used in error messages and as ``MarketData.name``.
    default_symbol : str
        Symbol of every row when the chunks have no ``symbol`` column.
    """

    def __init__(self, source: str, default_symbol: str = "UNKNOWN") -> None:
        self.source = source
        self.default_symbol = default_symbol
        self.n_rows = 0
        self._symbols: dict[str, int] = {}
        # per chunk: ts_ns, symbol codes, then the value columns (compact numpy arrays only)
        self._parts: list[list[np.ndarray]] = []

    def add(self, columns: Mapping[str, Column]) -> None:
        """Check the next rows (numbered after those already added) and keep them.

        ``columns`` maps ``timestamp``, the value columns and optionally ``symbol`` to equally
        long Series; a reader that already parsed a column may pass it as a numpy array
        instead (``datetime64[ns]`` timestamps, float64 values), which skips pandas. Raises
        ``DataValidationError`` on the first broken row rule.
        """
        n_rows = len(columns["timestamp"])
        if n_rows == 0:
            return
        offset = self.n_rows
        ts_ns = _timestamps(columns["timestamp"], self.source, offset)
        codes = self._codes(columns.get("symbol"), n_rows, offset)
        values = _numeric_columns(columns, self.source, offset)
        check_values(values, self.source, offset)
        self._parts.append([ts_ns, codes, *(values[name] for name in VALUE_COLUMNS)])
        self.n_rows += n_rows

    def _codes(self, column: Column | None, n_rows: int, offset: int) -> np.ndarray:
        if column is None:
            return np.full(n_rows, self._code(self.default_symbol), dtype=np.int32)
        local, names = _symbol_codes(column, self.source, offset)
        to_global = np.fromiter((self._code(s) for s in names), np.int32, count=len(names))
        return to_global[local]

    def _code(self, symbol: str) -> int:
        return self._symbols.setdefault(symbol, len(self._symbols))

    def finish(self) -> MarketData:
        """Check timestamp order over all rows and return the bars sorted by (time, symbol)."""
        if self.n_rows == 0:
            raise DataValidationError(
                self.source, "empty", "no data rows after the header; fix: add at least one bar"
            )
        ts_ns, codes, o, h, lo, c, v = (self._column(i) for i in range(2 + len(VALUE_COLUMNS)))
        names = np.asarray(list(self._symbols), dtype=object)
        check_order(ts_ns, codes, names, self.source)
        return MarketData.from_codes(ts_ns, codes, names, o, h, lo, c, v, name=self.source)

    def _column(self, i: int) -> np.ndarray:
        # joins one column and drops its chunks at once: peak is the data plus one column
        chunks = [part[i] for part in self._parts]
        for part in self._parts:
            part[i] = _NO_ROWS
        if len(chunks) > 1:
            return np.concatenate(chunks)
        # a reader's zero-copy view of an Arrow buffer is read-only: MarketData owns its arrays
        return chunks[0] if chunks[0].flags.writeable else chunks[0].copy()


def _first_row(mask: np.ndarray) -> int | None:
    # argmax on a bool array returns the first True index without a Python loop
    if not mask.any():
        return None
    return int(np.argmax(mask))


def _cell(column: Column, row: int) -> object:
    return column[row] if isinstance(column, np.ndarray) else column.iloc[row]


def _as_series(column: Column) -> pd.Series:
    import pandas as pd  # lazy: see the module docstring

    return pd.Series(column) if isinstance(column, np.ndarray) else column


def _timestamps(column: Column, source: str, offset: int) -> np.ndarray:
    from ultrathink.data.timestamps import parse_timestamps  # lazy: pandas

    if isinstance(column, np.ndarray) and column.dtype == np.dtype("datetime64[ns]"):
        ts_ns, bad = column.view(np.int64), np.isnat(column)
    else:
        ts_ns, bad = parse_timestamps(_as_series(column))
    row = _first_row(bad)
    if row is not None:
        value = _cell(column, row)
        raise DataValidationError(
            source,
            "unparseable_timestamp",
            f"timestamp {quote(value)} cannot be read as a date/time between 1677 and 2262; "
            f"fix: use ISO 8601 such as 2020-01-02 or 2020-01-02T09:30:00Z (naive = UTC)",
            row=offset + row + 1,
        )
    return ts_ns


def _symbol_codes(column: Column, source: str, offset: int) -> tuple[np.ndarray, list[str]]:
    import pandas as pd  # lazy: see the module docstring

    raw_codes, raw_names = pd.factorize(column)
    # strip once per distinct name, then merge names that only differed by whitespace
    stripped = pd.Index([str(name).strip() for name in raw_names], dtype=object)
    merged, names = pd.factorize(stripped)
    codes = np.where(raw_codes >= 0, merged[np.maximum(raw_codes, 0)], -1)
    empty_codes = np.flatnonzero(np.asarray(names, dtype=object) == "")
    row = _first_row((codes < 0) | np.isin(codes, empty_codes))
    if row is not None:
        raise DataValidationError(
            source,
            "missing_symbol",
            f"symbol is empty (value {quote(_cell(column, row))}); fix: fill in the symbol "
            f"or drop the symbol column for single-symbol data",
            row=offset + row + 1,
        )
    return codes, [str(name) for name in names]


def _numeric(column: Column) -> tuple[np.ndarray, np.ndarray]:
    # returns float64 values and a mask of cells that are present but not numbers
    if isinstance(column, np.ndarray):
        return column.astype(np.float64, copy=False), np.zeros(column.shape[0], dtype=bool)
    import pandas as pd  # lazy: see the module docstring

    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        return values, np.zeros(values.shape[0], dtype=bool)
    coerced = pd.to_numeric(column, errors="coerce")
    values = coerced.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.isnan(values) & column.notna().to_numpy()
    if pd.api.types.is_bool_dtype(column):
        return values, np.ones(values.shape[0], dtype=bool)
    suspects = np.flatnonzero(bad)
    if suspects.shape[0]:
        # spelled-out NaN is a (non-finite) number, not garbage: leave it to not_finite
        words = column.iloc[suspects].astype(str).str.strip().str.lower()
        bad[suspects[words.isin(_NAN_WORDS).to_numpy()]] = False
    return values, bad


def _numeric_columns(
    columns: Mapping[str, Column], source: str, offset: int
) -> dict[str, np.ndarray]:
    values: dict[str, np.ndarray] = {}
    first: tuple[int, str] | None = None
    for name in VALUE_COLUMNS:
        values[name], bad = _numeric(columns[name])
        row = _first_row(bad)
        if row is not None and (first is None or row < first[0]):
            first = (row, name)
    if first is not None:
        row, name = first
        raise DataValidationError(
            source,
            "non_numeric",
            f"{name} is {quote(_cell(columns[name], row))}, not a number; fix: use plain "
            f"decimal numbers (no units, currency signs or thousands separators)",
            row=offset + row + 1,
        )
    return values


def _raise_at(
    source: str,
    rule: str,
    row: int | None,
    values: Mapping[str, np.ndarray],
    what: str,
    offset: int,
) -> None:
    if row is None:
        return
    shown = ", ".join(f"{name}={float(values[name][row])!r}" for name in VALUE_COLUMNS)
    raise DataValidationError(source, rule, f"{what} ({shown})", row=offset + row + 1)


def check_values(values: Mapping[str, np.ndarray], source: str, offset: int = 0) -> None:
    """Check the value rules ``not_finite`` .. ``negative_volume`` on float64 columns.

    ``values`` maps each of ``VALUE_COLUMNS`` to an array; ``offset`` is the number of rows
    before these (for the row numbers in errors). Needs numpy only.
    """
    o, h, lo, c, v = (values[name] for name in VALUE_COLUMNS)
    not_finite = ~(np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c))
    not_finite |= ~np.isfinite(v)
    checks = (
        ("not_finite", not_finite, "a price or volume is missing, NaN or infinite; fix: fill "
         "or drop the bar"),
        ("non_positive_price", (o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0),
         "prices must be > 0; fix: drop the bar or correct the price"),
        ("high_below_max_open_close", h < np.maximum(o, c),
         "high must be >= max(open, close); fix: correct high or the open/close"),
        ("low_above_min_open_close", lo > np.minimum(o, c),
         "low must be <= min(open, close); fix: correct low or the open/close"),
        ("negative_volume", v < 0, "volume must be >= 0; fix: correct the volume"),
    )  # fmt: skip
    for rule, broken, what in checks:
        _raise_at(source, rule, _first_row(broken), values, what, offset)


def _format_ns(ts_ns: int) -> str:
    from ultrathink.data.timestamps import format_ns  # lazy: only for an error message

    return format_ns(ts_ns)


def check_order(ts_ns: np.ndarray, codes: np.ndarray, names: np.ndarray, source: str) -> None:
    """Check ``duplicate_timestamp`` and ``decreasing_timestamp`` per symbol, in row order.

    ``codes`` index ``names`` for each row. Needs numpy only.
    """
    # stable sort by symbol keeps file order within each symbol
    by_symbol = np.argsort(codes, kind="stable") if names.shape[0] > 1 else np.arange(len(codes))
    ts = ts_ns[by_symbol]
    same = codes[by_symbol][1:] == codes[by_symbol][:-1]
    step = np.diff(ts)
    if not (same & (step <= 0)).any():
        return
    order = np.lexsort((ts_ns, codes))
    dup = (codes[order][1:] == codes[order][:-1]) & (np.diff(ts_ns[order]) == 0)
    if dup.any():
        later, earlier = order[1:][dup], order[:-1][dup]
        k = int(np.argmin(later))
        row, prev = int(later[k]), int(earlier[k])
        raise DataValidationError(
            source,
            "duplicate_timestamp",
            f"timestamp {_format_ns(int(ts_ns[row]))} of symbol {quote(names[codes[row]])} "
            f"already at row {prev + 1}; fix: keep one bar per symbol and timestamp",
            row=row + 1,
        )
    back = same & (step < 0)
    later, earlier = by_symbol[1:][back], by_symbol[:-1][back]
    k = int(np.argmin(later))
    row, prev = int(later[k]), int(earlier[k])
    raise DataValidationError(
        source,
        "decreasing_timestamp",
        f"timestamp {_format_ns(int(ts_ns[row]))} of symbol {quote(names[codes[row]])} is "
        f"before {_format_ns(int(ts_ns[prev]))} at row {prev + 1}; fix: sort the rows by "
        f"timestamp",
        row=row + 1,
    )
