"""Benchmarks of the data and feature stages: generate, load, validate, iterate, features.

Sizes: full mode uses 1,000,000 minute bars of one symbol (as in docs/benchmarks.md), quick
mode 20,000-50,000. Every figure is bars per second except the streaming update, which is a
per-bar latency in µs with every update's duration recorded.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ultrathink.perf.suite import Measurement, benchmark

if TYPE_CHECKING:
    from ultrathink.data.frame import MarketData


def bars(quick: bool, *, quick_n: int = 50_000, full_n: int = 1_000_000) -> MarketData:
    """Seeded synthetic minute bars of one symbol (``seed=42``): ``quick_n`` or ``full_n``."""
    from ultrathink.data import generate, parse_synthetic_spec

    n_bars = quick_n if quick else full_n
    return generate(parse_synthetic_spec(f"synthetic:n_bars={n_bars},seed=42,freq=1min"))


@benchmark("data.generate_synthetic", "data", "ops/s")
def generate_synthetic(quick: bool) -> Callable[[], int]:
    """Parse a synthetic spec and generate its bars (bars/s)."""
    from ultrathink.data import generate, parse_synthetic_spec

    spec = f"synthetic:n_bars={50_000 if quick else 1_000_000},seed=42,freq=1min"

    def run() -> int:
        return len(generate(parse_synthetic_spec(spec)))

    return run


class _FileLoad:
    # the file is written once; every repeat reads and validates it again
    def __init__(self, quick: bool, suffix: str) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="ultrathink-bench-"))
        self.path = self._dir / f"bars{suffix}"
        data = bars(quick, quick_n=20_000)
        self.n_bars = len(data)
        from ultrathink.data import save_csv, save_parquet

        (save_parquet if suffix == ".parquet" else save_csv)(data, self.path)

    def setup(self) -> None:
        pass

    def run(self) -> int:
        from ultrathink.data import load_data

        return len(load_data(str(self.path)))

    def teardown(self) -> None:
        pass

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


@benchmark("data.load_csv", "data", "ops/s", repeats=3)
def load_csv(quick: bool) -> _FileLoad:
    """``load_data`` of a CSV file: read, parse ISO timestamps, validate (bars/s)."""
    return _FileLoad(quick, ".csv")


@benchmark("data.load_parquet", "data", "ops/s")
def load_parquet(quick: bool) -> _FileLoad:
    """``load_data`` of a Parquet file: read and validate (bars/s)."""
    return _FileLoad(quick, ".parquet")


@benchmark("data.validate_frame", "data", "ops/s")
def validate_frame(quick: bool) -> Callable[[], int]:
    """``validate_frame`` on an in-memory DataFrame of bars (bars/s)."""
    from ultrathink.data import validate_frame as validate

    frame = bars(quick).to_frame()

    def run() -> int:
        return len(validate(frame, "bench"))

    return run


@benchmark("data.iterate_bars", "data", "ops/s")
def iterate_bars(quick: bool) -> Callable[[], int]:
    """Iterate ``MarketData.iter_bars`` with no engine: the reference for engine ratios."""
    data = bars(quick)

    def run() -> int:
        n = 0
        for _ in data.iter_bars():
            n += 1
        return n

    return run


@benchmark("features.vectorised", "features", "ops/s")
def features_vectorised(quick: bool) -> Callable[[], int]:
    """``compute_features_for``: the research feature matrix of one symbol (bars/s)."""
    from ultrathink.features import compute_features_for

    data = bars(quick)
    compute_features_for(bars(True, quick_n=1_000))  # numba compile/cache load, not timed

    def run() -> int:
        return int(compute_features_for(data).shape[0])

    return run


@benchmark("features.streaming_update", "features", "us")
def features_streaming(quick: bool) -> Callable[[], Measurement]:
    """``StreamingFeatures.update`` per bar (median µs; every update is recorded)."""
    from ultrathink.features import StreamingFeatures

    data = bars(quick, quick_n=20_000, full_n=200_000)
    columns: list[Any] = [
        data.ts_ns.tolist(), data.open.tolist(), data.high.tolist(), data.low.tolist(),
        data.close.tolist(), data.volume.tolist(),
    ]  # fmt: skip
    rows = list(zip(*columns, strict=True))
    StreamingFeatures().update(*rows[0])  # numba compile/cache load, not timed

    def run() -> Measurement:
        feats = StreamingFeatures()
        update, clock = feats.update, time.perf_counter_ns
        events = [0] * len(rows)
        for i, row in enumerate(rows):
            t0 = clock()
            update(*row)
            events[i] = clock() - t0
        return Measurement(value=sorted(events)[len(events) // 2] / 1e3, events_ns=events)

    return run
