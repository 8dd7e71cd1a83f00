"""The registry and the runner: what is timed, what is not, and how values are derived."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from ultrathink.perf import suite
from ultrathink.perf.suite import (
    Benchmark,
    Measurement,
    UnknownBenchmarkError,
    benchmark,
    repeat_counts,
    run_benchmark,
)

STAGES = {
    "data", "features", "models", "decision", "risk", "execution", "portfolio",
    "persistence", "engine",
}  # fmt: skip
REQUIRED = (
    "data.generate_synthetic", "data.load_csv", "data.validate_frame", "features.vectorised",
    "features.streaming_update", "models.train_ensemble", "models.predict_row",
    "models.predict_batch", "risk.check", "execution.paper_submit", "execution.paper_fill",
    "portfolio.apply_fill", "portfolio.mark", "persistence.store_writer",
    "persistence.audit_verify", "engine.backtest_sma_cross", "engine.peak_rss_session",
    "decision.ml_latency",
)  # fmt: skip


class FakeClock:
    """Stands in for the ``time`` module: only ``advance`` moves ``perf_counter``."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def perf_counter(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(suite, "time", SimpleNamespace(perf_counter=fake.perf_counter))
    return fake


def _bench(factory: Any, unit: str = "s", repeats: int = 3, warmup: int = 1) -> Benchmark:
    return Benchmark("t.fake", "test", unit, factory, "fake", repeats, warmup)


def test_registry_covers_every_stage_with_at_least_15_benchmarks() -> None:
    benches = suite.registry()

    assert len(benches) >= 15
    assert {b.group for b in benches.values()} >= STAGES
    assert set(REQUIRED) <= set(benches)
    assert all(b.description for b in benches.values())


def test_set_up_and_tear_down_are_not_timed(clock: FakeClock) -> None:
    calls: list[str] = []

    class Case:
        def setup(self) -> None:
            calls.append("setup")
            clock.advance(100.0)

        def run(self) -> None:
            clock.advance(2.0)

        def teardown(self) -> None:
            calls.append("teardown")
            clock.advance(100.0)

        def close(self) -> None:
            calls.append("close")

    result = run_benchmark(_bench(lambda quick: Case()), repeats=3, warmup=2)

    assert result.values == [2.0, 2.0, 2.0]
    assert calls == ["setup", "teardown"] * 5 + ["close"]
    assert result.n_warmup == 2


def test_factory_set_up_runs_once_and_warm_ups_are_dropped(clock: FakeClock) -> None:
    n_factory = 0
    durations = iter([50.0, 1.0, 3.0, 2.0])  # the first call is the warm-up

    def factory(quick: bool) -> Any:
        nonlocal n_factory
        n_factory += 1
        clock.advance(1000.0)
        return lambda: clock.advance(next(durations))

    result = run_benchmark(_bench(factory), repeats=3, warmup=1)

    assert n_factory == 1
    assert result.values == [1.0, 3.0, 2.0]
    assert result.median == 2.0
    assert result.p99 == pytest.approx(np.percentile([1.0, 3.0, 2.0], 99))


def test_ops_per_second_divides_the_returned_count(clock: FakeClock) -> None:
    def factory(quick: bool) -> Any:
        def run() -> int:
            clock.advance(0.5)
            return 1000

        return run

    result = run_benchmark(_bench(factory, unit="ops/s"), repeats=2, warmup=0)

    assert result.values == [2000.0, 2000.0]
    assert not result.lower_is_better


def test_measurement_value_and_events_are_kept(clock: FakeClock) -> None:
    events = [1_000, 2_000, 3_000, 100_000]

    result = run_benchmark(
        _bench(lambda quick: lambda: Measurement(value=7.5, events_ns=events), unit="us"),
        repeats=2,
        warmup=1,
    )

    assert result.values == [7.5, 7.5]
    assert result.events_ns is not None and result.events_ns.tolist() == events * 2
    summary = result.event_summary_us()
    assert summary is not None and summary["count"] == 8 and summary["p50"] == pytest.approx(2.0)
    assert result.to_dict()["events_us"] == summary


def test_ops_benchmark_must_return_a_count() -> None:
    with pytest.raises(TypeError, match="number of ops"):
        run_benchmark(_bench(lambda quick: lambda: None, unit="ops/s"), repeats=1, warmup=0)


def test_close_runs_even_when_a_repeat_raises() -> None:
    closed = []

    class Broken:
        def setup(self) -> None: ...

        def run(self) -> None:
            raise RuntimeError("boom")

        def teardown(self) -> None: ...

        def close(self) -> None:
            closed.append(True)

    with pytest.raises(RuntimeError, match="boom"):
        run_benchmark(_bench(lambda quick: Broken()), repeats=1, warmup=0)
    assert closed == [True]


@pytest.mark.parametrize(
    ("quick", "repeats", "warmup", "expected"),
    [(False, None, None, (5, 2)), (True, None, None, (3, 1)), (True, 7, 0, (7, 0))],
)
def test_repeat_counts(
    quick: bool, repeats: int | None, warmup: int | None, expected: tuple[int, int]
) -> None:
    bench = _bench(lambda q: None, repeats=5, warmup=2)

    assert repeat_counts(bench, quick=quick, repeats=repeats, warmup=warmup) == expected


def test_the_decorator_registers_and_rejects_mistakes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(suite, "_REGISTRY", {})

    @benchmark("t.one", "test", "ops/s", repeats=2)
    def one(quick: bool) -> Any:
        """Count to ten (ops/s)."""
        return lambda: 10

    assert suite._REGISTRY["t.one"].description == "Count to ten (ops/s)."
    assert suite._REGISTRY["t.one"].repeats == 2
    with pytest.raises(ValueError, match="registered twice"):
        benchmark("t.one", "test")(lambda quick: None)
    with pytest.raises(ValueError, match="unit"):
        benchmark("t.two", "test", unit="bars")


def test_lookups_name_the_unknown_benchmark() -> None:
    with pytest.raises(UnknownBenchmarkError, match=r"did you mean risk\.check"):
        suite.get("risk.chek")
    with pytest.raises(UnknownBenchmarkError, match="no benchmark matches 'nothing-like-it'"):
        suite.select("nothing-like-it")
    assert [b.name for b in suite.select("portfolio.")] == [
        "portfolio.apply_fill",
        "portfolio.mark",
    ]
