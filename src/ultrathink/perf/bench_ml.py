"""Benchmarks of the ML stage: training, compiling, inference and the ML strategy's latency.

Full mode follows ``tests/benchmarks/test_bench_inference.py`` and ``test_bench_ml.py``: the
default ``EnsembleClassifier`` on 5,000 x 30 random rows with signal, single-row inference
paced at 40,000 calls/s and timed from each call's intended start (no coordinated
omission), batch scoring of 1,000,000 rows on every core, and the ML strategy trained on
``synthetic:n_bars=20000,seed=1`` then run over 200,000 other bars. Quick mode shrinks the
data and the ensemble (30 trees per member) so each benchmark takes about a second.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ultrathink.perf.suite import Measurement, benchmark

TICK_NS = 25_000  # single-row calls are offered at 40,000 per second
N_FEATURES = 30
_QUICK_MODEL = {"gbm_n_estimators": 30, "forest_n_estimators": 30}


def _rows(n_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    # random features, the first 10 carrying signal (as the inference benchmark)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, N_FEATURES))
    beta = np.random.default_rng(99).normal(size=N_FEATURES) * (np.arange(N_FEATURES) < 10)
    y = (X @ beta + 2.0 * rng.normal(size=n_rows) > 0).astype(np.int64)
    return X, y


def _model_params(quick: bool) -> dict[str, Any]:
    return dict(_QUICK_MODEL) if quick else {}


@functools.cache
def fitted(quick: bool) -> tuple[Any, Any]:
    """(EnsembleClassifier, warmed-up CompiledEnsemble), fitted once per process."""
    from ultrathink.models.compiled import CompiledEnsemble
    from ultrathink.models.ensemble import EnsembleClassifier

    X, y = _rows(2_000 if quick else 5_000, seed=0)
    model = EnsembleClassifier(random_state=0, **_model_params(quick)).fit(X, y)
    compiled = CompiledEnsemble.from_ensemble(model)
    compiled.warmup()
    return model, compiled


@benchmark("models.train_ensemble", "models", "s", repeats=3)
def train_ensemble(quick: bool) -> Callable[[], None]:
    """``EnsembleClassifier.fit``: LightGBM + ExtraTrees + logistic on random rows (s)."""
    from ultrathink.models.ensemble import EnsembleClassifier

    X, y = _rows(2_000 if quick else 5_000, seed=0)
    params = _model_params(quick)

    def run() -> None:
        EnsembleClassifier(random_state=0, **params).fit(X, y)

    return run


@benchmark("models.compile_ensemble", "models", "s")
def compile_ensemble(quick: bool) -> Callable[[], None]:
    """``CompiledEnsemble.from_ensemble``: flatten the fitted trees for fast inference (s)."""
    from ultrathink.models.compiled import CompiledEnsemble

    model, _ = fitted(quick)

    def run() -> None:
        CompiledEnsemble.from_ensemble(model)

    return run


@benchmark("models.predict_row", "models", "us")
def predict_row(quick: bool) -> Callable[[], Measurement]:
    """Compiled single-row inference, paced open loop (median µs from intended start)."""
    _, compiled = fitted(quick)
    rows, _ = _rows(1_024, seed=1)
    n_calls = 2_000 if quick else 10_000
    for i in range(1_000):
        compiled.predict_row(rows[i % rows.shape[0]])

    def run() -> Measurement:
        events = _paced(compiled.predict_row, rows, n_calls)
        return Measurement(value=float(np.median(events)) / 1e3, events_ns=events)

    return run


def _paced(fn: Callable[[np.ndarray], float], rows: np.ndarray, n_calls: int) -> list[int]:
    # call i is due at start + i * TICK_NS; its latency runs from then, so a slow call also
    # charges the calls queued behind it
    events = [0] * n_calls
    clock = time.perf_counter_ns
    start = clock() + TICK_NS
    n_rows = rows.shape[0]
    for i in range(n_calls):
        due = start + i * TICK_NS
        while clock() < due:
            pass
        fn(rows[i % n_rows])
        events[i] = max(1, clock() - due)
    return events


@benchmark("models.predict_batch", "models", "ops/s")
def predict_batch(quick: bool) -> Callable[[], int]:
    """``CompiledEnsemble.predict_batch`` on every core (rows/s)."""
    _, compiled = fitted(quick)
    X, _ = _rows(50_000 if quick else 1_000_000, seed=2)
    n_threads = os.cpu_count() or 1
    compiled.predict_batch(X[:1_000], n_threads=n_threads)

    def run() -> int:
        return int(compiled.predict_batch(X, n_threads=n_threads).shape[0])

    return run


@benchmark("models.reference_predict_proba", "models", "ops/s", repeats=3)
def reference_predict_proba(quick: bool) -> Callable[[], int]:
    """``EnsembleClassifier.predict_proba`` (the members' own code): reference rows/s."""
    model, _ = fitted(quick)
    X, _ = _rows(5_000 if quick else 50_000, seed=2)

    def run() -> int:
        return int(model.predict_proba(X).shape[0])

    return run


@functools.cache
def ml_bundle(quick: bool) -> Any:
    """A ``ModelBundle`` trained on synthetic bars through the public training service."""
    from ultrathink import services

    n_bars = 5_000 if quick else 20_000
    config: dict[str, Any] = {"model_params": _model_params(quick)}
    if quick:
        config["n_folds"] = 2
    registry = Path(tempfile.mkdtemp(prefix="ultrathink-bench-models-"))
    try:
        data = services.load(f"synthetic:n_bars={n_bars},seed=1,freq=1min")
        result, _ = services.train_model(data, config, registry)
        return services.load_model_bundle(registry, result.version)
    finally:
        shutil.rmtree(registry, ignore_errors=True)


def _ml_session(quick: bool) -> tuple[Any, Any]:
    from ultrathink import services

    n_bars = 20_000 if quick else 200_000
    data = services.load(f"synthetic:n_bars={n_bars},seed=2,freq=1min,start=2020-01-20")
    return ml_bundle(quick), data


def _ml_strategy(bundle: Any) -> Any:
    from ultrathink.decision.ml import MLStrategy

    return MLStrategy(max_model_age_days=None, range_tolerance=10.0).attach_model(bundle)


@benchmark("decision.ml_latency", "decision", "us")
def ml_decision_latency(quick: bool) -> Callable[[], Measurement]:
    """ML strategy decision latency, ``on_bar`` entry to return, every bar after warm-up (µs)."""
    return ml_latency_runner(quick, profiled=False)


def ml_latency_runner(quick: bool, *, profiled: bool) -> Callable[[], Measurement]:
    """One ML run's decision latencies per repeat; ``profiled`` builds it under the profiler."""
    from ultrathink.engine.config import EngineConfig
    from ultrathink.engine.recorder import Recorder

    bundle, data = _ml_session(quick)
    config = EngineConfig(measure_latency=True)
    build = _kernel_builder(profiled)

    def run() -> Measurement:
        strategy = _ml_strategy(bundle)
        with _session(profiled) as session:  # the profiler's process and GC readings too
            kernel = build(strategy, data, config, Recorder(None, 100_000.0), session)
            kernel.run(data)
        kernel.finish()
        assert kernel.latency_ns is not None
        events = np.frombuffer(kernel.latency_ns, dtype=np.int64)[strategy.warmup_bars :]
        return Measurement(value=float(np.median(events)) / 1e3, events_ns=events.copy())

    return run


def _kernel_builder(profiled: bool) -> Callable[..., Any]:
    # (strategy, data, config, recorder) -> a wired kernel; ``bench --compare`` also runs
    # this module against base trees from before the engine's wiring module (issue #9)
    from ultrathink.engine.runner import RunSpec

    try:
        from ultrathink.engine.wiring import build_engine
    except ImportError:  # a base tree: build_kernel, never profiled here
        from ultrathink.engine.runner import build_kernel  # type: ignore[attr-defined]

        if profiled:
            raise RuntimeError("this tree predates RunSpec.profiler: nothing to compare") from None
        return lambda s, d, c, r, _session: build_kernel(RunSpec(s, d, c), r)

    def build(strategy: Any, data: Any, config: Any, recorder: Any, session: Any) -> Any:
        factory = session.profiler_for if session is not None else None
        return build_engine(RunSpec(strategy, data, config, profiler=factory), recorder).kernel

    return build


def _session(profiled: bool) -> Any:
    from contextlib import nullcontext

    if not profiled:
        return nullcontext()
    from ultrathink.perf.profiler import ProfileSession

    return ProfileSession()


class _MLBacktest:
    # a fresh strategy and store per repeat; the engine's own bars/s (writer start excluded)
    def __init__(self, quick: bool) -> None:
        from ultrathink.engine.config import EngineConfig

        self.bundle, self.data = _ml_session(quick)
        self.config = EngineConfig(measure_latency=True)
        self._dir = Path(tempfile.mkdtemp(prefix="ultrathink-bench-"))
        self._n = 0

    def setup(self) -> None:
        self._n += 1
        self.strategy = _ml_strategy(self.bundle)

    def run(self) -> Measurement:
        from ultrathink import services

        db = self._dir / f"ml{self._n}.db"
        result = services.run_strategy(self.strategy, self.data, self.config, db_path=db)
        return Measurement(value=result.bars_per_s)

    def teardown(self) -> None:
        for path in self._dir.glob(f"ml{self._n}.db*"):
            path.unlink()

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


@benchmark("engine.ml_backtest", "engine", "ops/s", repeats=3)
def ml_backtest(quick: bool) -> _MLBacktest:
    """Event-driven ML backtest with the SQLite store on, the engine's bars/s."""
    return _MLBacktest(quick)
