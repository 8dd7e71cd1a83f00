"""Profiler overhead (``make bench``): the always-on profiler costs <= 1 % of decision latency.

Issue #5's budget, measured with and without the sampling profiler in the same process: the
ML strategy over 100,000 one-minute bars, decision latency per ``on_bar`` (the kernel's
``measure_latency`` timer, which sits inside the profiler's probes, so a probed bar's probes
are counted). The two configurations alternate over several rounds so drift of the host hits
both alike; the figures are the medians over rounds of each run's p50 and p99, and of its
bars/s (which also carries the kernel's per-bar sample check and the probed bars' cost).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import pytest

from ultrathink import services
from ultrathink.decision.ml import MLStrategy
from ultrathink.engine.config import EngineConfig
from ultrathink.perf.profiler import DEFAULT_SAMPLE_EVERY, ProfileSession

pytestmark = pytest.mark.bench

N_EVENTS = 100_000
ROUNDS = 7


def test_profiler_costs_at_most_1_pct_of_p50_decision_latency(
    ml_bundle: Any, record: Callable[[str, dict[str, Any]], None]
) -> None:
    bundle = ml_bundle
    data = services.load(f"synthetic:n_bars={N_EVENTS},seed=2,freq=1min,start=2020-01-20")
    config = EngineConfig(measure_latency=True)
    rows: dict[str, dict[str, list[float]]] = {
        name: {"p50": [], "p99": [], "bars_per_s": []} for name in ("off", "on")
    }
    profile: dict[str, Any] = {}
    for i in range(ROUNDS):
        for name in ("off", "on") if i % 2 == 0 else ("on", "off"):
            strategy = MLStrategy(max_model_age_days=None, range_tolerance=10.0)
            strategy.attach_model(bundle)
            if name == "on":
                with ProfileSession(DEFAULT_SAMPLE_EVERY) as session:
                    run = services.run_strategy(
                        strategy, data, config, profiler=session.profiler_for
                    )
                profile = session.runs[0].to_json()
            else:
                run = services.run_strategy(strategy, data, config)
            assert run.latency_us is not None and run.latency_us["count"] >= 90_000
            rows[name]["p50"].append(run.latency_us["p50"])
            rows[name]["p99"].append(run.latency_us["p99"])
            rows[name]["bars_per_s"].append(run.bars_per_s)
    med = {k: {m: statistics.median(v) for m, v in r.items()} for k, r in rows.items()}
    overhead = {m: med["on"][m] / med["off"][m] - 1.0 for m in ("p50", "p99")}
    overhead["bars_per_s"] = 1.0 - med["on"]["bars_per_s"] / med["off"]["bars_per_s"]
    record(
        "profiler_overhead_decision_latency",
        {"events": N_EVENTS, "rounds": ROUNDS, "sample_every": DEFAULT_SAMPLE_EVERY,
         "off": med["off"], "on": med["on"], "overhead_pct": {k: 100 * v for k, v in
         overhead.items()}, "rounds_us": rows, "sampled_bars": profile["n_sampled_bars"],
         "shares": {r["stage"]: round(r["share"], 4) for r in profile["bottleneck"]}},
    )  # fmt: skip
    assert profile["n_sampled_bars"] >= N_EVENTS // DEFAULT_SAMPLE_EVERY - 2
    assert overhead["p50"] <= 0.01
