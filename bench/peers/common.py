"""Shared by the three runners (stdlib + numpy + pyarrow only: every peer env has them).

Each runner loads the same bar file (not timed), runs its engine once (timed with
``time.perf_counter``) and writes one JSON document with its fills in one common shape:
``[fill_ts_ns, side, quantity, price]`` where ``fill_ts_ns`` is the instant of the fill on
the engine's own clock.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

BAR_NS = 60_000_000_000  # the file holds 1-minute bars labelled by their open time


class Bars:
    """The bar file as numpy arrays; ``ts`` is the bar's open time in UTC nanoseconds."""

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
        if self.ts.size > 1 and not np.all(np.diff(self.ts) == BAR_NS):
            raise SystemExit(f"{path}: bars are not evenly spaced 1-minute bars")

    def __len__(self) -> int:
        return int(self.ts.size)


def arg_parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc)
    p.add_argument("--data", required=True, help="the shared Parquet bar file")
    p.add_argument("--out", required=True, help="where to write this run's JSON")
    p.add_argument("--fast", type=int, default=10)
    p.add_argument("--slow", type=int, default=30)
    p.add_argument("--qty", type=float, default=100.0)
    p.add_argument("--cash", type=float, default=100_000.0)
    return p


def write_result(path: str, result: dict[str, Any]) -> None:
    result.setdefault("python", platform.python_version())
    result["n_fills"] = len(result["fills"])
    Path(path).write_text(json.dumps(result))
    print(
        f"{result['engine']}: {result['n_bars']:,} bars in {result['run_s']:.3f} s "
        f"({result['n_bars'] / result['run_s']:,.0f} bars/s), {result['n_fills']} fills",
        file=sys.stderr,
    )
