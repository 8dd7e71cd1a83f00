"""Memory against the process's real limit (``hardening/memory_limit.py`` and degraded mode).

The rlimits are real: set in a child Python process (``resource.setrlimit``), which then
reads them, or leaks until the kernel refuses an allocation. The cgroup trees are real files
laid out as the kernel lays them out (v2 ``memory.max``/``memory.current``/``memory.stat``,
v1 ``memory.limit_in_bytes``...), since this machine's own cgroup has no memory limit to read.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ultrathink.core.clock import TestClock
from ultrathink.hardening.degraded import (
    REASON_MEMORY_LIMIT,
    DegradedConfig,
    DegradedModeMonitor,
    DegradedTransition,
)
from ultrathink.hardening.memory_limit import LIMIT_RECHECK_S, MemoryLimits

MIB = 1 << 20
S = 1_000_000_000


class FakeSampler:
    def cpu_seconds(self) -> float:
        return 0.0

    def rss_mb(self) -> float:
        return 100.0


def cgroup_v2(tmp_path: Path, levels: dict[str, tuple[str, int, int]]) -> MemoryLimits:
    """A v2 tree: ``levels`` maps a cgroup path to (memory.max, current, inactive_file)."""
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    proc.mkdir()
    leaf = max(levels, key=len)
    (proc / "cgroup").write_text(f"0::{leaf}\n")
    (proc / "status").write_text("VmSize:\t  100000 kB\nVmData:\t   50000 kB\n")
    root.mkdir()
    for path, (limit, current, inactive) in levels.items():
        d = root / path.lstrip("/")
        d.mkdir(parents=True, exist_ok=True)
        (d / "memory.max").write_text(f"{limit}\n")
        (d / "memory.current").write_text(f"{current}\n")
        (d / "memory.stat").write_text(
            f"anon {current - inactive}\nfile {inactive}\ninactive_file {inactive}\n"
        )
    return MemoryLimits(proc, root)


def set_current(limits_root: Path, path: str, current: int) -> None:
    (limits_root / path.lstrip("/") / "memory.current").write_text(f"{current}\n")


def test_the_tightest_cgroup_level_counts_its_working_set(tmp_path: Path) -> None:
    limits = cgroup_v2(
        tmp_path,
        {
            "/svc": (str(400 * MIB), 390 * MIB, 0),  # the parent: 97.5 %
            "/svc/session": (str(512 * MIB), 400 * MIB, 100 * MIB),  # 300 of 512: 58.6 %
        },
    )

    uses = sorted(limits.uses(), key=lambda u: u.pct)
    tightest = limits.tightest()

    assert [round(u.pct, 1) for u in uses] == [58.6, 97.5]
    assert uses[0].measure == "working set" and uses[0].used_mb == 300.0
    assert tightest is not None and tightest.limit.endswith("/cgroup/svc)")
    assert tightest.describe().startswith("cgroup memory.max (")
    assert tightest.describe().endswith("(working set 390.0 of 400.0 MiB)")


def test_max_means_no_limit_and_no_limit_means_nothing_judged(tmp_path: Path) -> None:
    limits = cgroup_v2(tmp_path, {"/a": ("max", 10 * MIB, 0)})

    assert limits.uses() == [] and limits.tightest() is None


def test_a_limit_is_read_again_after_the_recheck_period_and_usage_at_every_call(
    tmp_path: Path,
) -> None:
    cgroup_v2(tmp_path, {"/a": ("max", 100 * MIB, 0)})
    now = [1000.0]
    limits = MemoryLimits(tmp_path / "proc", tmp_path / "cgroup", clock=lambda: now[0])
    assert limits.uses() == []
    (tmp_path / "cgroup" / "a" / "memory.max").write_text(f"{200 * MIB}\n")  # an operator's
    now[0] += LIMIT_RECHECK_S - 0.1
    assert limits.uses() == [], "the absence of a limit is trusted for the recheck period"
    now[0] += 0.1
    (use,) = limits.uses()
    assert use.limit_mb == 200.0 and use.used_mb == 100.0
    set_current(tmp_path / "cgroup", "/a", 150 * MIB)
    (use,) = limits.uses()  # same instant: the usage is read again, the limit is not
    assert use.used_mb == 150.0 and use.limit_mb == 200.0


def test_a_v1_memory_hierarchy_is_read_too(tmp_path: Path) -> None:
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    proc.mkdir()
    (proc / "cgroup").write_text("5:cpu:/\n4:memory:/docker/abc\n0::/\n")
    d = root / "memory" / "docker" / "abc"
    d.mkdir(parents=True)
    (d / "memory.limit_in_bytes").write_text(f"{1024 * MIB}\n")
    (d / "memory.usage_in_bytes").write_text(f"{900 * MIB}\n")
    (d / "memory.stat").write_text(f"cache {300 * MIB}\ntotal_inactive_file {200 * MIB}\n")
    (root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # none

    (use,) = MemoryLimits(proc, root).uses()

    assert use.limit.startswith("cgroup memory.limit_in_bytes (") and use.used_mb == 700.0
    assert use.pct == pytest.approx(700 / 1024 * 100)


def test_degraded_mode_enters_at_the_fraction_of_the_limit_and_leaves_below_exit(
    tmp_path: Path,
) -> None:
    limits = cgroup_v2(tmp_path, {"/s": (str(1000 * MIB), 500 * MIB, 0)})
    clock = TestClock(1_000 * S)
    config = DegradedConfig(memory_limit_enter_pct=80.0, min_dwell_s=1.0, cpu_enter_pct=None)
    monitor = DegradedModeMonitor(config, clock, FakeSampler(), limits)
    seen: list[DegradedTransition] = []
    cleanups: list[int] = []
    monitor.on_change(seen.append)
    monitor.add_cleanup(lambda: cleanups.append(1))
    root = tmp_path / "cgroup"

    assert not monitor.sample() and monitor.readings.memory_limit_pct == 50.0
    set_current(root, "/s", 810 * MIB)
    assert monitor.sample(), "81 % of the limit >= 80 %"
    set_current(root, "/s", 750 * MIB)  # under enter, above the default exit (70 %)
    clock.advance_ns(5 * S)
    assert monitor.sample()
    set_current(root, "/s", 690 * MIB)
    assert not monitor.sample()

    assert [t.entered for t in seen] == [True, False] and cleanups == [1]
    assert seen[0].reasons == (REASON_MEMORY_LIMIT,)
    assert seen[0].detail.startswith("memory_limit 81.00 % of cgroup memory.max (") and seen[
        0
    ].detail.endswith("(working set 810.0 of 1000.0 MiB) >= memory_limit_enter_pct=80.0")
    assert monitor.readings.memory_limit is not None


def test_the_limit_signal_is_on_by_default_and_can_be_switched_off() -> None:
    assert DegradedConfig().memory_limit_enter_pct == 85.0
    with pytest.raises(ValueError, match="memory_limit_exit_pct must be < memory_limit_enter"):
        DegradedConfig(memory_limit_enter_pct=50.0, memory_limit_exit_pct=60.0)
    with pytest.raises(ValueError, match="memory_limit_exit_pct needs memory_limit_enter_pct"):
        DegradedConfig(memory_limit_enter_pct=None, memory_limit_exit_pct=60.0)


def child(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh Python; it prints one JSON line, the answer."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    answer: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return answer


def test_real_rlimits_are_read_against_what_they_count() -> None:
    got = child(
        """
        import json, resource
        from ultrathink.hardening.memory_limit import MemoryLimits
        def vm(key):
            for line in open("/proc/self/status"):
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        free = resource.RLIM_INFINITY
        resource.setrlimit(resource.RLIMIT_AS, (vm("VmSize") + (2 << 30), free))
        resource.setrlimit(resource.RLIMIT_DATA, (vm("VmData") + (256 << 20), free))
        uses = {u.limit: u._asdict() for u in MemoryLimits().uses()}
        names = ("RLIMIT_AS", "RLIMIT_DATA")
        limits = {n: resource.getrlimit(getattr(resource, n))[0] / 2**20 for n in names}
        tightest = MemoryLimits().tightest().limit
        print(json.dumps({"uses": uses, "limits": limits, "tightest": tightest}))
        """
    )
    uses, limits = got["uses"], got["limits"]
    assert isinstance(uses, dict) and isinstance(limits, dict)
    assert uses["RLIMIT_AS"]["measure"] == "VmSize"
    assert uses["RLIMIT_AS"]["limit_mb"] == limits["RLIMIT_AS"]
    assert uses["RLIMIT_DATA"]["measure"] == "VmData"
    assert uses["RLIMIT_DATA"]["limit_mb"] == limits["RLIMIT_DATA"]
    assert got["tightest"] == "RLIMIT_DATA", "256 MiB of headroom is tighter than 2 GiB"


@pytest.mark.parametrize("rlimit", ["RLIMIT_AS", "RLIMIT_DATA"])
def test_degraded_mode_enters_before_the_first_memory_error(rlimit: str) -> None:
    """A leak of 8 MiB per step under a real rlimit, degraded mode sampled every step."""
    got = child(
        f"""
        import json, resource
        from ultrathink.core.clock import LiveClock
        from ultrathink.hardening.degraded import DegradedConfig, DegradedModeMonitor
        key = "VmSize" if "{rlimit}" == "RLIMIT_AS" else "VmData"
        used = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status")
                    if l.startswith(key + ":"))
        resource.setrlimit(resource.{rlimit}, (used + (300 << 20), resource.RLIM_INFINITY))
        config = DegradedConfig(memory_limit_enter_pct=85.0, cpu_enter_pct=None)
        monitor = DegradedModeMonitor(config, LiveClock())
        kept, entered, pct = [], None, None
        for step in range(1000):
            if monitor.sample() and entered is None:
                entered, pct = step, monitor.readings.memory_limit_pct
            try:
                kept.append(b"x" * (8 << 20))
            except MemoryError:
                break
        print(json.dumps({{"entered": entered, "oom": step, "pct": pct,
                          "reasons": sorted(monitor.reasons)}}))
        """
    )
    entered, oom, pct = got["entered"], got["oom"], got["pct"]
    assert isinstance(entered, int) and isinstance(oom, int) and isinstance(pct, float)
    assert entered < oom, f"degraded at step {entered}, MemoryError at step {oom}"
    assert 85.0 <= pct < 100.0
    assert got["reasons"] == [REASON_MEMORY_LIMIT]
