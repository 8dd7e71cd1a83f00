"""Shared by the sweep peers and the check (stdlib + numpy + pyarrow only).

The workload: ``sma_cross`` over a parameter grid on the embedded S&P 500 daily bars
(5,031 bars, 1999-01-04 .. 2018-12-31), exported once by ``sweep_export.py`` to a Parquet
file that every engine reads. Grid: fast = 5, 10, ..., 50 and slow = 20, 25, ..., 200 with
fast < slow (342 points). Objective: total return = final equity / starting cash - 1, with
the equity marked at the last bar's close (an open position is not closed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FAST = tuple(range(5, 51, 5))
SLOW = tuple(range(20, 201, 5))
CASH = 100_000.0
METRIC = "total_return"


def grid() -> list[tuple[int, int]]:
    """Every (fast, slow) of the grid, fast < slow, in (fast, slow) order."""
    return [(f, s) for f in FAST for s in SLOW if f < s]


def key(fast: int, slow: int) -> str:
    """The per-point key of the JSON outputs."""
    return f"{fast}/{slow}"


class Bars:
    """The exported bar file as numpy arrays; ``ts`` is UTC nanoseconds (bar open time)."""

    def __init__(self, path: str) -> None:
        table = pq.read_table(path)
        symbols = table.column("symbol").unique().to_pylist()
        if len(symbols) != 1:
            raise SystemExit(f"{path}: expected one symbol, found {symbols}")
        self.symbol = str(symbols[0])
        ts = table.column("timestamp").combine_chunks().cast(pa.int64())
        self.ts = np.asarray(ts, dtype=np.int64)
        for name in ("open", "high", "low", "close", "volume"):
            setattr(self, name, np.asarray(table.column(name).combine_chunks(), dtype=np.float64))
        if self.ts.size > 1 and not np.all(np.diff(self.ts) > 0):
            raise SystemExit(f"{path}: timestamps are not strictly increasing")

    def __len__(self) -> int:
        return int(self.ts.size)

    def digest(self) -> str:
        """sha256 of ts, open and close: the check compares it with ULTRATHINK's data."""
        return data_digest(self.ts, self.open, self.close)


def data_digest(ts: np.ndarray, open_: np.ndarray, close: np.ndarray) -> str:
    h = hashlib.sha256()
    for arr, dtype in ((ts, np.int64), (open_, np.float64), (close, np.float64)):
        h.update(np.ascontiguousarray(arr, dtype=dtype).tobytes())
    return h.hexdigest()


def arg_parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, help="the exported sp500 Parquet file")
    p.add_argument("--cash", type=float, default=CASH)
    return p


def best_of(per_point: dict[str, float]) -> tuple[str, float]:
    """The point with the highest value; ties go to the first in grid order."""
    best_k, best_v = "", -np.inf
    for f, s in grid():
        k = key(f, s)
        v = per_point[k]
        if v > best_v:
            best_k, best_v = k, v
    return best_k, best_v


def emit(result: dict[str, Any]) -> None:
    """Print the result as one JSON object on stdout."""
    result.setdefault("python", platform.python_version())
    result["loadavg_1_5_15_at_end"] = [round(x, 2) for x in os.getloadavg()]
    json.dump(result, sys.stdout)
    print()
