"""Every registered benchmark runs in quick mode and yields a sane value in its unit."""

from __future__ import annotations

import math

import pytest

from ultrathink.perf import registry, run_benchmark

# (benchmark, smallest plausible value): a broken benchmark returns 0 or nonsense
FLOORS = {"ops/s": 100.0, "s": 1e-6, "us": 0.05, "MB": 10.0}


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
