"""The profiler's live stages (``Profiler.live_stages``) for the dashboard's live page, the
rate-adaptive N of ``live_profiler``, and ``attach_live_stages`` on a real engine.

Timings come from the fake clock of ``test_perf_profiler`` (no wall-clock assert).
"""

from __future__ import annotations

import math
import time

import pytest
from tests.unit.perf.test_perf_profiler import FakeClock, FakeKernel, decision_ns, drive

import ultrathink.perf.profiler as profiler_module
from ultrathink.data import load_data
from ultrathink.decision.builtin import SmaCross
from ultrathink.engine.config import EngineConfig
from ultrathink.engine.recorder import Recorder
from ultrathink.engine.runner import run
from ultrathink.engine.spec import ProfilerFactory, RunSpec
from ultrathink.engine.wiring import Engine, build_engine
from ultrathink.perf.profiler import (
    DEFAULT_SAMPLE_EVERY,
    LIVE_WINDOW,
    Profiler,
    attach_live_stages,
    live_profiler,
    probe_cost_ns,
)
from ultrathink.testing.engine import run_engine


def nearest_rank(values: list[int], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)), 1) - 1] / 1000.0


def test_live_stages_are_the_percentiles_of_the_last_window_of_recorded_bars() -> None:
    clock = FakeClock()
    prof = Profiler(64, timer=clock, warmup_bars=2)
    assert prof.live_stages() == {}, "nothing recorded yet"
    probed = drive(prof, clock, 64 * 400)

    recorded = [n for n in probed if n % 64 == 32]
    window = [decision_ns(n) for n in recorded[-LIVE_WINDOW:]]
    live = prof.live_stages()
    assert live["decision"]["n"] == LIVE_WINDOW < len(recorded), "only the newest bars"
    for p in (50, 90, 99):
        assert live["decision"][f"p{p}"] == nearest_rank(window, p)
    assert live["features"]["p50"] == live["features"]["p99"] == pytest.approx(0.3)
    assert live["risk"]["p99"] == pytest.approx(0.05) and live["bar"]["n"] == LIVE_WINDOW
    assert "model" not in live, "a stage never called is left out"
    assert prof.live_stages() is live, "nothing new: the same mapping, not recomputed"


def test_every_flush_goes_to_the_live_persistence_queue() -> None:
    clock = FakeClock()
    kernel = FakeKernel(flush=lambda: clock.spend(7_000))
    prof = Profiler(64, timer=clock)
    drive(prof, clock, 200, kernel)
    for _ in range(3):
        kernel._flush()  # the kernel's flushes, timed every time

    assert prof.live_stages()["persistence_queue"] == {"p50": 7.0, "p90": 7.0, "p99": 7.0, "n": 3}


def rate_clock_drive(prof: Profiler, n_bars: int, ns_per_bar: int) -> list[int]:
    # every bar takes ns_per_bar of the fake clock: a bar rate the profiler can read
    clock = prof._timer
    assert isinstance(clock, FakeClock)
    clock.spend(0)
    kernel = FakeKernel()
    return drive(prof, clock, n_bars, kernel, inside_on_bar=lambda n: clock.spend(ns_per_bar))


# a fake bar costs ~51 µs of the fake clock on average (its stages and ``decision_ns``) plus
# ``ns_per_bar``
@pytest.mark.parametrize(
    ("ns_per_bar", "target_hz", "expected_every"),
    [
        (60_000, 2.0, 4_096),  # ~9,000 bars/s, 2 recorded a second: N = 4096
        (250_000_000, 2.0, 64),  # 4 bars/s (a paced session): the smallest N
        (0, 0.1, 16_384),  # ~19,600 bars/s and 0.1 a second: the largest N
    ],
)
def test_a_live_profiler_adapts_n_to_the_bar_rate(
    ns_per_bar: int, target_hz: float, expected_every: int
) -> None:
    prof = Profiler(DEFAULT_SAMPLE_EVERY, timer=FakeClock(), target_hz=target_hz)
    probed = rate_clock_drive(prof, 200_000, ns_per_bar)

    assert prof.sample_every == expected_every
    recorded = [n for n in probed if n % expected_every == expected_every // 2]
    assert len(recorded) >= 2, "it records at k*N + N/2 of the N it settled on"
    assert prof.n_sampled >= 2


def test_live_profiler_keeps_a_configured_n_and_adapts_otherwise() -> None:
    assert live_profiler(256).sample_every == 256
    assert live_profiler(256)._target_hz is None
    assert live_profiler(None)._target_hz == 2.0


def paper_engine(data: object, profiler: ProfilerFactory | None) -> Engine:
    spec = RunSpec(SmaCross(fast=3, slow=8), data, EngineConfig(), "paper",  # type: ignore[arg-type]
                   profiler=profiler)  # fmt: skip
    return build_engine(spec, Recorder(None, spec.config.starting_cash))


def test_attach_live_stages_puts_them_in_the_snapshots_of_a_profiled_engine() -> None:
    data = load_data("synthetic:n_bars=20000,seed=4")
    engine = paper_engine(data, lambda n: Profiler(256))
    assert attach_live_stages(engine)
    run_engine(engine, data)
    snap = engine.snapshots.publish(engine.kernel.n_bars, 0)

    assert {"market_data", "features", "decision", "portfolio", "bar"} <= set(snap.stages)
    # a probed stage is its timed span minus the probes' calibrated cost, clamped at 0: on a
    # shared machine the calibration's cost varies ~3x from one process to the next, so a
    # sub-µs stage, or even a ~7 µs bar of 7 probes, can read 0 (seen in a full test run);
    # the persistence queue is timed without probes: its flush took time
    assert all(0 <= s["p50"] <= s["p99"] and s["n"] >= 1 for s in snap.stages.values())
    assert snap.stages["persistence_queue"]["p50"] > 0
    assert not attach_live_stages(paper_engine(data, None))


def test_a_preempted_calibration_round_does_not_inflate_the_probe_cost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # one call of the calibration's first round is stalled for 5 ms (a preemption, as on a
    # busy machine): a mean over all rounds put it all inside the timed span (inside = the
    # whole cost, outside 0), which clamped sub-µs stages to 0 for the rest of the process
    calls = [0]

    def stalled_once() -> None:
        calls[0] += 1
        if calls[0] == 100:
            end = time.perf_counter_ns() + 5_000_000
            while time.perf_counter_ns() < end:
                pass

    monkeypatch.setattr(profiler_module, "_noop", stalled_once)
    monkeypatch.setattr(profiler_module, "_PROBE_COST", {})
    inside, outside = probe_cost_ns()
    assert calls[0] > 100 and outside > 0, "every round's best, not their mean"
    assert inside >= 0


def test_a_profiled_run_trades_the_same_with_a_live_profiler() -> None:
    data = load_data("synthetic:n_bars=20000,seed=5")
    plain = run(RunSpec(SmaCross(fast=3, slow=8), data, EngineConfig()))
    live = run(RunSpec(SmaCross(fast=3, slow=8), data, EngineConfig(), profiler=live_profiler))
    assert live.n_bars == plain.n_bars
    assert live.metrics.final_equity == plain.metrics.final_equity
