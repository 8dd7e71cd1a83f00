"""ML benchmarks (``make bench``): training time, ML backtest throughput, decision latency.

Budgets from issue #3: training the default ensemble on the embedded S&P 500 <= 60 s on
2 cores; the event-driven ML backtest >= 50,000 bars/s; decision latency (bar in -> order out:
streaming features + compiled ensemble + decision + risk checks, measured per ``on_bar``)
p50 <= 40 µs and p99 <= 100 µs over >= 100,000 events after warm-up, from an HdrHistogram.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ultrathink import services
from ultrathink.decision.ml import MLStrategy
from ultrathink.engine.config import EngineConfig

pytestmark = pytest.mark.bench

N_EVENTS = 200_000


def test_train_default_ensemble_on_embedded_data(
    tmp_path: Path, record: Callable[[str, dict[str, Any]], None]
) -> None:
    data = services.load("sp500")
    t0 = time.perf_counter()
    result, _ = services.train_model(data, {}, tmp_path / "models")
    seconds = time.perf_counter() - t0
    overall = result.report.overall
    record(
        "train_default_ensemble_sp500",
        {"seconds": seconds, "rows": result.n_rows, "oos_auc": overall.auc,
         "oos_sharpe": overall.sharpe, "buy_hold_sharpe": overall.buy_hold_sharpe},
    )  # fmt: skip
    assert seconds <= 60.0


def test_ml_backtest_throughput_and_decision_latency(
    tmp_path: Path, ml_bundle: Any, record: Callable[[str, dict[str, Any]], None]
) -> None:
    bundle = ml_bundle
    data = services.load(f"synthetic:n_bars={N_EVENTS},seed=2,freq=1min,start=2020-01-20")
    strategy = MLStrategy(max_model_age_days=None, range_tolerance=10.0).attach_model(bundle)
    config = EngineConfig(measure_latency=True)
    run = services.run_strategy(strategy, data, config, db_path=tmp_path / "bench.db")
    lat = run.latency_us
    assert lat is not None
    record(
        "ml_backtest_200k_bars",
        {"bars_per_s": run.bars_per_s, "n_fills": len(run.fills),
         "predictions": run.strategy_stats["n_predictions"], "holds": run.strategy_stats["holds"],
         "decision_latency_us": lat},
    )  # fmt: skip
    assert lat["count"] >= 100_000
    assert run.bars_per_s >= 50_000
    assert lat["p50"] <= 40.0
    assert lat["p99"] <= 100.0
