"""The decision-latency log's fold (``make bench``): what a session's kernel thread pays,
between two bars, to move old latencies into its HdrHistogram (``core/latency.py``).

* ``record_many`` of a million values, against ``np.sort`` of the same values timed in the
  same rounds (a ratio: this shared machine's speed moves). Counting buckets must stay
  O(n): the ``np.unique`` it replaced sorted, and its 70 ms stalled the kernel every
  million decisions of the stress load (docs/stress.md, "The evening runs").
* One ``LatencyLog.fold`` at the default size (65,536 values), median and p99 over folds.

Budgets: ``record_many`` at most 0.6× the sort's time (0.37× measured on 2026-12-07), and a
fold's median under 3 ms (a 20,000 decisions/s session folds every 3.3 s, and the kernel's
next bars wait for it: 4.8 ms measured while a fold recorded its buckets into the
HdrHistogram, about 0.6 ms since it adds them to dense counts).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from ultrathink.core.latency import LatencyLog, new_histogram, record_many

pytestmark = pytest.mark.bench

N_VALUES = 983_040  # what one fold moved before 905cec1
ROUNDS = 7
FOLDS = 20
RECORD_VS_SORT_MAX = 0.6
FOLD_MEDIAN_MAX_MS = 3.0


def _values(n: int, seed: int) -> np.ndarray:
    # decision latencies in ns: log-normal around 270 µs, a long tail
    return np.random.default_rng(seed).lognormal(12.5, 0.6, n).astype(np.int64)


def test_record_many_counts_buckets_in_linear_time_and_a_fold_is_small(
    record: Callable[[str, dict[str, Any]], None],
) -> None:
    values = _values(N_VALUES, 1)
    timed: dict[str, list[float]] = {"record_many": [], "np_sort": []}
    for i in range(ROUNDS):
        order = ("record_many", "np_sort") if i % 2 == 0 else ("np_sort", "record_many")
        for name in order:
            hist = new_histogram()
            t0 = time.perf_counter()
            if name == "record_many":
                record_many(hist, values)
            else:
                np.sort(values)
            timed[name].append((time.perf_counter() - t0) * 1e3)
    ratio = statistics.median(timed["record_many"]) / statistics.median(timed["np_sort"])

    log = LatencyLog()
    folds: list[float] = []
    stream = _values((FOLDS + 2) * log.keep + log.limit, 2).tolist()
    for x in stream:
        log.values.append(x)
        if len(log.values) > log.limit:
            t0 = time.perf_counter()
            log.fold()
            folds.append((time.perf_counter() - t0) * 1e3)
    folds.sort()
    fold = {"median_ms": statistics.median(folds), "p99_ms": folds[int(0.99 * (len(folds) - 1))]}
    record(
        "latency_log_fold",
        {"values": N_VALUES, "rounds": ROUNDS, "record_many_ms": statistics.median(
            timed["record_many"]), "np_sort_ms": statistics.median(timed["np_sort"]),
         "record_vs_sort": ratio, "fold_values": log.limit - log.keep, "folds": len(folds),
         **fold},
    )  # fmt: skip
    assert ratio <= RECORD_VS_SORT_MAX
    assert fold["median_ms"] < FOLD_MEDIAN_MAX_MS
