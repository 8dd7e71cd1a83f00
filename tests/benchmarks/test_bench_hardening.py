"""Hardening overhead (``make bench``): the layer adds <= 5 µs to p99 decision latency.

Issue #4's budget, measured with and without the hardening layer in the same process: the
ML strategy over 100,000 one-minute bars, decision latency per ``on_bar`` (the guard wraps
``on_bar`` inside the timing, so its breaker calls and latency recording are counted, and so
are the risk and execution breaker calls of every order sent from ``on_bar``). The two
configurations alternate over several rounds so drift of the host hits both alike; the
figure is the difference of the median-over-rounds p99s, next to the p50 difference.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import pytest

from ultrathink import services
from ultrathink.decision.ml import MLStrategy
from ultrathink.engine.config import EngineConfig, HardeningConfig

pytestmark = pytest.mark.bench

N_EVENTS = 100_000
ROUNDS = 5


def test_hardening_adds_at_most_5_us_to_p99_decision_latency(
    ml_bundle: Any, record: Callable[[str, dict[str, Any]], None]
) -> None:
    bundle = ml_bundle
    data = services.load(f"synthetic:n_bars={N_EVENTS},seed=2,freq=1min,start=2020-01-20")
    configs = {
        "off": EngineConfig(measure_latency=True),
        "on": EngineConfig(measure_latency=True, hardening=HardeningConfig(enabled=True)),
    }
    p50: dict[str, list[float]] = {"off": [], "on": []}
    p99: dict[str, list[float]] = {"off": [], "on": []}
    for i in range(ROUNDS):
        for name in ("off", "on") if i % 2 == 0 else ("on", "off"):
            strategy = MLStrategy(max_model_age_days=None, range_tolerance=10.0)
            run = services.run_strategy(strategy.attach_model(bundle), data, configs[name])
            assert run.latency_us is not None and run.latency_us["count"] >= 90_000
            p50[name].append(run.latency_us["p50"])
            p99[name].append(run.latency_us["p99"])
            if name == "on":
                assert run.trading_state == "ACTIVE"
    med = {k: {"p50": statistics.median(p50[k]), "p99": statistics.median(p99[k])} for k in p50}
    added_p99 = med["on"]["p99"] - med["off"]["p99"]
    record(
        "hardening_overhead_decision_latency",
        {"events": N_EVENTS, "rounds": ROUNDS, "off_us": med["off"], "on_us": med["on"],
         "added_p50_us": med["on"]["p50"] - med["off"]["p50"], "added_p99_us": added_p99,
         "p99_rounds_us": p99},
    )  # fmt: skip
    assert added_p99 <= 5.0
