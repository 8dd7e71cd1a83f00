"""Degraded mode: CPU/memory/latency hysteresis, dwell, cleanups, listeners, overrides, config."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ultrathink.core.clock import TestClock
from ultrathink.hardening.degraded import (
    REASON_CPU,
    REASON_LATENCY,
    REASON_MEMORY,
    DegradedConfig,
    DegradedModeMonitor,
    DegradedTransition,
    OsProcessSampler,
)

S = 1_000_000_000
MS = 1_000_000


class FakeSampler:
    """Process CPU time advanced by hand; RSS set by hand."""

    def __init__(self) -> None:
        self.cpu_s = 0.0
        self.rss = 100.0

    def cpu_seconds(self) -> float:
        return self.cpu_s

    def rss_mb(self) -> float:
        return self.rss


def make(
    **kwargs: object,
) -> tuple[DegradedModeMonitor, TestClock, FakeSampler, list[DegradedTransition]]:
    clock = TestClock(1_000 * S)
    sampler = FakeSampler()
    monitor = DegradedModeMonitor(DegradedConfig(**kwargs), clock, sampler)  # type: ignore[arg-type]
    seen: list[DegradedTransition] = []
    monitor.on_change(seen.append)
    return monitor, clock, sampler, seen


def run_cpu(
    monitor: DegradedModeMonitor, clock: TestClock, sampler: FakeSampler, pct: float, n_s: int
) -> list[bool]:
    """Burn ``pct`` % of one core for ``n_s`` seconds, sampling each second."""
    states = []
    for _ in range(n_s):
        clock.advance_ns(S)
        sampler.cpu_s += pct / 100.0
        states.append(monitor.sample())
    return states


def record(monitor: DegradedModeMonitor, latency_ms: float, n: int) -> None:
    for _ in range(n):
        monitor.record_latency_ns(int(latency_ms * MS))


# -- CPU ---------------------------------------------------------------------------------


def test_cpu_is_not_judged_before_a_full_window() -> None:
    monitor, clock, sampler, _ = make(cpu_window_s=10.0)
    monitor.sample()  # the first reading
    states = run_cpu(monitor, clock, sampler, 100.0, 9)
    assert states == [False] * 9
    assert monitor.readings.cpu_pct is None
    assert run_cpu(monitor, clock, sampler, 100.0, 1) == [True]
    assert monitor.readings.cpu_pct == pytest.approx(100.0)


def test_cpu_enters_at_90_and_exits_below_70_without_flapping_between() -> None:
    monitor, clock, sampler, seen = make(cpu_window_s=10.0, min_dwell_s=0.0)
    monitor.sample()
    assert not any(run_cpu(monitor, clock, sampler, 85.0, 20))  # below enter: never degraded
    run_cpu(monitor, clock, sampler, 95.0, 10)
    assert monitor.is_degraded
    assert monitor.reasons == {REASON_CPU}
    assert all(run_cpu(monitor, clock, sampler, 75.0, 30))  # between 70 and 90: stays in
    assert not run_cpu(monitor, clock, sampler, 50.0, 10)[-1]  # well below 70: out
    assert not any(run_cpu(monitor, clock, sampler, 85.0, 30))  # between again: stays out
    assert [t.entered for t in seen] == [True, False]
    assert seen[0].reasons == (REASON_CPU,)
    assert "cpu_enter_pct=90.0" in seen[0].detail
    assert "cpu_exit_pct=70.0" in seen[1].detail
    assert seen[1].reasons == (REASON_CPU,)


def test_cpu_is_a_percentage_of_one_core() -> None:
    monitor, clock, sampler, _ = make(cpu_window_s=2.0)
    monitor.sample()
    run_cpu(monitor, clock, sampler, 200.0, 2)  # two busy threads
    assert monitor.readings.cpu_pct == pytest.approx(200.0)


def test_dwell_keeps_degraded_until_min_dwell_s_after_entry() -> None:
    monitor, clock, sampler, seen = make(cpu_window_s=1.0, min_dwell_s=30.0)
    monitor.sample()
    run_cpu(monitor, clock, sampler, 100.0, 1)
    assert monitor.is_degraded
    entered_ns = monitor.readings.degraded_since_ns
    assert entered_ns == clock.monotonic_ns()
    states = run_cpu(monitor, clock, sampler, 0.0, 30)
    assert states[:29] == [True] * 29  # idle, but still within the dwell
    assert states[29] is False  # exactly min_dwell_s after entry
    assert monitor.readings.degraded_since_ns is None
    assert "min_dwell_s=30.0" in seen[-1].detail


def test_sparse_samples_measure_over_their_whole_gap() -> None:
    monitor, clock, sampler, _ = make(cpu_window_s=1.0)
    monitor.sample()
    clock.advance_ns(30 * S)
    sampler.cpu_s += 27.0
    assert monitor.sample()
    assert monitor.readings.cpu_pct == pytest.approx(90.0)


def test_cpu_readings_stay_bounded_under_fast_sampling() -> None:
    monitor, clock, sampler, _ = make(cpu_window_s=1.0)
    for _ in range(5_000):
        clock.advance_ns(MS)
        sampler.cpu_s += 0.0005
        monitor.sample()
    assert len(monitor._cpu_readings) <= 66
    assert monitor.readings.cpu_pct == pytest.approx(50.0, rel=0.05)


# -- memory ------------------------------------------------------------------------------


def test_memory_enters_with_one_cleanup_per_entry_and_exits_below_exit() -> None:
    monitor, clock, sampler, seen = make(memory_enter_mb=500.0, memory_exit_mb=400.0)
    calls: list[str] = []
    monitor.add_cleanup(lambda: calls.append("caches"))
    monitor.add_cleanup(lambda: calls.append("history"))
    sampler.rss = 600.0
    assert monitor.sample()
    assert calls == ["caches", "history"]
    for _ in range(10):
        clock.advance_ns(S)
        assert monitor.sample()  # still high: no more cleanups
    assert calls == ["caches", "history"]
    sampler.rss = 450.0  # between exit and enter: stays
    clock.advance_ns(S)
    assert monitor.sample()
    sampler.rss = 350.0
    assert not monitor.sample()
    sampler.rss = 550.0
    clock.advance_ns(S)
    assert monitor.sample()
    assert calls == ["caches", "history"] * 2
    assert [t.entered for t in seen] == [True, False, True]
    assert seen[0].reasons == (REASON_MEMORY,)
    assert "memory_enter_mb=500.0" in seen[0].detail
    assert monitor.readings.rss_mb == 550.0


def test_memory_exit_defaults_to_ninety_percent_of_enter() -> None:
    monitor, _, sampler, _ = make(memory_enter_mb=1000.0, min_dwell_s=0.0)
    sampler.rss = 1000.0
    assert monitor.sample()
    sampler.rss = 901.0
    assert monitor.sample()
    sampler.rss = 899.0
    assert not monitor.sample()


def test_memory_is_not_watched_by_default() -> None:
    monitor, _, sampler, _ = make()
    sampler.rss = 1e9
    assert not monitor.sample()


def test_cleanup_and_listener_errors_do_not_stop_the_others() -> None:
    monitor, _, sampler, seen = make(memory_enter_mb=500.0)
    calls: list[str] = []

    def broken_listener(_: DegradedTransition) -> None:
        raise RuntimeError("listener down")

    def broken_cleanup() -> None:
        raise OSError("cleanup failed")

    monitor.on_change(broken_listener)
    monitor.add_cleanup(broken_cleanup)
    monitor.add_cleanup(lambda: calls.append("ran"))
    sampler.rss = 600.0
    with pytest.raises(RuntimeError, match="listener down"):
        monitor.sample()
    assert monitor.is_degraded
    assert len(seen) == 1
    assert calls == ["ran"]


# -- latency -----------------------------------------------------------------------------


def test_latency_p99_enters_at_10_ms_and_exits_below_5_ms_after_dwell() -> None:
    monitor, clock, _, seen = make(min_dwell_s=5.0)
    record(monitor, 1.0, 100)
    assert not monitor.sample()
    record(monitor, 12.0, 2)  # 2 of the last 100 slow: the p99 is slow
    assert monitor.sample()
    assert monitor.reasons == {REASON_LATENCY}
    assert monitor.readings.latency_ms == pytest.approx(12.0)
    assert "latency_enter_ms=10.0" in seen[0].detail
    record(monitor, 7.0, 100)  # between 5 and 10: stays
    clock.advance_ns(10 * S)
    assert monitor.sample()
    record(monitor, 4.0, 100)
    clock.advance_ns(1 * S)
    assert not monitor.sample()
    assert "latency_exit_ms=5.0" in seen[-1].detail


def test_latency_exit_waits_for_dwell() -> None:
    monitor, clock, _, _ = make(min_dwell_s=5.0)
    record(monitor, 20.0, 100)
    assert monitor.sample()
    record(monitor, 1.0, 100)
    clock.advance_ns(4 * S)
    assert monitor.sample()
    clock.advance_ns(1 * S)
    assert not monitor.sample()


def test_latency_p99_ignores_one_outlier_and_max_does_not() -> None:
    p99, _, _, _ = make()
    worst, _, _, _ = make(latency_percentile=100.0)
    for monitor in (p99, worst):
        record(monitor, 1.0, 99)
        record(monitor, 50.0, 1)
    assert not p99.sample()
    assert worst.sample()


def test_latency_needs_min_samples() -> None:
    monitor, _, _, _ = make(latency_min_samples=10)
    record(monitor, 50.0, 9)
    assert not monitor.sample()
    assert monitor.readings.latency_ms is None
    record(monitor, 50.0, 1)
    assert monitor.sample()


# -- several reasons, listeners, overrides -----------------------------------------------


def test_multiple_reasons_exit_only_when_all_are_clear() -> None:
    monitor, clock, sampler, seen = make(cpu_window_s=1.0, min_dwell_s=0.0)
    monitor.sample()
    record(monitor, 20.0, 100)
    run_cpu(monitor, clock, sampler, 100.0, 1)
    assert monitor.reasons == {REASON_CPU, REASON_LATENCY}
    run_cpu(monitor, clock, sampler, 10.0, 1)
    assert monitor.reasons == {REASON_LATENCY}
    assert monitor.is_degraded
    record(monitor, 1.0, 100)
    assert not run_cpu(monitor, clock, sampler, 10.0, 1)[0]
    assert len(seen) == 2
    assert seen[0].reasons == (REASON_CPU, REASON_LATENCY)
    assert seen[1].reasons == (REASON_LATENCY,)
    assert monitor.transitions == tuple(seen)


def test_transitions_carry_wall_clock_timestamps() -> None:
    monitor, clock, _, seen = make()
    monitor.force("drill")
    assert seen == [DegradedTransition(clock.now_ns(), True, ("drill",), seen[0].detail)]
    assert "drill" in seen[0].detail


def test_force_holds_degraded_until_cleared() -> None:
    monitor, clock, _, seen = make(min_dwell_s=0.0)
    monitor.force("operator", "maintenance window")
    assert monitor.is_degraded
    assert monitor.reasons == {"operator"}
    clock.advance_ns(60 * S)
    assert monitor.sample()  # healthy signals do not lift a forced reason
    monitor.clear("operator", "done")
    assert not monitor.is_degraded
    assert [t.entered for t in seen] == [True, False]
    assert "maintenance window" in seen[0].detail
    assert seen[1].detail == "cleared by operator: operator (done)"


def test_force_memory_runs_cleanups_once() -> None:
    monitor, _, _, _ = make()
    calls: list[int] = []
    monitor.add_cleanup(lambda: calls.append(1))
    monitor.force(REASON_MEMORY)
    monitor.force(REASON_MEMORY)
    assert calls == [1]


def test_force_rejects_an_empty_reason() -> None:
    monitor, _, _, _ = make()
    with pytest.raises(ValueError, match="non-empty"):
        monitor.force("")


def test_clear_all_ignores_dwell_and_latency_restarts_from_new_decisions() -> None:
    monitor, _, _, seen = make(min_dwell_s=3600.0)
    record(monitor, 20.0, 100)
    monitor.force("operator")
    assert monitor.sample()
    assert monitor.reasons == {"operator", REASON_LATENCY}
    monitor.clear()
    assert not monitor.is_degraded
    assert seen[-1].reasons == ("latency", "operator")
    assert not monitor.sample()  # the slow decisions were dropped with the reason


def test_clear_of_a_still_high_signal_re_enters_at_next_sample() -> None:
    monitor, _, sampler, seen = make(memory_enter_mb=500.0, min_dwell_s=3600.0)
    sampler.rss = 600.0
    assert monitor.sample()
    monitor.clear(REASON_MEMORY)
    assert not monitor.is_degraded
    assert monitor.sample()
    assert [t.entered for t in seen] == [True, False, True]


def test_clear_of_an_inactive_reason_changes_nothing() -> None:
    monitor, _, _, seen = make()
    monitor.force("operator")
    monitor.clear("cpu")
    assert monitor.is_degraded
    assert len(seen) == 1


# -- config ------------------------------------------------------------------------------


def test_default_config_matches_the_issue() -> None:
    cfg = DegradedConfig()
    assert (cfg.cpu_enter_pct, cfg.cpu_exit_pct, cfg.cpu_window_s) == (90.0, 70.0, 10.0)
    assert (cfg.latency_enter_ms, cfg.latency_exit_ms) == (10.0, 5.0)
    assert (cfg.latency_window, cfg.latency_percentile, cfg.min_dwell_s) == (100, 99.0, 5.0)
    assert cfg.memory_enter_mb is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cpu_exit_pct": 90.0}, "cpu_exit_pct must be < cpu_enter_pct"),
        ({"latency_exit_ms": 12.0}, "latency_exit_ms must be < latency_enter_ms"),
        (
            {"memory_enter_mb": 500.0, "memory_exit_mb": 500.0},
            "memory_exit_mb must be < memory_enter_mb",
        ),
        ({"memory_exit_mb": 400.0}, "memory_exit_mb needs memory_enter_mb"),
        ({"latency_window": 5}, "latency_min_samples must be <= latency_window"),
        ({"cpu_window_s": 0.0}, "greater than 0"),
        ({"latency_percentile": 101.0}, "less than or equal to 100"),
        ({"cpu_enter_pct": float("nan")}, "finite"),
        ({"bogus": 1}, "Extra inputs are not permitted"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DegradedConfig(**kwargs)  # type: ignore[arg-type]


def test_config_is_frozen() -> None:
    cfg = DegradedConfig()
    with pytest.raises(ValidationError):
        cfg.cpu_enter_pct = 50.0


# -- the real sampler --------------------------------------------------------------------


def test_os_sampler_reads_this_process() -> None:
    sampler = OsProcessSampler()
    first = sampler.cpu_seconds()
    sum(i * i for i in range(100_000))
    assert sampler.cpu_seconds() >= first > 0
    assert 1.0 < sampler.rss_mb() < 1e6


def test_os_sampler_falls_back_to_peak_rss_without_proc() -> None:
    assert OsProcessSampler(statm_path="/nonexistent/statm").rss_mb() > 1.0


def test_monitor_defaults_to_the_os_sampler() -> None:
    monitor = DegradedModeMonitor(DegradedConfig(), TestClock(0))
    monitor.sample()
    rss_mb = monitor.readings.rss_mb
    assert rss_mb is not None and rss_mb > 1.0
