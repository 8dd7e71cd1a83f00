"""Every registered benchmark runs in quick mode and yields a sane value in its unit."""

from __future__ import annotations

import math

import pytest

from ultrathink.perf import registry, run_benchmark

# (unit, smallest plausible value): a broken benchmark returns 0 or nonsense. Not budgets
# (those are `-m bench`): the throughput floor sits ~25x below the slowest quick benchmark
# measured on a 2-core machine at load average 18, so load alone cannot trip it
FLOORS = {"ops/s": 100.0, "s": 1e-6, "us": 0.05, "MB": 10.0, "x": 0.05}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(registry()))
def test_runs_in_quick_mode(name: str) -> None:
    bench = registry()[name]

    result = run_benchmark(bench, quick=True, repeats=1, warmup=0)

    assert len(result.values) == 1
    value = result.values[0]
    assert math.isfinite(value) and value >= FLOORS[bench.unit]
    if bench.unit == "us":  # latency benchmarks keep every event's duration
        summary = result.event_summary_us()
        assert summary is not None and summary["count"] >= 1_000
