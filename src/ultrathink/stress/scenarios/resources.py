"""Resource exhaustion: a memory limit, CPU contention, a full disk, a read-only store.

Each fault entry is one case, of one of four kinds (``stress/resource_cases.py`` and
``stress/storage_cases.py`` describe what each runs and checks). ``duration_s`` (and
``--duration``) is the CPU contention's length. A case this machine cannot run (a mount
without root) is skipped with its reason, and its metrics are reported as not measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar

from pydantic import Field

from ultrathink.stress.base import RunContext, Scenario
from ultrathink.stress.outcome import Case, Outcome
from ultrathink.stress.resource_cases import CpuContention, MemoryLimit, cpu_case, memory_case
from ultrathink.stress.storage_cases import DiskFull, ReadOnlyStore, disk_full_case, readonly_case

ResourceFault = Annotated[
    MemoryLimit | CpuContention | DiskFull | ReadOnlyStore, Field(discriminator="kind")
]
_Aggregate = Callable[[list[Any]], float | None]


def _all(values: list[Any]) -> float | None:
    return float(all(bool(v) for v in values)) if values else None


def _all_present(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return _all(present)


def _max(values: list[Any]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return max(present) if present else None


def _min(values: list[Any]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return min(present) if present else None


def _sum(values: list[Any]) -> float | None:
    return float(sum(int(v or 0) for v in values)) if values else None


#: metric -> (fault kind, the case figure it aggregates, how, meaning)
_METRICS: dict[str, tuple[str, str, _Aggregate, str]] = {
    "memory_degraded_entered": (
        "memory_limit",
        "degraded_entered",
        _all,
        "1 when degraded mode entered (memory) in every memory case",
    ),
    "memory_entered_before_oom": (
        "memory_limit",
        "entered_before_oom",
        _all,
        "1 when it entered before any MemoryError",
    ),
    "memory_errors": ("memory_limit", "memory_errors", _sum, "MemoryErrors seen"),
    "memory_oom_stop_clear": (
        "memory_limit",
        "oom_stop_clear",
        _all_present,
        "1 when every leak that reached the limit stopped at its first MemoryError with one "
        "'error: out of memory' line, stored failed (cases with expect_oom)",
    ),
    "memory_entry_pct": (
        "memory_limit",
        "limit_pct_at_entry",
        _max,
        "% of the limit used when degraded mode entered (worst case)",
    ),
    "memory_margin_mb": (
        "memory_limit",
        "margin_mb",
        _min,
        "the limit minus the peak address space, MiB (worst case)",
    ),
    "cpu_degraded_entered": (
        "cpu_contention",
        "degraded_entered",
        _all,
        "1 when degraded mode entered during the contention",
    ),
    "cpu_recovered": (
        "cpu_contention",
        "recovered",
        _all,
        "1 when it left degraded mode after the contention",
    ),
    "cpu_entry_s": (
        "cpu_contention",
        "entry_s",
        _max,
        "seconds from the burners' start to degraded mode (worst case)",
    ),
    "cpu_recovery_s": (
        "cpu_contention",
        "recovery_s",
        _max,
        "seconds from the burners' end to leaving degraded mode (worst case)",
    ),
    "cpu_calm_entries": (
        "cpu_contention",
        "calm_entries",
        _sum,
        "status samples degraded before any burner ran",
    ),
    "disk_error_clear": (
        "disk_full",
        "error_clear",
        _all,
        "1 when the full disk stopped the session with one clear error line",
    ),
    "disk_committed_survive": (
        "disk_full",
        "committed_survive",
        _all,
        "1 when every committed record survived (chain and head kept)",
    ),
    "disk_resumed_equal": (
        "disk_full",
        "resumed_equal",
        _all,
        "1 when the resumed run equals the uninterrupted reference",
    ),
    "readonly_error_clear": (
        "read_only",
        "error_clear",
        _all,
        "1 when writing to the read-only store failed with a clear error",
    ),
    "readonly_unchanged": (
        "read_only",
        "unchanged",
        _all,
        "1 when no byte of the read-only store changed",
    ),
    "readonly_readable": (
        "read_only",
        "readable",
        _all,
        "1 when audit verify still read the read-only store",
    ),
    "readonly_resumed_equal": (
        "read_only",
        "resumed_equal",
        _all,
        "1 when the resumed run, once writable, equals the reference",
    ),
}


class ResourcesScenario(Scenario):
    """See the module docstring."""

    kind = "resources"
    metrics: ClassVar[Mapping[str, str]] = {k: v[3] for k, v in _METRICS.items()}
    fault_model = ResourceFault
    uses_duration = True

    def run(self, ctx: RunContext) -> Outcome:
        outcome = Outcome()
        seed, work, log = ctx.config.seed, ctx.work_dir, ctx.log
        kinds: dict[str, list[Case]] = {}
        for fault in ctx.config.faults:
            t0 = time.perf_counter()
            if isinstance(fault, MemoryLimit):
                case = memory_case(fault, work, seed, log)
            elif isinstance(fault, CpuContention):
                burn = ctx.config.duration_s or fault.burn_s
                case, series, figure = cpu_case(
                    fault.model_copy(update={"burn_s": burn}), work, seed, log
                )
                outcome.series[fault.name] = series
                outcome.figures.append(figure)
            elif isinstance(fault, DiskFull):
                case = disk_full_case(fault, work, seed, log)
            else:
                case = readonly_case(fault, work, seed, log)
            case.figures["elapsed_s"] = round(time.perf_counter() - t0, 2)
            outcome.cases.append(case)
            kinds.setdefault(fault.kind, []).append(case)
        for metric, (kind, key, how, _meaning) in _METRICS.items():
            ran = [c for c in kinds.get(kind, []) if not c.skipped]
            if ran:
                outcome.metrics[metric] = how([c.figures.get(key) for c in ran])
                continue
            skipped = [c.skipped for c in kinds.get(kind, [])]
            outcome.skip((metric,), skipped[0] if skipped else f"no {kind} case in this scenario")
        return outcome


SCENARIO = ResourcesScenario
