"""Performance: the benchmark suite (``ultrathink bench``) and regression detection.

* :mod:`ultrathink.perf.suite` -- the ``@benchmark`` registry and the runner (warm-up,
  repeats, median / p99 / min-max, per-event latency percentiles);
* ``bench_*`` modules -- the benchmark definitions, one module per group of stages;
* :mod:`ultrathink.perf.results` -- provenance and ``.bench/results.jsonl``;
* :mod:`ultrathink.perf.compare` -- ``--compare REF``: base and head interleaved in
  subprocesses (:mod:`ultrathink.perf.worker`), judged by :mod:`ultrathink.perf.stats`;
* :mod:`ultrathink.perf.plots` -- latency histograms and a throughput chart (PNG).

Nothing in the engine imports this package; it only drives the public APIs of the stages.
"""

from ultrathink.perf.suite import (
    Benchmark,
    BenchResult,
    Measurement,
    UnknownBenchmarkError,
    benchmark,
    get,
    registry,
    run_benchmark,
    select,
)

__all__ = [
    "BenchResult",
    "Benchmark",
    "Measurement",
    "UnknownBenchmarkError",
    "benchmark",
    "get",
    "registry",
    "run_benchmark",
    "select",
]
