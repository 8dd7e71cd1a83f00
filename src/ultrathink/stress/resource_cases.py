"""The process cases of the resources scenario: a memory limit and CPU contention.

Both run ``ultrathink paper`` in a child process, paced, with degraded mode configured for
the case, poll its status and memory while it runs (``child.StatusPoller``), and read its
store afterwards.

**Memory limit**: the session runs under ``RLIMIT_AS`` (or ``RLIMIT_DATA``) with the
``Ballast`` strategy keeping ``mb_per_bar`` MiB per bar up to ``ballast_mb``, and degraded
mode watching the memory that limit counts at ``enter_pct`` % of it (``memory_limit``; or
RSS at ``enter_mb``, a number of its own, when set). Degraded mode must be entered (reason
``memory_limit`` or ``memory``) before any ``MemoryError``. A leak that stays under the limit
must see none, and the peak address space must stay under the limit (``margin_mb``); one
that reaches it (``expect_oom``) must stop the session at the first ``MemoryError`` with one
``error: out of memory`` line (exit 2, no traceback), the run stored failed, and the store
never ahead of the venue.

**CPU contention**: the ``Burner`` strategy spends about ``decision_ms`` of CPU per decision
(calibrated here); after ``calm_s`` of a calm session, ``burners_per_cpu`` x CPUs CPU-bound
processes compete for ``burn_s`` (at nice ``nice`` when this process may raise their
priority: root). Degraded mode must enter during the contention (its latency signal: the
decisions' p99 reaches ``enter_ms``) and leave after it, within ``cpu_recovery_s``. Its CPU
signal measures the session's own use, which contention lowers, so it cannot be the one.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from ultrathink.engine.sessions import CONTROL_FILE_NAME, session_dir
from ultrathink.stress import strategies
from ultrathink.stress.base import STRICT
from ultrathink.stress.chaos import PaperCommand, wait_for_file
from ultrathink.stress.child import Burners, Sample, StatusPoller, is_root, rlimit_prefix
from ultrathink.stress.figures import series_figure
from ultrathink.stress.invariants import check_process, check_run, read_rows
from ultrathink.stress.outcome import Case

Log = Callable[[str], None]
_RSS_AT = re.compile(r"memory ([0-9.]+) MiB")
_LIMIT_AT = re.compile(r"memory_limit ([0-9.]+) % of (\S+) \((\w+) ([0-9.]+) of ([0-9.]+) MiB\)")


class MemoryLimit(BaseModel):
    """A session under an rlimit, leaking up to ``ballast_mb``; degraded at ``enter_mb``."""

    model_config = STRICT

    kind: Literal["memory_limit"]
    name: str = Field(pattern=r"^[a-z0-9_-]{1,40}$")
    rlimit: Literal["AS", "DATA"] = "AS"
    limit_mb: int = Field(default=1536, ge=256, le=1_048_576)
    enter_pct: float = Field(default=85.0, gt=0, lt=100)
    enter_mb: float | None = Field(default=None, gt=0)
    expect_oom: bool = False
    ballast_mb: float = Field(default=320.0, ge=0)
    mb_per_bar: float = Field(default=4.0, gt=0, le=1024)
    n_bars: int = Field(default=800, ge=50)
    speed: float = Field(default=30_000.0, gt=0)


class CpuContention(BaseModel):
    """A calm session, then CPU burners, then calm again; degraded must enter and leave."""

    model_config = STRICT

    kind: Literal["cpu_contention"]
    name: str = Field(pattern=r"^[a-z0-9_-]{1,40}$")
    burners_per_cpu: int = Field(default=2, ge=1, le=16)
    nice: int = Field(default=-10, ge=-20, le=19)
    decision_ms: float = Field(default=1.0, gt=0, le=100)
    enter_ms: float = Field(default=25.0, gt=0)
    exit_ms: float = Field(default=12.0, gt=0)
    calm_s: float = Field(default=2.0, ge=0, le=600)
    burn_s: float = Field(default=3.0, gt=0, le=86_400)
    tail_s: float = Field(default=5.0, gt=0, le=600)
    bars_per_s: float = Field(default=100.0, gt=0, le=10_000)


def memory_case(fault: MemoryLimit, work: Path, seed: int, log: Log) -> Case:
    """Run the memory-limit case (see the module docstring)."""
    strategy = (
        f"{strategies.__file__}:Ballast",
        f"mb_per_bar={fault.mb_per_bar}",
        f"max_mb={fault.ballast_mb}",
    )
    signals = f"memory_limit_enter_pct = {float(fault.enter_pct)}\n"
    if fault.enter_mb is not None:
        signals += f"memory_enter_mb = {float(fault.enter_mb)}\n"
    config = (
        "[hardening]\ndegraded_sample_bars = 8\n[hardening.degraded]\n"
        f"{signals}latency_enter_ms = 600000.0\n"
        "latency_exit_ms = 1.0\ncpu_enter_pct = 100000.0\nmin_dwell_s = 0.5\n"
    )
    limit = fault.limit_mb * (1 << 20)
    at = [f"{fault.enter_pct} % of the limit"]
    at += [f"{fault.enter_mb} MiB RSS"] if fault.enter_mb is not None else []
    log(
        f"resources: {fault.name}: RLIMIT_{fault.rlimit} {fault.limit_mb} MiB, degraded at "
        f"{' or '.join(at)}, leak up to {fault.ballast_mb} MiB"
    )
    child = _session(
        work / fault.name,
        fault.n_bars,
        fault.speed,
        seed,
        strategy,
        config,
        prefix=rlimit_prefix(fault.rlimit, limit),
        poll_s=0.05,
    )
    db, code, err, samples = child.db, child.returncode, child.stderr, child.samples
    expected = (2,) if fault.expect_oom else (0,)
    case = Case(fault.name, invariants=[check_process(code, err, expected, what="session")])
    if read_rows(db, "SELECT 1 FROM runs"):
        case.invariants += check_run(db)
    rows = read_rows(
        db,
        "SELECT seq, kind, detail FROM audit_log WHERE kind IN "
        "('degraded.entered', 'decision.error') ORDER BY seq",
    )
    entered = [r for r in rows if r[1] == "degraded.entered" and "memory" in (r[2] or "")]
    errors = [r for r in rows if r[1] == "decision.error" and "MemoryError" in (r[2] or "")]
    n_errors = len(errors) + ("MemoryError" in err and not errors)
    detail = entered[0][2] if entered else ""
    rss_at, limit_at = _RSS_AT.search(detail), _LIMIT_AT.search(detail)
    peak_vms = max((s.vms_mb for s in samples if s.vms_mb is not None), default=None)
    case.figures.update(
        rlimit=f"RLIMIT_{fault.rlimit}",
        limit_mb=fault.limit_mb,
        enter_pct=fault.enter_pct,
        enter_mb=fault.enter_mb,
        degraded_entered=bool(entered),
        entry_reason=detail.split(":", 1)[0] if detail else None,
        limit_pct_at_entry=float(limit_at[1]) if limit_at else None,
        limit_use_at_entry=f"{limit_at[3]} {limit_at[4]} MiB" if limit_at else None,
        rss_at_entry_mb=float(rss_at[1]) if rss_at else None,
        peak_rss_mb=max((s.rss_mb for s in samples if s.rss_mb is not None), default=None),
        peak_vms_mb=peak_vms,
        margin_mb=None if peak_vms is None else fault.limit_mb - peak_vms,
        memory_errors=n_errors,
        exit_code=code,
        entered_before_oom=bool(entered) and (not errors or entered[0][0] < errors[0][0]),
    )
    if fault.expect_oom:
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        status = read_rows(db, "SELECT status FROM runs")
        case.figures.update(
            oom_stop_clear=code == 2
            and len(lines) == 1
            and lines[0].startswith("error: out of memory")
            and status == [("failed",)],
            oom_error=lines[0][:200] if lines else None,
        )
    return case


def cpu_case(
    fault: CpuContention, work: Path, seed: int, log: Log
) -> tuple[Case, dict[str, Any], tuple[str, str, Any]]:
    """Run the CPU-contention case; its case, its time series and its figure."""
    units = calibrate(fault.decision_ms)
    nice = fault.nice if is_root() or fault.nice >= 0 else 0
    n_burners = fault.burners_per_cpu * (os.cpu_count() or 1)
    span_s = fault.calm_s + fault.burn_s + fault.tail_s
    n_bars = int(fault.bars_per_s * span_s) + 1
    strategy = (f"{strategies.__file__}:Burner", f"work={units}", "qty=1")
    config = (
        "[hardening]\ndegraded_sample_bars = 8\n[hardening.degraded]\n"
        f"latency_enter_ms = {float(fault.enter_ms)}\nlatency_exit_ms = {float(fault.exit_ms)}\n"
        "latency_window = 50\nlatency_min_samples = 10\nmin_dwell_s = 0.5\n"
    )
    log(
        f"resources: {fault.name}: {fault.decision_ms} ms decisions ({units} units); "
        f"{n_burners} burners at nice {nice} for {fault.burn_s:g} s after {fault.calm_s:g} s"
    )
    burners = Burners(n_burners, fault.burn_s, nice)

    def contend() -> None:
        time.sleep(fault.calm_s)  # the calm phase, once the session is live
        with burners:
            burners.wait()

    child = _session(
        work / fault.name,
        n_bars,
        fault.bars_per_s * 60.0,
        seed,
        strategy,
        config,
        during=contend,
        poll_s=0.1,
    )
    db, samples = child.db, child.samples
    case = Case(
        fault.name, invariants=[check_process(child.returncode, child.stderr, what="session")]
    )
    if read_rows(db, "SELECT 1 FROM runs"):
        case.invariants += check_run(db)
    start, stop = burners.started - child.t0, burners.stopped - child.t0
    case.figures.update(_contention(samples, start, stop))
    reasons = read_rows(db, "SELECT detail FROM audit_log WHERE kind = 'degraded.entered'")
    case.figures.update(
        burners=n_burners,
        nice=nice,
        decision_units=units,
        entry_reasons="; ".join(r[0][:80] for r in reasons[:3]),
    )
    times = [s.t_s for s in samples]
    latency = [s.latency_ms for s in samples]
    degraded = [None if s.degraded is None else float(s.degraded) for s in samples]
    series: dict[str, Any] = {
        "t_s": times,
        "trading_state": [s.trading_state for s in samples],
        "degraded": [s.degraded for s in samples],
        "latency_ms": latency,
        "burners_s": [round(start, 3), round(stop, 3)],
    }
    figure = series_figure(
        times,
        {
            "decision latency p99 (ms), as degraded mode judges it": latency,
            "degraded mode (1 = on)": degraded,
            "trading state (0 ACTIVE, 1 REDUCING, 2 HALTED)": [_level(s) for s in samples],
        },
        "seconds since the session was live",
        bands=[(start, stop, "CPU burners")],
    )
    note = "the session's status every 0.1 s: CPU burners compete during the shaded span"
    return case, series, (f"resources {fault.name}: degraded mode over time", note, figure)


def calibrate(decision_ms: float) -> int:
    """Units of ``Burner`` work that take about ``decision_ms`` of CPU here, now."""
    units, best = 5000, float("inf")
    for _ in range(5):
        t0 = time.process_time()
        total = 0
        for i in range(units):
            total += i
        best = min(best, time.process_time() - t0)
    per_ms = units / max(best * 1000.0, 1e-3)
    return max(1, int(per_ms * decision_ms))


@dataclass
class _Child:
    db: Path
    returncode: int
    stderr: str
    samples: list[Sample] = field(default_factory=list)
    t0: float = 0.0  # time.monotonic() when polling began: the samples' origin


def _session(
    directory: Path,
    n_bars: int,
    speed: float,
    seed: int,
    strategy: tuple[str, ...],
    config: str,
    *,
    prefix: list[str] | tuple[str, ...] = (),
    during: Callable[[], None] | None = None,
    poll_s: float,
) -> _Child:
    directory.mkdir(parents=True)
    path, *params = strategy
    args = ("--strategy", path, *(a for p in params for a in ("--param", p)))
    cmd = PaperCommand(f"synthetic:n_bars={n_bars},seed={seed}", args, config)
    db = directory / "stress.db"
    proc = cmd.start(db, "--speed", str(speed), output=True, prefix=prefix)
    control = session_dir(db, 1) / CONTROL_FILE_NAME
    try:
        wait_for_file(control, proc)
    except RuntimeError:  # it failed before it was live: what it printed says why
        _out, err = proc.communicate(timeout=600)
        return _Child(db, proc.returncode, err.decode(errors="replace"))
    poller = StatusPoller(proc.pid, control, poll_s).start()
    try:
        if during is not None:
            during()
        _out, err = proc.communicate(timeout=600)
    finally:
        poller.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return _Child(db, proc.returncode, err.decode(errors="replace"), poller.samples, poller.t0)


def _contention(samples: list[Sample], start: float, stop: float) -> dict[str, Any]:
    calm = [s for s in samples if s.t_s < start and s.degraded]
    entered = next((s for s in samples if s.t_s >= start and s.degraded), None)
    left = None
    if entered is not None:
        left = next(
            (s for s in samples if s.t_s >= max(stop, entered.t_s) and s.degraded is False), None
        )
    return {
        "calm_entries": len(calm),
        "degraded_entered": entered is not None and entered.t_s <= stop + 2.0,
        "entry_s": None if entered is None else round(entered.t_s - start, 3),
        "recovered": left is not None,
        "recovery_s": None if left is None else round(max(left.t_s - stop, 0.0), 3),
        "burn_s": round(stop - start, 3),
    }


def _level(sample: Sample) -> float | None:
    order = ("ACTIVE", "REDUCING", "HALTED")
    state = sample.trading_state
    return float(order.index(state)) if state in order else None
