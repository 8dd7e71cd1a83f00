"""The sampling profiler: which bars it times, what it measures, its exports, and that a
profiled run trades exactly as an unprofiled one.

Timings are checked with a fake clock that the fake stages advance by known amounts, so
no test asserts wall-clock time.
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from ultrathink.core.events import Bar
from ultrathink.data import MarketData, load_data
from ultrathink.decision.builtin import SmaCross
from ultrathink.decision.ml import MLStrategy, ModelBundle
from ultrathink.decision.strategy import Strategy
from ultrathink.engine import runner
from ultrathink.engine.config import EngineConfig, HardeningConfig
from ultrathink.engine.recorder import Recorder
from ultrathink.engine.results import RunResult
from ultrathink.engine.runner import RunSpec, build_kernel, run
from ultrathink.errors import ConfigError, StrategyError
from ultrathink.features.spec import FEATURE_INDEX, FEATURE_NAMES
from ultrathink.perf.process import GcMonitor, ProcessSample
from ultrathink.perf.profiler import (
    RUN_SCHEMA,
    SESSION_SCHEMA,
    STAGES,
    Profiler,
    ProfileSession,
)

N_BARS = 20_000


class FakeClock:
    """A ns clock that only moves when a fake stage says so."""

    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now

    def spend(self, ns: int) -> None:
        self.now += ns


def decision_ns(n: int) -> int:
    # a different, known on_bar duration for every bar: 1..97 µs
    return 1_000 * (1 + n % 97)


def drive(prof: Profiler, clock: FakeClock, n_bars: int) -> list[int]:
    """Run ``n_bars`` through the kernel's sampling protocol with fake stages; return the
    indices of the bars that ran with timed stages."""
    state = {"n": 0}

    def broker_on_bar(bar: Bar) -> None:
        clock.spend(100)

    def mark(symbol: str, close: float) -> float:
        clock.spend(200)
        return 1.0

    def on_equity(ts: int, eq: float) -> None:
        clock.spend(50)

    def update(close: float) -> None:
        clock.spend(300)

    def on_bar(bar: Bar) -> None:
        clock.spend(decision_ns(state["n"]))

    updaters: dict[str, tuple[Callable[[float], object], ...]] = {"X": (update,)}
    plain = (broker_on_bar, mark, on_equity, updaters, on_bar)
    stages = plain
    probed = []
    at = prof.start()
    for n in range(n_bars):
        state["n"] = n
        clock.spend(10)  # the market-data gap before the kernel sees the bar
        bar = Bar(n, "X", 1.0, 1.0, 1.0, 1.0, 1.0)
        if n == at:
            at, stages = prof.switch(n, bar, plain)  # type: ignore[arg-type]
        if stages is not plain:
            probed.append(n)
        b_on_bar, s_mark, s_equity, s_updaters, s_on_bar = stages
        b_on_bar(bar)
        s_mark("X", 1.0)
        s_equity(n, 1.0)
        for up in s_updaters.get("X"):  # type: ignore[union-attr]
            up(1.0)
        s_on_bar(bar)
    prof.stop()
    prof.n_bars = n_bars  # a kernel's profiler reads it from the kernel
    return probed


@pytest.fixture
def fake_run() -> tuple[Profiler, list[int]]:
    clock = FakeClock()
    prof = Profiler(64, timer=clock, warmup_bars=2)
    probed = drive(prof, clock, 64 * 200)
    return prof, probed


# -- which bars ------------------------------------------------------------------------------
def test_one_bar_in_n_is_recorded_at_k_n_plus_half_n_after_its_warmup_bars(
    fake_run: tuple[Profiler, list[int]],
) -> None:
    prof, probed = fake_run
    recorded = [n for n in probed if n % 64 == 32]
    assert recorded == list(range(96, 64 * 200, 64))
    assert all(n % 64 in (30, 31, 32) for n in probed)  # 2 warm-up bars, then the recorded
    assert prof.n_sampled == len(recorded)
    assert prof.stages["decision"].n == prof.stages["bar"].n == prof.n_sampled


@pytest.mark.parametrize(("every", "expected"), [(1, 198), (2, 99)])
def test_small_n_probes_every_bar_and_records_one_in_n(every: int, expected: int) -> None:
    clock = FakeClock()
    prof = Profiler(every, timer=clock)
    probed = drive(prof, clock, 200)
    assert probed == list(range(1, 200))
    assert prof.n_sampled == expected


def test_a_real_run_records_about_n_bars_over_n(sma_data: MarketData) -> None:
    with ProfileSession(256) as session:
        result = run(RunSpec(SmaCross(), sma_data, EngineConfig()))
    (prof,) = session.runs
    assert prof.n_bars == result.n_bars == N_BARS
    assert abs(prof.n_sampled - N_BARS / 256) <= 2
    for stage in ("market_data", "features", "decision", "portfolio"):  # every bar runs them
        assert prof.stages[stage].n == prof.n_sampled
    assert prof.stages["model"].n == 0  # sma_cross has no model


# -- what it measures ------------------------------------------------------------------------
def test_percentiles_of_known_durations(fake_run: tuple[Profiler, list[int]]) -> None:
    prof, probed = fake_run
    recorded = [n for n in probed if n % 64 == 32]
    stages = prof.to_json()["stages"]
    expected = sorted(decision_ns(n) for n in recorded)
    for p in (50, 90, 99, 99.9):
        rank = max(int(p / 100 * len(expected) + 0.5), 1)  # HdrHistogram's rank
        assert stages["decision"][f"p{p:g}_us"] == pytest.approx(expected[rank - 1] / 1e3, rel=1e-3)
    assert stages["decision"]["max_us"] == pytest.approx(max(expected) / 1e3, rel=1e-3)
    assert stages["decision"]["mean_us"] == pytest.approx(np.mean(expected) / 1e3)
    assert stages["features"]["p50_us"] == pytest.approx(0.3, rel=1e-3)
    assert stages["portfolio"]["p99_us"] == pytest.approx(0.2, rel=1e-3)
    assert stages["execution"]["max_us"] == pytest.approx(0.1, rel=1e-3)
    assert stages["risk"]["p50_us"] == pytest.approx(0.05, rel=1e-3)
    assert stages["market_data"]["p50_us"] == pytest.approx(0.01, rel=1e-3)
    assert stages["other"]["max_us"] <= 0.001  # everything is inside a stage
    assert stages["decision"]["count"] == len(recorded)


def test_bottleneck_ranks_stages_by_share_of_estimated_time(
    fake_run: tuple[Profiler, list[int]],
) -> None:
    prof, _ = fake_run
    rows = prof.bottleneck()
    order = [r["stage"] for r in rows]
    assert order[:6] == ["decision", "features", "portfolio", "execution", "risk", "market_data"]
    assert set(order) == {*STAGES, "persistence_queue", "other"}
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    scale = prof.n_bars / prof.n_sampled
    features = next(r for r in rows if r["stage"] == "features")
    assert features["estimated_s"] == pytest.approx(300 * prof.n_sampled * scale / 1e9)
    assert [r["share"] for r in rows] == sorted((r["share"] for r in rows), reverse=True)


def test_exact_stages_are_timed_every_call_and_kept_out_of_the_sampled_bar() -> None:
    clock = FakeClock()
    prof = Profiler(4, timer=clock, warmup_bars=0)
    prof.start()
    plain = (lambda b: None, lambda s, c: 0.0, lambda t, e: None, {}, lambda b: None)
    bar = Bar(0, "X", 1.0, 1.0, 1.0, 1.0, 1.0)
    flush = prof._exact_probe(lambda: clock.spend(5_000), "persistence_queue")
    prof._next = 6
    _, stages = prof.switch(6, bar, plain)  # type: ignore[arg-type]
    flush()  # a flush inside the recorded bar: exact, not the bar's
    stages[1]("X", 1.0)
    clock.spend(700)  # kernel glue: "other"
    stages[4](bar)
    prof.switch(7, bar, plain)  # type: ignore[arg-type]
    flush()  # and one outside any sample
    assert prof.exact["persistence_queue"].n == 2
    assert prof.exact["persistence_queue"].total_ns == 10_000
    assert prof.stages["bar"].total_ns == 700
    assert prof.stages["other"].total_ns == 700


# -- exports ---------------------------------------------------------------------------------
def test_json_schema(fake_run: tuple[Profiler, list[int]]) -> None:
    prof, _ = fake_run
    doc = json.loads(json.dumps(prof.to_json()))
    assert doc["schema"] == RUN_SCHEMA
    assert doc["sample_every"] == 64 and doc["n_sampled_bars"] == prof.n_sampled
    summary_keys = {"count", "mean_us", "p50_us", "p90_us", "p99_us", "p99.9_us", "max_us",
                    "total_s"}  # fmt: skip
    assert set(doc["stages"]) == {*STAGES, "other"}
    for summary in [*doc["stages"].values(), *doc["calls"].values(), doc["bar"]]:
        assert set(summary) == summary_keys
    assert set(doc["calls"]) == {"market_data.load", "persistence_queue", "pacing_wait"}
    assert {"bars", "orders", "fills", "bars_per_s", "wall_s"} <= set(doc["throughput"])
    assert {"cpu_user_s", "cpu_system_s", "rss_mb", "rss_peak_mb"} <= set(doc["process"])
    assert set(doc["gc"]["collections"]) == {"gen0", "gen1", "gen2"}
    assert {"stage", "share", "estimated_s"} == set(doc["bottleneck"][0])
    assert {"inside_ns", "outside_ns", "per_sampled_bar"} == set(doc["probes"])


def test_session_json_has_every_run_and_the_whole_process(sma_data: MarketData) -> None:
    with ProfileSession(512) as session:
        for fast in (5, 10):
            run(RunSpec(SmaCross(fast=fast, slow=30), sma_data, EngineConfig()))
    doc = session.to_json()
    assert doc["schema"] == SESSION_SCHEMA
    assert [r["label"] for r in doc["runs"]] == ["1", "2"]
    assert doc["process"]["wall_s"] > 0 and doc["process"]["rss_peak_mb"] > 0
    assert doc["runs"][0]["gc"]["enabled_at_start"] is False  # the kernel pauses the GC
    assert doc["runs"][0]["throughput"]["fills"] > 0


def test_prometheus_text_parses(fake_run: tuple[Profiler, list[int]]) -> None:
    prof, _ = fake_run
    families = {f.name: f for f in text_string_to_metric_families(prof.to_prometheus().decode())}
    names = ("stage_seconds", "stage_share", "events", "gc_collections", "process",
             "sample_every")  # fmt: skip
    assert {f"ultrathink_profile_{name}" for name in names} <= set(families)
    stage = families["ultrathink_profile_stage_seconds"]
    assert stage.type == "summary"
    p50 = [
        s for s in stage.samples if s.labels.get("quantile") == "0.5"
        and s.labels.get("stage") == "features"
    ]  # fmt: skip
    assert p50 and p50[0].value == pytest.approx(300e-9, rel=1e-3)
    share = {s.labels["stage"]: s.value for s in families["ultrathink_profile_stage_share"].samples}
    assert max(share, key=share.__getitem__) == "decision"
    events = {s.labels["kind"]: s.value for s in families["ultrathink_profile_events"].samples}
    assert events["bars"] == prof.n_bars


# -- a profiled run is the same run ----------------------------------------------------------
@pytest.fixture(scope="module")
def sma_data() -> MarketData:
    return load_data(f"synthetic:n_bars={N_BARS},seed=1")


def same_run(a: RunResult, b: RunResult) -> None:
    assert a.fills == b.fills and a.fills
    np.testing.assert_array_equal(a.equity, b.equity)
    np.testing.assert_array_equal(a.cash, b.cash)
    assert a.order_counts == b.order_counts
    assert a.final_positions == b.final_positions
    assert a.strategy_stats == b.strategy_stats


def profiled(spec: RunSpec, sample_every: int) -> tuple[RunResult, Profiler]:
    with ProfileSession(sample_every) as session:
        result = run(spec)
    return result, session.runs[0]


@pytest.mark.parametrize("hardening", [False, True])
def test_sma_cross_trades_the_same_with_the_profiler(sma_data: MarketData, hardening: bool) -> None:
    config = EngineConfig(hardening=HardeningConfig(enabled=hardening), measure_latency=True)
    plain = run(RunSpec(SmaCross(), sma_data, config))
    result, prof = profiled(RunSpec(SmaCross(), sma_data, config), 8)
    same_run(plain, result)
    assert prof.stages["execution"].n > 0 and prof.stages["risk"].n > 0


class HashModel:
    """A deterministic stand-in for the compiled ensemble that trades often."""

    def __call__(self, x: np.ndarray) -> float:
        return float(0.5 + 0.49 * math.sin(1e3 * float(np.nansum(x))))


def ml_strategy() -> MLStrategy:
    n = len(FEATURE_NAMES)
    bundle = ModelBundle(
        version="v-test", predict_row=HashModel(),
        feature_index=np.array([FEATURE_INDEX[name] for name in FEATURE_NAMES]),
        feature_names=list(FEATURE_NAMES), low=np.full(n, -1e12), high=np.full(n, 1e12),
        train_start_ns=0, train_end_ns=1, periods_per_year=365.0 * 24 * 60,
    )  # fmt: skip
    return MLStrategy(max_model_age_days=None).attach_model(bundle)


@pytest.fixture(scope="module")
def ml_data() -> MarketData:
    return load_data("synthetic:n_bars=3000,seed=4,n_symbols=3,freq=1min")


def test_ml_strategy_on_three_symbols_trades_the_same_with_the_profiler(
    ml_data: MarketData,
) -> None:
    config = EngineConfig(measure_latency=True)
    plain = run(RunSpec(ml_strategy(), ml_data, config))
    result, prof = profiled(RunSpec(ml_strategy(), ml_data, config), 4)
    same_run(plain, result)
    assert plain.latency_us is not None and result.latency_us is not None
    assert plain.latency_us["count"] == result.latency_us["count"]
    for stage in ("model", "features", "execution", "portfolio"):
        assert prof.stages[stage].n > 0, stage


def test_probed_bars_leave_every_component_as_it_was(ml_data: MarketData) -> None:
    strategy = ml_strategy()
    with ProfileSession(4):
        kernel = build_kernel(RunSpec(strategy, ml_data, EngineConfig()), Recorder(None, 1e5))
    kernel.run(ml_data)
    ctx = kernel.ctx
    assert (type(ctx.risk), type(ctx.broker), type(ctx.portfolio)) == (
        type(kernel.risk), type(kernel.broker), type(kernel.portfolio)
    )  # fmt: skip
    assert ctx.risk is kernel.risk and ctx.portfolio is kernel.portfolio
    assert isinstance(strategy.bundle.predict_row, HashModel)  # type: ignore[union-attr]
    assert all(type(s.features).__name__ == "StreamingFeatures" for s in strategy._symbols.values())
    # values were swapped, never new instance attributes added (they slow every bar)
    assert "check" not in vars(kernel.risk) and "apply_fill" not in vars(kernel.portfolio)
    assert "submit" not in vars(kernel.broker)


class FailsAt(Strategy):
    """Raises in ``on_bar`` at bar ``n`` (a recorded bar of a profiled run)."""

    name = "fails_at"

    def __init__(self, n: int) -> None:
        super().__init__()
        self.fail_at, self.seen = n, 0

    def on_bar(self, bar: Bar) -> None:
        self.seen += 1
        if self.seen > self.fail_at:
            raise RuntimeError("boom")


def test_a_strategy_error_on_a_probed_bar_leaves_no_probe_behind(sma_data: MarketData) -> None:
    spec = RunSpec(FailsAt(10), sma_data, EngineConfig())
    with ProfileSession(4) as session, pytest.raises(StrategyError, match="boom"):
        kernel = build_kernel(spec, Recorder(None, 1e5))
        kernel.run(sma_data)
    assert session.runs[0]._undo == [] and not session.runs[0]._active
    assert type(kernel.ctx.risk).__name__ == "RiskEngine"
    assert type(kernel.ctx.portfolio).__name__ == "Portfolio"


# -- wiring ----------------------------------------------------------------------------------
def test_sample_every_must_be_a_power_of_two() -> None:
    with pytest.raises(ValidationError, match="power of two"):
        EngineConfig(profile_sample_every=1000)
    with pytest.raises(ConfigError, match="power of two"):
        Profiler(3)
    with pytest.raises(ConfigError, match="power of two"):
        ProfileSession(0)


def test_profiling_asked_by_the_config_needs_a_profiler(sma_data: MarketData) -> None:
    spec = RunSpec(SmaCross(), sma_data, EngineConfig(profile_sample_every=256))
    with pytest.raises(ConfigError, match="ultrathink profile"):
        build_kernel(spec, Recorder(None, 1e5))
    with ProfileSession() as session:
        kernel = build_kernel(spec, Recorder(None, 1e5))
    assert kernel.profiler is session.runs[0] and session.runs[0].sample_every == 256


def test_the_session_uninstalls_its_factory() -> None:
    before = runner._profiler_factory
    with ProfileSession(64):
        assert runner._profiler_factory is not None
    assert runner._profiler_factory is before is None


# -- process readings ------------------------------------------------------------------------
def test_gc_monitor_counts_collections_and_times_their_pauses() -> None:
    monitor = GcMonitor()
    monitor.start()
    try:
        gc.collect()
    finally:
        monitor.stop()
    doc: dict[str, Any] = monitor.to_json()
    assert doc["collections"]["gen2"] >= 1 and doc["n_collections"] >= 1
    assert doc["pause"]["count"] == doc["n_collections"] and doc["pause"]["max_us"] > 0
    gc.collect()
    assert monitor.n_collections == doc["n_collections"]  # stopped: no longer listening


def test_process_sample_reads_cpu_and_memory() -> None:
    sample = ProcessSample.now()
    assert sample.rss_bytes > 0 and sample.rss_peak_bytes >= sample.rss_bytes
    assert sample.cpu_user_s > 0
