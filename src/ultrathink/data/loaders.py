"""Read and write OHLCV files: CSV (optionally gzip-compressed) and Parquet.

Readers turn every I/O or parser failure into ``DataSourceError`` (naming the path) and every
rule broken by the content into ``DataValidationError``; callers never see a raw pandas or
pyarrow exception, and quoted input in a message is cut to 300 characters. Writers emit the
long format ``timestamp, symbol, open, high, low, close, volume`` (ISO 8601 UTC timestamps,
shortest round-trip float text) that the readers load back bit for bit.

Reading is streamed and checked as it goes, so memory stays a small multiple of the bars a
file holds and a malformed file is refused early, usually in its first block:

- CSV: the first 64 KiB are checked before any row is parsed: binary content (a NUL byte,
  not UTF-8), a header over 64 KiB or of more than ``MAX_COLUMNS`` columns, and missing
  columns are refused there. pyarrow's streaming reader then parses 1 MiB blocks, keeping
  only the needed columns, as text; a line over 1 MiB or a row with the wrong number of fields
  (pandas filled short rows with NaN) is refused in its block. Each block is converted
  (numbers and ISO 8601 timestamps by Arrow casts in C, other text by ``validate``'s pandas
  rules), validated and kept as compact numpy columns (52 bytes a bar); types are inferred per
  block as ``pandas.read_csv`` did per file (tests pin that each cell means what it meant to
  pandas). Blank rows keep their row numbers; trailing ones are dropped, but more than
  ``MAX_BLANK_ROWS`` in a row are refused (a padded or sparse file).
- Parquet: the schema is read from the footer first (missing columns are refused there), then
  only the needed columns, ``PARQUET_BATCH_ROWS`` rows at a time.

Why pyarrow's streaming reader and not ``pandas.read_csv`` (used before): pandas builds every
column of the whole file at once, Python strings included, and has no limit on line length or
column count. Peak RSS of a fresh process (``resource.getrusage``; 112-117 MB of it is
importing pandas and pyarrow), before -> after, 2 vCPU shared machine:

- 1,000,000 good rows: CSV (103 MB) 374 -> 283 MB, ``.csv.gz`` (34 MB) 373 -> 288 MB, Parquet
  (42 MB) 398 -> 322 MB; load time new/old 0.83-0.88 (medians of interleaved runs);
- 100 MB of empty rows (``,,,,,``): 2,150 MB in 6.9 s -> refused in its first block, 146 MB;
- 10 lines of 10 MB of commas: killed at 3.8 GB after 300 s -> refused, 130 MB;
- a 100 MB header of commas: killed at 4.0 GB after 24 s -> refused, 117 MB;
- 100 MB of base64 text: 976 MB and a 100 MB error line -> 117 MB and a 170-character one;
- 1,000 text columns (100 MB): 446 MB and an 8 KB error line -> 117 MB, 200 characters.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Generator, Iterable
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from ultrathink.data.frame import MarketData
from ultrathink.data.timestamps import format_ns_array, timestamps_from_text
from ultrathink.data.validate import BarsBuilder, clip, quote, resolve_columns
from ultrathink.errors import DataSourceError, DataValidationError

CSV_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz")
PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")
SUFFIXES: tuple[str, ...] = CSV_SUFFIXES + PARQUET_SUFFIXES
MAX_COLUMNS = 64
MAX_BLANK_ROWS = 1_000
HEADER_BYTES = 1 << 16  # the header must end in the first 64 KiB
BLOCK_BYTES = 1 << 20  # parse unit of the CSV reader; also the longest line it accepts
PARQUET_BATCH_ROWS = 65_536
# what the readers can raise on unreadable or corrupt input (UnicodeDecodeError is a ValueError)
_READ_ERRORS = (OSError, ValueError, TypeError, pa.ArrowException)
_TEXT_TYPES = (pa.types.is_string, pa.types.is_large_string)
_Batches = Generator[pa.RecordBatch, None, None]


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


def _unreadable(path: Path, kind: str, reason: str, fix: str = "") -> DataSourceError:
    fix = fix or f"check the file is a valid, uncorrupted {kind} file"
    return DataSourceError(f"cannot read {kind} file {str(path)!r}: {reason}; fix: {fix}")


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if "straddl" in text:  # pyarrow: a row that does not fit in one block
        return f"a line (or a quoted value) is longer than the limit of {BLOCK_BYTES:,} bytes"
    return f"{type(exc).__name__}: {clip(text)}"


def _guarded(batches: Iterable[pa.RecordBatch], path: Path, kind: str) -> _Batches:
    # parser errors surface while iterating: name the file, cut the message
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except _READ_ERRORS as exc:
            raise _unreadable(path, kind, _reason(exc)) from exc
        yield batch


def _open_stream(path: Path) -> pa.NativeFile:
    gzip = path.name.lower().endswith(".gz")
    return pa.input_stream(str(path), compression="gzip" if gzip else None)


def _csv_header(path: Path) -> tuple[list[str], bool]:
    # the column names and whether any line follows the header, from the first 64 KiB
    try:
        with _open_stream(path) as stream:
            head = stream.read(HEADER_BYTES)
    except _READ_ERRORS as exc:
        raise _unreadable(path, "CSV", _reason(exc)) from exc
    if b"\x00" in head:
        offset = head.index(b"\x00")
        raise _unreadable(path, "CSV", f"binary content (a NUL byte at offset {offset:,})")
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < HEADER_BYTES)
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text (byte 0x{head[exc.start]:02x} at offset {exc.start:,})"
        raise _unreadable(path, "CSV", reason, "save the file as UTF-8 text") from exc
    if not text.strip() and len(head) < HEADER_BYTES:
        raise DataValidationError(
            str(path), "empty", "no columns or rows; fix: write a header and some bars"
        )
    line, newline, _ = text.lstrip("\ufeff").partition("\n")
    if not newline and len(head) == HEADER_BYTES:
        reason = f"the header (line 1) is longer than {HEADER_BYTES:,} bytes"
        raise _unreadable(path, "CSV", reason, "put the column names alone on the first line")
    names = next(csv.reader([line.rstrip("\r")]), [])
    if len(names) > MAX_COLUMNS:
        reason = f"the header has {len(names):,} columns, more than the {MAX_COLUMNS} allowed"
        fix = "keep the columns timestamp, open, high, low, close, volume (and symbol)"
        raise _unreadable(path, "CSV", reason, fix)
    return names, bool(newline)


class _FirstBadRow:
    # pyarrow's invalid_row_handler: keeps the first row whose field count is wrong
    def __init__(self) -> None:
        self.row: pa_csv.InvalidRow | None = None

    def __call__(self, row: pa_csv.InvalidRow) -> str:
        self.row = self.row or row
        return "error"

    def error(self, path: Path) -> DataSourceError:
        assert self.row is not None
        row = self.row
        where = f"row {row.number - 1:,}" if row.number is not None else "a row"
        reason = (
            f"{where} has {row.actual_columns} fields where the header has "
            f"{row.expected_columns} ({quote(row.text)})"
        )
        return _unreadable(path, "CSV", reason, "give every row the header's columns")


def _csv_batches(path: Path, names: list[str], include: list[str]) -> _Batches:
    bad_row = _FirstBadRow()
    options = {
        # one thread: pyarrow numbers an invalid row (for the error) only then
        "read_options": pa_csv.ReadOptions(
            column_names=names, skip_rows=1, block_size=BLOCK_BYTES, use_threads=False
        ),
        # blank lines stay rows, so row numbers in errors match the file
        "parse_options": pa_csv.ParseOptions(
            ignore_empty_lines=False, newlines_in_values=True, invalid_row_handler=bad_row
        ),
        # text in, converted per block by _series: errors can then name the row and the value
        "convert_options": pa_csv.ConvertOptions(
            include_columns=include,
            column_types=dict.fromkeys(include, pa.string()),
            strings_can_be_null=False,
        ),
    }
    with _open_stream(path) as stream:
        try:
            with pa_csv.open_csv(stream, **options) as reader:
                yield from reader
        except pa.ArrowInvalid as exc:
            if bad_row.row is None:
                raise
            raise bad_row.error(path) from exc


def _blank_rows(batch: pa.RecordBatch) -> np.ndarray:
    total = np.zeros(batch.num_rows, dtype=np.int64)
    for column in batch.columns:
        total += pc.binary_length(column).to_numpy(zero_copy_only=False)
    return total == 0


def _drop_trailing_blanks(batches: _Batches, path: Path) -> _Batches:
    # blank rows are kept until a later row shows they are not trailing (then the validator
    # refuses the first of them); only MAX_BLANK_ROWS of them are ever held
    pending: list[pa.RecordBatch] = []
    n_pending = n_rows = 0
    for batch in batches:
        filled = np.flatnonzero(~_blank_rows(batch))
        if filled.shape[0]:
            yield from pending
            end = int(filled[-1]) + 1
            yield batch.slice(0, end)
            n_rows += n_pending + end
            pending, n_pending = [], 0
            batch = batch.slice(end)
        pending.append(batch)
        n_pending += batch.num_rows
        if n_pending > MAX_BLANK_ROWS:
            reason = (
                f"more than {MAX_BLANK_ROWS:,} blank rows in a row from row {n_rows + 1:,} "
                f"(a padded or sparse file)"
            )
            raise _unreadable(path, "CSV", reason, "delete the blank rows")


def _open_csv(path: Path, source: str) -> tuple[dict[str, object], _Batches]:
    names, has_rows = _csv_header(path)
    try:
        columns = resolve_columns(names, source)
    except DataValidationError:
        # a file that does not parse is reported as such, as pandas did: check the first block
        if has_rows:
            with closing(_guarded(_csv_batches(path, names, names), path, "CSV")) as first:
                next(first, None)
        raise
    if not has_rows:  # a header without a line end: pyarrow cannot even skip it
        detail = "no data rows after the header; fix: add at least one bar"
        raise DataValidationError(source, "empty", detail)
    include = [str(label) for label in dict.fromkeys(columns.values())]
    batches = _guarded(_csv_batches(path, names, include), path, "CSV")
    return columns, _drop_trailing_blanks(batches, path)


def _open_parquet(path: Path, source: str) -> tuple[dict[str, object], _Batches]:
    import pyarrow.parquet as pq  # lazy: CSV-only runs never need it

    try:
        names = pq.read_schema(path).names  # the footer only
    except _READ_ERRORS as exc:
        raise _unreadable(path, "Parquet", _reason(exc)) from exc
    columns = resolve_columns(names, source)
    include = [str(label) for label in dict.fromkeys(columns.values())]

    def batches() -> _Batches:
        with pq.ParquetFile(path) as file:
            yield from file.iter_batches(PARQUET_BATCH_ROWS, columns=include)

    return columns, _guarded(batches(), path, "Parquet")


def _series(array: pa.Array, name: str) -> pd.Series | np.ndarray:
    # Arrow casts take the common cases in C and hand numpy arrays to the validator; text
    # they refuse goes to validate's pandas rules, which name the row and the value
    if not any(is_text(array.type) for is_text in _TEXT_TYPES):
        return array.to_pandas()
    if name == "symbol":
        return array.dictionary_encode().to_pandas()
    if name == "timestamp":
        return timestamps_from_text(array)
    try:
        return pc.cast(array, pa.float64()).to_numpy()
    except pa.ArrowInvalid:
        return array.to_pandas()


def _load(
    path: str | Path,
    symbol: str | None,
    opener: Callable[[Path, str], tuple[dict[str, object], _Batches]],
) -> MarketData:
    file, source = Path(path), str(path)
    _check_file(file)
    builder = BarsBuilder(source, default_symbol=symbol or default_symbol(path))
    columns, batches = opener(file, source)
    with closing(batches):  # a refused file is closed at once, not when the traceback goes
        for batch in batches:
            builder.add({name: _series(batch.column(str(c)), name) for name, c in columns.items()})
    return builder.finish()


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
        The file is missing, a directory, unreadable or not valid CSV, or malformed: binary,
        a header over 64 KiB or of more than ``MAX_COLUMNS`` columns, a line over 1 MiB, a row
        with the wrong number of fields, more than ``MAX_BLANK_ROWS`` blank rows in a row.
    DataValidationError
        The file is empty or its content breaks a validation rule.
    """
    return _load(path, symbol, _open_csv)


def load_parquet(path: str | Path, symbol: str | None = None) -> MarketData:
    """Load and validate a Parquet file of OHLCV bars; see ``load_csv`` for the parameters."""
    return _load(path, symbol, _open_parquet)


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
