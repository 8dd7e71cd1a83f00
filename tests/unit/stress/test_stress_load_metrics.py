"""The endurance verdicts of the load scenario (``stress/scenarios/load.py``): the RSS slope
after warm-up and the p99 drift between the first and the last whole drift windows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ultrathink.perf.process import cpu_ticks, reference_cpu_us, run_queue_wait_s
from ultrathink.stress.scenarios.load import (
    Sample,
    _achieved_rate,
    _cpu_and_gc,
    _endurance,
    _machine_slower_after,
    _recovery,
)


def per_second(p99s: list[float]) -> list[tuple[int, int, float, float, float]]:
    # (second, bars, p50, p99, max) as the scenario keeps them
    return [(1_000 + i, 100, 10.0, p99, 2 * p99) for i, p99 in enumerate(p99s)]


def test_the_drift_compares_whole_windows_not_the_last_seconds() -> None:
    # 10 s of warm-up, then four 10 s windows at p99 100, 105, 110, 110, then a 1-row tail
    # whose p99 is 400: the tail is no window, so the drift is 100 -> 110
    p99s = [900.0] * 10 + [100.0] * 10 + [105.0] * 10 + [110.0] * 10 + [110.0] * 10 + [400.0]
    out = _endurance([], per_second(p99s), warmup_s=10.0, window_s=10.0)
    assert out["p99_drift_pct"] == 10.0


def test_a_half_window_at_the_end_counts() -> None:
    p99s = [100.0] * 10 + [150.0] * 5
    assert _endurance([], per_second(p99s), 0.0, 10.0)["p99_drift_pct"] == 50.0


def test_fewer_than_two_whole_windows_is_not_measured() -> None:
    assert _endurance([], per_second([100.0] * 12), 0.0, 10.0)["p99_drift_pct"] is None


def test_the_rss_slope_is_taken_after_the_warm_up_in_mib_per_minute() -> None:
    # 1 MiB every 30 s after a 60 s warm-up that doubled it
    samples = [Sample(float(t), 200.0 + t, 10, 1.0, 50.0, 20.0) for t in range(0, 60, 5)]
    samples += [
        Sample(float(t), 300.0 + (t - 60) / 30.0, 10, 1.0, 50.0, 20.0) for t in range(60, 600, 5)
    ]
    out = _endurance(samples, [], warmup_s=60.0, window_s=60.0)
    assert out["rss_slope_mb_per_min"] == 2.0
    assert out["max_fds"] == 10 and out["store_mb"] == 1.0


def test_cpu_is_averaged_over_samples_and_gc_is_the_sessions_own_count() -> None:
    samples = [Sample(float(t), 100.0, 10, 1.0, cpu, 70.0) for t, cpu in enumerate([40, 60, 95])]
    gc = {"n_collections": 3, "pause": {"max_us": 1250.0}}  # GcMonitor.to_json's shape
    out = _cpu_and_gc(samples, gc)
    assert out == {
        "mean_cpu_pct": 65.0, "max_cpu_pct": 95, "generator_cpu_pct": 70.0,
        "runq_wait_pct": None, "generator_runq_wait_pct": None,  # no schedstat read
        "writer_cpu_pct": None, "feed_cpu_pct": None, "reference_us": None,
        "reference_us_max": None,
        "steal_pct": None, "gc_collections": 3, "gc_pause_max_ms": 1.25,
    }  # fmt: skip
    assert set(_cpu_and_gc([], None).values()) == {None}, "nothing sampled: not measured"
    # the feed reader process's CPU is averaged over the samples that read it
    read = [
        s._replace(feed_cpu_pct=pct) for s, pct in zip(samples, [None, 30.0, 50.0], strict=True)
    ]
    assert _cpu_and_gc(read, gc)["feed_cpu_pct"] == 40.0


def test_run_queue_waits_are_averaged_over_the_samples_that_read_them() -> None:
    waits = [(1.0, 0.5), (None, None), (3.0, 1.5)]  # a sample whose schedstat read failed
    samples = [Sample(float(t), 100.0, 10, 1.0, 50.0, 20.0, *w) for t, w in enumerate(waits)]
    out = _cpu_and_gc(samples, None)
    assert out["runq_wait_pct"] == 2.0 and out["generator_runq_wait_pct"] == 1.0
    writer = [Sample(0.0, 100.0, 10, 1.0, 50.0, 20.0, None, None, cpu) for cpu in (4.0, 8.0)]
    assert _cpu_and_gc(writer, None)["writer_cpu_pct"] == 6.0


def test_the_machine_readings_are_the_median_and_max_loop_and_the_mean_steal() -> None:
    readings = [(500.0, 0.0), (700.0, None), (520.0, 3.0), (None, 1.5)]
    samples = [
        Sample(float(t), 100.0, 10, 1.0, 50.0, 20.0, None, None, None, ref, steal)
        for t, (ref, steal) in enumerate(readings)
    ]
    out = _cpu_and_gc(samples, None)
    assert out["reference_us"] == 520.0 and out["reference_us_max"] == 700.0
    assert out["steal_pct"] == 1.5


def test_the_reference_loop_and_the_steal_ticks_read_this_machine() -> None:
    assert 0.0 < reference_cpu_us(rounds=2) < 1e7
    ticks = cpu_ticks()
    if not Path("/proc/stat").is_file():
        assert ticks is None
        return
    assert ticks is not None and 0 <= ticks[0] <= ticks[1]


def test_run_queue_wait_of_a_process_is_read_from_its_threads_schedstat() -> None:
    if not Path("/proc/self/task").is_dir():
        pytest.skip("no /proc")
    own = run_queue_wait_s(os.getpid())
    assert own is not None and own >= 0.0
    again = run_queue_wait_s(os.getpid())
    assert again is not None and again >= own, "a running total: it never falls"
    assert run_queue_wait_s(2**22 + 12_345) is None, "no such process: not measured"


def _spike_series(baseline: list[float], spike_s: int, after: list[float]) -> list[tuple]:
    p99s = [*baseline, *([50.0] * spike_s), *after]
    return [(1_000 + t, 5_000, 1.0, p99, p99 * 2) for t, p99 in enumerate(p99s)]


SPIKE_PHASES = [(5_000.0, 10.0), (50_000.0, 5.0), (5_000.0, 20.0)]
BASELINE = [2.0, 2.0, 2.0, 2.0, 9.0, 2.0, 2.0, 2.0, 2.0, 2.0]  # median 2: limit 3 at 1.5x


def test_recovery_is_the_first_fast_second_from_which_every_window_is_mostly_fast() -> None:
    after = [20.0, 10.0, 8.0, 2.0, 2.0, 2.0, 9.0, *([2.0] * 13)]  # one slow second at 6
    out = _recovery(_spike_series(BASELINE, 5, after), SPIKE_PHASES, 1.5, 5)
    assert out == {
        "recovery_s": 3.0,  # the isolated slow second is what the baseline has too
        "recovery_every_second_s": 7.0,  # the strict reading waits past it
        "baseline_slow_seconds": 1.0,
    }


def test_a_session_that_stays_slow_in_most_seconds_has_not_recovered() -> None:
    after = [9.0, 2.0, 9.0] * 7  # two seconds in three slow, to the end
    out = _recovery(_spike_series(BASELINE, 5, after), SPIKE_PHASES, 1.5, 5)
    assert out["recovery_s"] is None and out["recovery_every_second_s"] is None


def test_recovery_is_not_measured_without_a_step_above_the_first() -> None:
    flat = [(5_000.0, 10.0), (5_000.0, 10.0)]
    out = _recovery(_spike_series(BASELINE, 0, [2.0] * 10), flat, 1.5, 5)
    assert out == {"recovery_s": None, "recovery_every_second_s": None,
                   "baseline_slow_seconds": None}  # fmt: skip


def test_the_achieved_rate_of_a_session_that_keeps_up_is_the_offered_rate() -> None:
    # 300 s at 20,000/s starting mid-second: 301 rows, the first and the last partial
    rows = [(1_000, 3_644)] + [(1_000 + i, 20_000) for i in range(1, 300)] + [(1_300, 16_356)]
    assert _achieved_rate(rows) == 20_000.0


def test_the_achieved_rate_counts_the_drain_of_a_session_that_fell_behind() -> None:
    # the same bars decided over 375 s: 16,000/s
    rows = [(2_000 + i, 16_000) for i in range(375)] + [(2_375, 0)]
    assert _achieved_rate(rows) == 16_000.0
    assert _achieved_rate([(5, 40)]) == 40.0 and _achieved_rate([]) == 0.0


def _reading(unix_s: float, reference_us: float) -> Sample:
    return Sample(0.0, 100.0, 10, 1.0, 50.0, 10.0, reference_us=reference_us, unix_s=unix_s)


def test_the_machine_read_slower_after_the_spike_is_reported_against_the_first_step() -> None:
    series = _spike_series(BASELINE, 5, [2.0] * 20)  # rows from unix second 1,000
    samples = [
        *(_reading(1_000 + t, 500.0) for t in range(10)),  # the first step: 500 µs
        *(_reading(1_010 + t, 900.0) for t in range(5)),  # the spike: not counted
        *(_reading(1_015 + t, 750.0) for t in range(20)),  # after it: 750 µs
        _reading(1_016.5, None),  # type: ignore[arg-type]  # a reading that failed
    ]
    assert _machine_slower_after(samples, series, SPIKE_PHASES) == 50.0


def test_no_step_above_the_first_or_no_readings_means_not_measured() -> None:
    series = _spike_series(BASELINE, 5, [2.0] * 20)
    flat = [(5_000.0, 10.0), (5_000.0, 10.0)]
    samples = [_reading(1_000 + t, 500.0) for t in range(35)]
    assert _machine_slower_after(samples, series, flat) is None
    assert _machine_slower_after(samples[:10], series, SPIKE_PHASES) is None  # none after
    assert _machine_slower_after([], series, SPIKE_PHASES) is None
