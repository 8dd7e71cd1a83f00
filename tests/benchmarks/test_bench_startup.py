"""Budget: a whole `backtest --data sp500 --no-store --json` process costs at most 1.2x the
import of numpy and pandas in the same venv, measured back to back (the machine is shared)."""

from __future__ import annotations

import statistics

import pytest

from ultrathink.perf.bench_startup import (
    _REFERENCE,
    STARTUP_BUDGET_RATIO,
    _backtest_argv,
    _wall_s,
)

ROUNDS = 11


@pytest.mark.bench
def test_backtest_process_within_1_2x_of_importing_numpy_and_pandas(record) -> None:
    _wall_s(_REFERENCE), _wall_s(_backtest_argv())  # warm the page cache and .pyc files
    ratios, backtest, reference = [], [], []
    for _ in range(ROUNDS):
        ref = _wall_s(_REFERENCE)
        run = _wall_s(_backtest_argv())
        reference.append(ref)
        backtest.append(run)
        ratios.append(run / ref)

    median = statistics.median(ratios)
    record(
        "startup.backtest_sp500",
        {
            "rounds": ROUNDS,
            "ratio_median": round(median, 3),
            "ratio_max": round(max(ratios), 3),
            "backtest_median_s": round(statistics.median(backtest), 3),
            "numpy_pandas_median_s": round(statistics.median(reference), 3),
            "budget_ratio": STARTUP_BUDGET_RATIO,
        },
    )
    assert median <= STARTUP_BUDGET_RATIO
