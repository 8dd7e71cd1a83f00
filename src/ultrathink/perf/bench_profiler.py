"""Benchmarks with the sampling profiler on: compare them with their unprofiled twins.

``decision.ml_latency_profiled`` is ``decision.ml_latency`` (``bench_ml``) with every run
profiled by a :class:`~ultrathink.perf.profiler.ProfileSession` (1 bar in 4096 by default timed
stage by stage), and ``engine.sma_cross_profiled`` an ``sma_cross`` backtest without the store, with
its unprofiled twin ``engine.sma_cross_unprofiled``: the ratio of the two is the profiler's
throughput cost on the cheapest bar the engine runs. The budget (≤ 1 % of decision latency)
is asserted by ``tests/benchmarks/test_bench_profiler.py``, in one process, alternating.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ultrathink.perf.bench_data import bars
from ultrathink.perf.suite import Measurement, benchmark


@benchmark("decision.ml_latency_profiled", "decision", "us")
def ml_decision_latency_profiled(quick: bool) -> Callable[[], Measurement]:
    """ML decision latency (µs) with the sampling profiler on; twin of decision.ml_latency."""
    from ultrathink.perf.bench_ml import ml_latency_runner

    return ml_latency_runner(quick, profiled=True)


def _sma_cross(quick: bool, profiled: bool) -> Callable[[], Measurement]:
    from ultrathink import services
    from ultrathink.engine.config import EngineConfig

    data = bars(quick)

    def run() -> Measurement:
        strategy = services.make_strategy("sma_cross", {})
        if not profiled:
            return Measurement(
                value=services.run_strategy(strategy, data, EngineConfig()).bars_per_s
            )
        from ultrathink.perf.profiler import ProfileSession  # not on a base tree's twin

        with ProfileSession() as session:
            result = services.run_strategy(
                strategy, data, EngineConfig(), profiler=session.profiler_for
            )
        assert session.runs, "the run was not profiled"
        return Measurement(value=result.bars_per_s)

    return run


@benchmark("engine.sma_cross_unprofiled", "engine", "ops/s", repeats=5)
def sma_cross_unprofiled(quick: bool) -> Any:
    """``sma_cross`` backtest without the store: the engine's bars/s (twin of the next)."""
    return _sma_cross(quick, profiled=False)


@benchmark("engine.sma_cross_profiled", "engine", "ops/s", repeats=5)
def sma_cross_profiled(quick: bool) -> Any:
    """``sma_cross`` backtest without the store, sampling profiler on: the engine's bars/s."""
    return _sma_cross(quick, profiled=True)
