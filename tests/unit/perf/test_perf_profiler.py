"""The sampling profiler: which bars it times, what it measures, what it may touch, its
exports, and that a profiled run trades exactly as an unprofiled one.

Timings are checked with a fake clock that the fake stages advance by known amounts, so
no test asserts wall-clock time.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from ultrathink.core.events import Bar
from ultrathink.core.timing import TimingPoint
from ultrathink.data import MarketData, load_data
from ultrathink.decision.builtin import SmaCross
from ultrathink.decision.ml import MLStrategy, ModelBundle
from ultrathink.decision.strategy import Strategy
from ultrathink.engine.config import EngineConfig, HardeningConfig
from ultrathink.engine.kernel import Kernel, Stages
from ultrathink.engine.recorder import Recorder
from ultrathink.engine.results import RunResult
from ultrathink.engine.runner import run
from ultrathink.engine.spec import RunSpec
from ultrathink.engine.wiring import Engine, build_engine
from ultrathink.errors import ConfigError, StrategyError
from ultrathink.features.spec import FEATURE_INDEX, FEATURE_NAMES
from ultrathink.features.streaming import StreamingFeatures
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


class FakeStrategy:
    """The strategy side of a ``FakeKernel``: a name and per-symbol timing points."""

    name = "fake"

    def __init__(self, per_symbol: dict[str, list[TimingPoint]]) -> None:
        self.per_symbol = per_symbol

    def symbol_timing_points(self, symbol: str) -> list[TimingPoint]:
        return list(self.per_symbol.get(symbol, ()))


class FakeKernel:
    """What the profiler reads of a ``Kernel``: its strategy, the timing points its components
    declare, its exact timing point (``_flush``) and the run's counters."""

    def __init__(
        self,
        points: Sequence[TimingPoint] = (),
        symbol_points: dict[str, list[TimingPoint]] | None = None,
        flush: Callable[[], None] | None = None,
    ) -> None:
        self.strategy = FakeStrategy(symbol_points or {})
        self.parts = SimpleNamespace(router=SimpleNamespace(n_orders=0))
        self.recorder = SimpleNamespace(all_fills=[])
        self.n_bars = 0
        self._points = list(points)
        self._flush = flush if flush is not None else (lambda: None)

    def timing_points(self) -> list[TimingPoint]:
        return list(self._points)

    def exact_timing_points(self) -> list[TimingPoint]:
        return [TimingPoint("persistence_queue", self, "_flush")]


def as_kernel(kernel: FakeKernel) -> Kernel:
    return kernel  # type: ignore[return-value]


def decision_ns(n: int) -> int:
    # a different, known on_bar duration for every bar: 1..97 µs
    return 1_000 * (1 + n % 97)


def drive(
    prof: Profiler,
    clock: FakeClock,
    n_bars: int,
    kernel: FakeKernel | None = None,
    inside_on_bar: Callable[[int], None] | None = None,
) -> list[int]:
    """Run ``n_bars`` through the kernel's sampling protocol with fake stages; return the
    indices of the bars that ran with timed stages. ``inside_on_bar(n)`` runs within the
    strategy's ``on_bar`` (e.g. calls through declared timing points)."""
    kernel = kernel if kernel is not None else FakeKernel()
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
        if inside_on_bar is not None:
            inside_on_bar(state["n"])

    updaters: dict[str, tuple[Callable[[float], object], ...]] = {"X": (update,)}
    plain: Stages = (broker_on_bar, mark, on_equity, updaters, on_bar)
    stages = plain
    probed = []
    at = prof.start(as_kernel(kernel))
    for n in range(n_bars):
        state["n"] = n
        clock.spend(10)  # the market-data gap before the kernel sees the bar
        bar = Bar(n, "X", 1.0, 1.0, 1.0, 1.0, 1.0)
        if n == at:
            at, stages = prof.switch(n, bar, plain)
        if stages is not plain:
            probed.append(n)
        b_on_bar, s_mark, s_equity, s_updaters, s_on_bar = stages
        b_on_bar(bar)
        s_mark("X", 1.0)
        s_equity(n, 1.0)
        ups = s_updaters.get("X")  # as the kernel reads them
        assert ups is not None
        for up in ups:
            up(1.0)
        s_on_bar(bar)
    kernel.n_bars = n_bars  # as the kernel does before it stops the profiler
    prof.stop()
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
    assert prof.n_bars == 64 * 200  # read from the kernel when the loop stops


@pytest.mark.parametrize(("every", "expected"), [(1, 198), (2, 99)])
def test_small_n_probes_every_bar_and_records_one_in_n(every: int, expected: int) -> None:
    clock = FakeClock()
    prof = Profiler(every, timer=clock)
    probed = drive(prof, clock, 200)
    assert probed == list(range(1, 200))
    assert prof.n_sampled == expected


def test_a_real_run_records_about_n_bars_over_n(sma_data: MarketData) -> None:
    with ProfileSession(256) as session:
        result = run(RunSpec(SmaCross(), sma_data, EngineConfig(), profiler=session.profiler_for))
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
    kernel = FakeKernel(flush=lambda: clock.spend(5_000))
    prof = Profiler(4, timer=clock, warmup_bars=0)
    assert prof.start(as_kernel(kernel)) == 6  # k·N + N/2 from the second block on
    plain: Stages = (lambda b: None, lambda s, c: 0.0, lambda t, e: None, {}, lambda b: None)
    bar = Bar(0, "X", 1.0, 1.0, 1.0, 1.0, 1.0)
    _, stages = prof.switch(6, bar, plain)
    kernel._flush()  # a flush inside the recorded bar: exact, not the bar's
    stages[1]("X", 1.0)
    clock.spend(700)  # kernel glue: "other"
    stages[4](bar)
    prof.switch(7, bar, plain)
    kernel._flush()  # and one outside any sample
    assert prof.exact["persistence_queue"].n == 2
    assert prof.exact["persistence_queue"].total_ns == 10_000
    assert prof.stages["bar"].total_ns == 700
    assert prof.stages["other"].total_ns == 700


# -- what it may touch: the timing points components declare (core/timing.py) ----------------
class Scorer:
    """A slotted helper: ``score`` is declared as a timing point, ``spare`` never is, and
    ``unset`` is a slot that never gets a value."""

    __slots__ = ("score", "spare", "unset")

    def __init__(self, score: Callable[..., object], spare: Callable[..., object]) -> None:
        self.score = score
        self.spare = spare


class SymbolState:
    """Per-symbol state whose ``update`` slot is a declared timing point (``features``)."""

    __slots__ = ("n", "plain", "update")

    def __init__(self) -> None:
        self.n = 0
        self.update = self.plain = self._update

    def _update(self, close: float) -> None:
        self.n += 1


def test_a_declared_timing_point_is_timed_into_its_stage_and_out_of_its_callers() -> None:
    clock = FakeClock()

    def score() -> None:
        clock.spend(400)

    def spare() -> None:
        clock.spend(1)

    scorer = Scorer(score, spare)
    state = SymbolState()
    kernel = FakeKernel(
        [TimingPoint("model", scorer, "score")],
        {"X": [TimingPoint("features", state, "update")]},
    )
    seen: list[tuple[bool, bool, bool]] = []

    def inside(n: int) -> None:
        seen.append((scorer.score is not score, state.update != state.plain,
                     scorer.spare is not spare))  # fmt: skip
        scorer.score()
        state.update(1.0)
        scorer.spare()

    prof = Profiler(64, timer=clock, warmup_bars=2)
    probed = drive(prof, clock, 64 * 50, kernel, inside)

    # probes on the probed bars only, and never on what was not declared
    assert [n for n, (s, _, _) in enumerate(seen) if s] == probed
    assert [n for n, (_, u, _) in enumerate(seen) if u] == probed
    assert not any(sp for _, _, sp in seen)
    # their time goes to their stage and out of on_bar's (the strategy's decision)
    stages = prof.to_json()["stages"]
    recorded = [n for n in probed if n % 64 == 32]
    assert stages["model"]["count"] == len(recorded)
    assert stages["model"]["max_us"] == pytest.approx(0.4, rel=1e-3)
    assert stages["features"]["p50_us"] == pytest.approx(0.3, rel=1e-3)  # indicators
    assert stages["features"]["mean_us"] == pytest.approx(0.3, rel=1e-3)  # + state: 0 ns
    assert stages["decision"]["mean_us"] == pytest.approx(
        (np.mean([decision_ns(n) for n in recorded]) + 1) / 1e3  # + spare's 1 ns, undeclared
    )
    assert prof.to_json()["probes"]["per_sampled_bar"] == 7  # 5 kernel stages + 2 declared
    # and everything is put back: the same objects, no attribute added
    assert scorer.score is score and scorer.spare is spare and state.update == state.plain
    assert not hasattr(scorer, "unset") and prof._undo == prof._undo_bar == []


def _score(close: float) -> float:
    return close


def _spare() -> None:
    pass


def _helper() -> None:
    pass


class Declaring(Strategy):
    """Declares a timing point on a slot of its helper and one per symbol; also calls an
    undeclared slot and an undeclared instance attribute on every bar, and records, per bar,
    which of them held a probe."""

    name = "declaring"

    def __init__(self) -> None:
        super().__init__()
        self.scorer = Scorer(_score, _spare)
        self.helper = _helper  # an undeclared instance attribute
        self.states: dict[str, SymbolState] = {}
        self.extra: list[TimingPoint] = []  # more declared points (see the tests)
        #: per bar: (score probed, own state probed, another state probed, spare, helper)
        self.seen: list[tuple[bool, bool, bool, bool, bool]] = []

    def on_bar(self, bar: Bar) -> None:
        states = self.states
        st = states.get(bar.symbol)
        if st is None:
            st = states[bar.symbol] = SymbolState()
        self.seen.append((
            self.scorer.score is not _score,
            st.update != st.plain,
            any(s.update != s.plain for sym, s in states.items() if sym != bar.symbol),
            self.scorer.spare is not _spare,
            self.helper is not _helper,
        ))  # fmt: skip
        st.update(bar.close)
        self.scorer.score(bar.close)
        self.scorer.spare()
        self.helper()

    def timing_points(self) -> list[TimingPoint]:
        return [TimingPoint("model", self.scorer, "score"), *self.extra]

    def symbol_timing_points(self, symbol: str) -> list[TimingPoint]:
        st = self.states.get(symbol)
        return [TimingPoint("features", st, "update")] if st is not None else []


def profiled_engine(spec: RunSpec, session: ProfileSession) -> Engine:
    spec = dataclasses.replace(spec, profiler=session.profiler_for)
    return build_engine(spec, Recorder(None, 1e5))


def test_the_profiler_reaches_only_the_timing_points_a_strategy_declares(
    ml_data: MarketData,
) -> None:
    strategy = Declaring()
    with ProfileSession(4) as session:
        engine = profiled_engine(RunSpec(strategy, ml_data, EngineConfig()), session)
        engine.kernel.run(ml_data)
    prof = session.runs[0]

    seen = strategy.seen
    assert len(seen) == len(ml_data)
    # N = 4, 2 warm-up bars: bars 4k, 4k+1 warm the probes, 4k+2 is recorded (k >= 1)
    probed = [n for n in range(len(seen)) if n >= 4 and n % 4 != 3]
    assert [n for n, row in enumerate(seen) if row[0]] == probed
    assert [n for n, row in enumerate(seen) if row[1]] == probed  # the bar's own symbol ...
    assert not any(row[2] for row in seen)  # ... never another symbol's state
    assert not any(row[3] or row[4] for row in seen)  # undeclared: never touched
    assert prof.stages["model"].n == prof.stages["features"].n == prof.n_sampled > 0
    # put back: the declared slots hold their own values again, nothing was added
    assert strategy.scorer.score is _score and strategy.scorer.spare is _spare
    assert all(st.update == st.plain for st in strategy.states.values())
    assert strategy.helper is _helper and not hasattr(strategy.scorer, "unset")
    assert prof._undo == prof._undo_bar == [] and not prof._active


def test_declared_points_that_cannot_be_swapped_in_place_are_left_alone(
    ml_data: MarketData,
) -> None:
    strategy = Declaring()
    plain_attrs = set(vars(strategy))
    strategy.extra = [
        TimingPoint("model", strategy, "on_bar"),  # a method: a swap would add an attribute
        TimingPoint("model", strategy.scorer, "unset"),  # a slot without a value
        TimingPoint("model", strategy, "no_such_attribute"),
        TimingPoint("model", None, "score"),  # no owner
    ]
    with ProfileSession(4) as session:
        engine = profiled_engine(RunSpec(strategy, ml_data, EngineConfig()), session)
        engine.kernel.run(ml_data)

    assert any(row[0] for row in strategy.seen)  # the declared slot was probed ...
    assert not any(row[3] for row in strategy.seen)  # ... the others never
    assert set(vars(strategy)) == plain_attrs  # no "on_bar" shadowing the method
    assert not hasattr(strategy.scorer, "unset")
    assert not hasattr(strategy, "no_such_attribute")
    assert session.runs[0]._undo == []


def test_a_timing_point_naming_no_stage_is_refused(ml_data: MarketData) -> None:
    strategy = Declaring()
    strategy.extra = [TimingPoint("feature", strategy.scorer, "spare")]  # "features" misspelt

    with ProfileSession(4) as session:
        engine = profiled_engine(RunSpec(strategy, ml_data, EngineConfig()), session)
        with pytest.raises(ConfigError, match="names stage 'feature'; stages are market_data"):
            engine.kernel.run(ml_data)


# -- exports ---------------------------------------------------------------------------------
def test_json_schema(fake_run: tuple[Profiler, list[int]]) -> None:
    prof, _ = fake_run
    doc = json.loads(json.dumps(prof.to_json()))
    assert doc["schema"] == RUN_SCHEMA
    assert doc["sample_every"] == 64 and doc["n_sampled_bars"] == prof.n_sampled
    assert doc["strategy"] == "fake"
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
            spec = RunSpec(SmaCross(fast=fast, slow=30), sma_data, EngineConfig())
            run(dataclasses.replace(spec, profiler=session.profiler_for))
    doc = session.to_json()
    assert doc["schema"] == SESSION_SCHEMA
    assert [r["label"] for r in doc["runs"]] == ["1", "2"]
    assert doc["process"]["wall_s"] > 0 and doc["process"]["rss_peak_mb"] > 0
    assert doc["runs"][0]["gc"]["enabled_at_start"] is False  # the kernel pauses the GC
    assert doc["runs"][0]["throughput"]["fills"] > 0
    assert doc["runs"][0]["strategy"] == "sma_cross"


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
        result = run(dataclasses.replace(spec, profiler=session.profiler_for))
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
    for stage in ("model", "features", "risk", "execution", "portfolio"):
        assert prof.stages[stage].n > 0, stage


def _components(engine: Engine) -> dict[str, object]:
    parts = engine.parts
    strategy = parts.strategy
    assert isinstance(strategy, MLStrategy)
    return {
        "kernel": engine.kernel, "router": parts.router, "booker": parts.booker,
        "risk": parts.risk, "broker": parts.broker, "portfolio": parts.portfolio,
        "facade": parts.facade, "strategy": strategy, "bundle": strategy.bundle,
        **{f"symbol {s}": st for s, st in strategy._symbols.items()},
    }  # fmt: skip


def _attributes(obj: object) -> set[str]:
    # instance attributes (a slotted object has none to add)
    return set(vars(obj)) if hasattr(obj, "__dict__") else set()


def test_probed_bars_leave_every_component_as_it_was(ml_data: MarketData) -> None:
    plain = build_engine(RunSpec(ml_strategy(), ml_data, EngineConfig()), Recorder(None, 1e5))
    plain.kernel.run(ml_data)
    with ProfileSession(4) as session:
        engine = profiled_engine(RunSpec(ml_strategy(), ml_data, EngineConfig()), session)
        declared = engine.kernel.timing_points()
        before = [getattr(p.owner, p.attr) for p in declared]
        engine.kernel.run(ml_data)
    prof = session.runs[0]
    assert prof.stages["model"].n > 0 and prof.stages["risk"].n > 0  # the probes ran

    # the components' declared timing points (router, booking, the model) hold their own
    # values again, and each symbol's streaming features its own ``update``
    assert {(type(p.owner).__name__, p.attr) for p in declared} >= {
        ("OrderRouter", "_check"), ("OrderRouter", "_submit"), ("OrderRouter", "_cancel"),
        ("ExecutionBooker", "_apply_fill"), ("ModelBundle", "predict_row"),
    }  # fmt: skip
    for point, value in zip(declared, before, strict=True):
        assert getattr(point.owner, point.attr) is value, point
    strategy = engine.parts.strategy
    assert isinstance(strategy, MLStrategy) and isinstance(strategy.bundle, ModelBundle)
    assert isinstance(strategy.bundle.predict_row, HashModel)
    for st in strategy._symbols.values():
        assert type(st.features) is StreamingFeatures
        assert st.update.__self__ is st.features  # type: ignore[attr-defined]
        assert st.update.__func__ is StreamingFeatures.update  # type: ignore[attr-defined]
    assert prof._undo == prof._undo_bar == [] and not prof._active
    # values were swapped, never new instance attributes added (they slow every bar)
    assert {k: _attributes(v) for k, v in _components(engine).items()} == {
        k: _attributes(v) for k, v in _components(plain).items()
    }


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
    with ProfileSession(4) as session:
        engine = profiled_engine(RunSpec(FailsAt(10), sma_data, EngineConfig()), session)
        declared = engine.kernel.timing_points()
        before = [getattr(p.owner, p.attr) for p in declared]
        with pytest.raises(StrategyError, match="boom"):
            engine.kernel.run(sma_data)
    prof = session.runs[0]
    # it raised on bar 10 = 2·4 + 2, a recorded bar: that open sample is dropped
    assert prof.n_sampled == 1  # bar 6
    assert prof._undo == prof._undo_bar == [] and not prof._active
    assert declared and all(
        getattr(p.owner, p.attr) is value for p, value in zip(declared, before, strict=True)
    )
    router = engine.parts.router
    assert router._check == engine.parts.risk.check
    assert router._submit == engine.parts.broker.submit


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
        build_engine(spec, Recorder(None, 1e5))
    with ProfileSession() as session:
        kernel = profiled_engine(spec, session).kernel
    assert kernel.profiler is session.runs[0] and session.runs[0].sample_every == 256
    with ProfileSession(64) as session:  # the session's N wins over the run's
        profiled_engine(spec, session)
    assert session.runs[0].sample_every == 64


def test_a_session_profiles_only_the_runs_given_its_factory(sma_data: MarketData) -> None:
    # nothing is installed globally: a run without RunSpec.profiler is not profiled, even
    # inside an active session
    with ProfileSession(64) as session:
        engine = build_engine(RunSpec(SmaCross(), sma_data, EngineConfig()), Recorder(None, 1e5))
        result = run(RunSpec(SmaCross(), sma_data, EngineConfig()))
    assert engine.kernel.profiler is None
    assert result.n_bars == N_BARS and session.runs == []
    assert session.to_json()["runs"] == []


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
    # per wall second: the collections and their pause total and maximum (µs)
    assert sum(row[1] for row in monitor.series) == doc["n_collections"]
    assert all(row[2] >= row[3] > 0 for row in monitor.series)
    longest = max(row[3] for row in monitor.series)
    assert abs(longest - doc["pause"]["max_us"]) <= 0.001 * longest + 0.001  # HdrHistogram


def test_process_sample_reads_cpu_and_memory() -> None:
    sample = ProcessSample.now()
    assert sample.rss_bytes > 0 and sample.rss_peak_bytes >= sample.rss_bytes
    assert sample.cpu_user_s > 0
