"""Read and write OHLCV files: CSV (optionally gzip-compressed) and Parquet.

Readers turn every I/O or parser failure into ``DataSourceError`` (naming the path) and every
rule broken by the content into ``DataValidationError``; callers never see a raw pandas or
pyarrow exception. Writers emit the long format ``timestamp, symbol, open, high, low, close,
volume`` (ISO 8601 UTC timestamps, shortest round-trip float text) that the readers load back
bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from ultrathink.data.frame import MarketData
from ultrathink.data.timestamps import format_ns_array
from ultrathink.data.validate import validate_frame
from ultrathink.errors import DataSourceError, DataValidationError

CSV_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz")
PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")
SUFFIXES: tuple[str, ...] = CSV_SUFFIXES + PARQUET_SUFFIXES
# what the readers can raise on unreadable or corrupt input (UnicodeDecodeError is a ValueError)
_READ_ERRORS = (OSError, ValueError, TypeError, pa.ArrowException, pd.errors.ParserError)


def file_suffix(path: str | Path) -> str:
    """Return the recognised data suffix of ``path`` (``.csv.gz`` counts as one), lower-cased."""
    name = Path(path).name.lower()
    return next((s for s in sorted(SUFFIXES, key=len, reverse=True) if name.endswith(s)), "")


def default_symbol(path: str | Path) -> str:
    """Symbol for a file without a symbol column: its name without data suffix, upper-cased."""
    name = Path(path).name
    suffix = file_suffix(path)
    stem = name[: len(name) - len(suffix)] if suffix else Path(path).stem
    return stem.upper()


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataSourceError(f"data file {str(path)!r} not found; fix: check the path")
    if not path.is_file():
        raise DataSourceError(f"data path {str(path)!r} is not a file; fix: pass a data file")
    if path.stat().st_size == 0:
        raise DataValidationError(
            str(path), "empty", "file is empty (0 bytes); fix: write a header and some bars"
        )


def _read(path: str | Path, reader: Callable[[Path], pd.DataFrame], kind: str) -> pd.DataFrame:
    file = Path(path)
    _check_file(file)
    try:
        return reader(file)
    except pd.errors.EmptyDataError as exc:
        raise DataValidationError(
            str(file), "empty", "no columns or rows; fix: write a header and some bars"
        ) from exc
    except _READ_ERRORS as exc:
        raise DataSourceError(
            f"cannot read {kind} file {str(file)!r}: {type(exc).__name__}: "
            f"{' '.join(str(exc).split())}; "
            f"fix: check the file is a valid, uncorrupted {kind} file"
        ) from exc


def _read_csv(path: Path) -> pd.DataFrame:
    header = pd.read_csv(path, nrows=0)
    symbol_columns = [c for c in header.columns if str(c).strip().lower() == "symbol"]
    # blank lines are kept so row numbers in errors match the file; trailing ones are dropped
    frame = pd.read_csv(
        path,
        skip_blank_lines=False,
        low_memory=False,  # one dtype per column, not per chunk, and no DtypeWarning
        dtype=dict.fromkeys(symbol_columns, str),
    )
    present = frame.notna().any(axis=1).to_numpy()
    last = len(frame) - int(present[::-1].argmax()) if present.any() else 0
    return frame.iloc[:last]


def _read_parquet(path: Path) -> pd.DataFrame:
    frame = pd.read_parquet(path)
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index()
    return frame


def load_csv(path: str | Path, symbol: str | None = None) -> MarketData:
    """Load and validate a CSV (or ``.csv.gz``) file of OHLCV bars.

    Parameters
    ----------
    path : str or Path
        File with a header row; see ``validate_frame`` for the columns.
    symbol : str, optional
        Symbol for files without a ``symbol`` column (default: the file name without suffix,
        upper-cased). Ignored when the file has a ``symbol`` column.

    Raises
    ------
    DataSourceError
        The file is missing, a directory, unreadable or not valid CSV.
    DataValidationError
        The file is empty or its content breaks a validation rule.
    """
    frame = _read(path, _read_csv, "CSV")
    return validate_frame(frame, str(path), default_symbol=symbol or default_symbol(path))


def load_parquet(path: str | Path, symbol: str | None = None) -> MarketData:
    """Load and validate a Parquet file of OHLCV bars; see ``load_csv`` for the parameters."""
    frame = _read(path, _read_parquet, "Parquet")
    return validate_frame(frame, str(path), default_symbol=symbol or default_symbol(path))


def load_file(path: str | Path, symbol: str | None = None) -> MarketData:
    """Load a data file, choosing the reader from its suffix.

    Parameters
    ----------
    path : str or Path
        A ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq`` file.
    symbol : str, optional
        Symbol for files without a ``symbol`` column (see ``load_csv``).

    Raises
    ------
    DataSourceError
        Unknown suffix, or the file cannot be read.
    DataValidationError
        The content breaks a validation rule.
    """
    suffix = file_suffix(path)
    if suffix in CSV_SUFFIXES:
        return load_csv(path, symbol)
    if suffix in PARQUET_SUFFIXES:
        return load_parquet(path, symbol)
    raise DataSourceError(
        f"data file {str(path)!r} has an unknown suffix; accepted suffixes: {list(SUFFIXES)}"
    )


def _long_frame(data: MarketData) -> pd.DataFrame:
    frame = data.to_frame()
    return frame[["timestamp", "symbol", "open", "high", "low", "close", "volume"]]


def save_csv(data: MarketData, path: str | Path) -> None:
    """Write bars as long-format CSV (gzip-compressed when ``path`` ends in ``.gz``).

    Timestamps are ISO 8601 UTC (``2020-01-02T09:30:00Z``; sub-second digits only when
    needed) and floats use their shortest exact text, so ``load_csv`` returns equal arrays.
    """
    frame = _long_frame(data)
    frame["timestamp"] = format_ns_array(data.ts_ns)
    # Arrow writes the shortest round-trip float text about 40x faster than DataFrame.to_csv
    table = pa.Table.from_pandas(frame, preserve_index=False)
    # unquoted output reads best; symbols with CSV metacharacters need quoting
    needs_quotes = any(c in s for s in data.symbols for c in ',"\r\n')
    options = pa_csv.WriteOptions(
        include_header=False, quoting_style="needed" if needs_quotes else "none"
    )
    try:
        with _open_sink(Path(path)) as sink:
            # Arrow quotes header names; written by hand they stay plain
            sink.write((",".join(table.column_names) + "\n").encode())
            pa_csv.write_csv(table, sink, options)
    except (OSError, pa.ArrowException) as exc:
        raise DataSourceError(f"cannot write CSV file {str(path)!r}: {exc}") from exc


def _open_sink(path: Path) -> pa.NativeFile:
    if path.name.lower().endswith(".gz"):
        return pa.CompressedOutputStream(str(path), "gzip")
    return pa.OSFile(str(path), "wb")


def save_parquet(data: MarketData, path: str | Path) -> None:
    """Write bars as long-format Parquet (timestamp as UTC nanosecond datetimes)."""
    try:
        _long_frame(data).to_parquet(path, index=False)
    except (OSError, pa.ArrowException) as exc:
        raise DataSourceError(f"cannot write Parquet file {str(path)!r}: {exc}") from exc
