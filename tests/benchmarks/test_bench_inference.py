"""Inference benchmarks (``make bench``): compiled ensemble vs the reference, same process.

The ensemble is ``EnsembleClassifier()`` with its defaults (LightGBM 200 trees of 15 leaves,
ExtraTrees 200 trees of depth <= 6, logistic regression), fitted on 5,000 x 30 random rows
with signal. Figures:

- single-row latency, HdrHistogram in nanoseconds, 10,000 calls after warm-up. The compiled
  model is offered one call every ``TICK_NS`` and each latency runs from the call's intended
  start, so a slow call also charges the calls queued behind it (no coordinated omission).
  The reference (each member's own ``predict_proba`` on one row, and their sum) takes
  milliseconds, so it runs back to back: each call's intended start is the previous call's
  end, which omits no waiting either;
- batch throughput on 1,000,000 rows, median of 3, on every core and on one;
- ``CompiledEnsemble.from_ensemble`` build time, median of 3.

Budgets: compiled p99 <= 20 us, reference/compiled p50 >= 50x, batch >= 1,000,000 rows/s.
Results are printed as one JSON line and appended to ``.bench/results.jsonl``.

Run: ``.venv/bin/python -m pytest -m bench tests/benchmarks/test_bench_inference.py -s``
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from ultrathink.models.compiled import CompiledEnsemble
from ultrathink.models.ensemble import EnsembleClassifier

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parents[2]
N_TRAIN, N_FEATURES = 5_000, 30
N_CALLS, N_WARMUP = 10_000, 1_000
TICK_NS = 25_000  # compiled calls are offered at 40,000 per second
N_BATCH, N_REF_BATCH, REPEATS = 1_000_000, 50_000, 3
BUDGET_P99_US = 20.0
BUDGET_RATIO = 50.0
BUDGET_ROWS_PER_S = 1_000_000
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def _data(n_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, N_FEATURES))
    beta = np.random.default_rng(99).normal(size=N_FEATURES) * (np.arange(N_FEATURES) < 10)
    y = (X @ beta + 2.0 * rng.normal(size=n_rows) > 0).astype(np.int64)
    return X, y


def _histogram() -> HdrHistogram:
    return HdrHistogram(1, 60_000_000_000, 3)


def _summary_us(hist: HdrHistogram) -> dict[str, float]:
    out = {f"p{p:g}": hist.get_value_at_percentile(p) / 1e3 for p in PERCENTILES}
    out["max"] = hist.get_max_value() / 1e3
    out["n"] = float(hist.get_total_count())
    return out


def _paced(fn: Callable[[np.ndarray], float], rows: np.ndarray) -> HdrHistogram:
    # Open loop: call i is due at start + i * TICK_NS; latency = end - due.
    hist = _histogram()
    clock = time.perf_counter_ns
    start = clock() + TICK_NS
    for i in range(N_CALLS):
        due = start + i * TICK_NS
        while clock() < due:
            pass
        fn(rows[i % rows.shape[0]])
        hist.record_value(max(1, clock() - due))
    return hist


def _back_to_back(members: dict[str, Any], rows: np.ndarray) -> dict[str, HdrHistogram]:
    # Closed loop over the three members; "reference" is their summed time per row.
    hists = {name: _histogram() for name in [*members, "reference"]}
    clock = time.perf_counter_ns
    for i in range(N_CALLS):
        row = rows[i % rows.shape[0]][None, :]
        total = 0
        for name, member in members.items():
            t0 = clock()
            member.predict_proba(row)
            elapsed = clock() - t0
            hists[name].record_value(max(1, elapsed))
            total += elapsed
        hists["reference"].record_value(max(1, total))
    return hists


def _rows_per_s(fn: Callable[[], object], n_rows: int) -> list[float]:
    rates = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn()
        rates.append(n_rows / (time.perf_counter() - t0))
    return rates


@pytest.fixture(scope="module")
def fitted() -> tuple[EnsembleClassifier, CompiledEnsemble]:
    X, y = _data(N_TRAIN, seed=0)
    model = EnsembleClassifier(random_state=0).fit(X, y)
    compiled = CompiledEnsemble.from_ensemble(model)
    compiled.warmup()
    return model, compiled


def test_single_row_latency(
    fitted: tuple[EnsembleClassifier, CompiledEnsemble],
    record: Callable[[str, dict[str, Any]], None],
) -> None:
    """Compiled p99 <= 20 us and >= 50x faster (p50) than the members' own predict_proba."""
    model, compiled = fitted
    rows, _ = _data(1_024, seed=1)
    for i in range(N_WARMUP):
        compiled.predict_row(rows[i % rows.shape[0]])
        if i < 50:
            for member in model.members_.values():
                member.predict_proba(rows[i][None, :])
    compiled_hist = _paced(compiled.predict_row, rows)
    reference = _back_to_back(model.members_, rows)
    figures = {"compiled": _summary_us(compiled_hist)}
    figures.update({name: _summary_us(hist) for name, hist in reference.items()})
    ratio_p50 = figures["reference"]["p50"] / figures["compiled"]["p50"]
    ratio_p99 = figures["reference"]["p99"] / figures["compiled"]["p99"]
    record(
        "inference_single_row_latency_us",
        {**figures, "ratio_p50": ratio_p50, "ratio_p99": ratio_p99, "tick_ns": TICK_NS},
    )
    assert figures["compiled"]["p99"] <= BUDGET_P99_US
    assert ratio_p50 >= BUDGET_RATIO


def test_batch_throughput(
    fitted: tuple[EnsembleClassifier, CompiledEnsemble],
    record: Callable[[str, dict[str, Any]], None],
) -> None:
    """predict_batch on 1,000,000 rows: >= 1,000,000 rows/s (median of 3, all cores)."""
    model, compiled = fitted
    X, _ = _data(N_BATCH, seed=2)
    n_threads = os.cpu_count() or 1
    compiled.predict_batch(X[:10_000], n_threads=n_threads)
    parallel = _rows_per_s(lambda: compiled.predict_batch(X, n_threads=n_threads), N_BATCH)
    serial = _rows_per_s(lambda: compiled.predict_batch(X), N_BATCH)
    X_ref = X[:N_REF_BATCH]
    reference = _rows_per_s(lambda: model.predict_proba(X_ref), N_REF_BATCH)
    np.testing.assert_allclose(
        compiled.predict_batch(X_ref), model.predict_proba(X_ref)[:, 1], rtol=0.0, atol=1e-12
    )
    median = statistics.median(parallel)
    record(
        "inference_batch_rows_per_s",
        {
            "rows": N_BATCH,
            "n_threads": n_threads,
            "rows_per_s_median": median,
            "rows_per_s_all": parallel,
            "serial_rows_per_s_median": statistics.median(serial),
            "reference_rows_per_s_median": statistics.median(reference),
            "ratio_vs_reference": median / statistics.median(reference),
        },
    )
    assert median >= BUDGET_ROWS_PER_S


def test_build_time(
    fitted: tuple[EnsembleClassifier, CompiledEnsemble],
    record: Callable[[str, dict[str, Any]], None],
) -> None:
    """from_ensemble on 200 + 200 trees takes well under a second (median of 3)."""
    model, _ = fitted
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        CompiledEnsemble.from_ensemble(model)
        times.append(time.perf_counter() - t0)
    record("inference_build_s", {"median_s": statistics.median(times), "all_s": times})
    assert statistics.median(times) < 1.0
