"""The profiler's readings besides stage timing, and its Prometheus export.

Nothing here runs per bar. ``Durations`` keeps raw ns values (an ``array`` append while a
run records) and summarises them through an HdrHistogram when reported.
``ProcessSample.now()`` reads ``os.times()`` and ``/proc/self/status`` (VmRSS, VmHWM;
``resource.getrusage`` where there is no ``/proc``); ``GcMonitor`` hooks ``gc.callbacks``,
which the interpreter calls only around a collection. The kernel pauses the cyclic collector
during its loop, so a run's window usually shows no automatic collection at all: that is
reported as it is (0), next to whether the collector was enabled when the loop started.
``exposition`` turns profiles (``Profiler.to_json()``) into the Prometheus text format.
"""

from __future__ import annotations

import gc
import os
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ultrathink.core.latency import PERCENTILES, histogram_ns

_STATUS = Path("/proc/self/status")


class Durations:
    """Durations in ns: exact count and sum; percentiles from an HdrHistogram (1 ns .. 60 s,
    3 significant digits) built from the raw values when summarised."""

    __slots__ = ("total_ns", "values")

    def __init__(self) -> None:
        self.values = array("q")
        self.total_ns = 0

    def record(self, ns: int) -> None:
        """Add one duration (ns)."""
        self.values.append(ns)
        self.total_ns += ns

    @property
    def n(self) -> int:
        """How many durations were recorded."""
        return len(self.values)

    def summary(self) -> dict[str, float]:
        """count, mean, p50/p90/p99/p99.9, max (µs) and total (s, exact)."""
        n = len(self.values)
        out: dict[str, float] = {
            "count": float(n),
            "mean_us": self.total_ns / n / 1e3 if n else 0.0,
        }
        hist = histogram_ns(self.values) if n else None
        for p in PERCENTILES:
            out[f"p{p:g}_us"] = hist.get_value_at_percentile(p) / 1e3 if hist else 0.0
        out["max_us"] = hist.get_max_value() / 1e3 if hist else 0.0
        out["total_s"] = self.total_ns / 1e9
        return out


def _status_kb() -> dict[str, int]:
    # VmRSS (now) and VmHWM (peak of this process image), in kB
    out: dict[str, int] = {}
    try:
        with _STATUS.open() as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
        out = {"VmRSS": 0, "VmHWM": int(peak)}
    return out


def run_queue_wait_s(pid: int) -> float | None:
    """Seconds the threads of process ``pid`` have spent runnable but waiting for a CPU, in
    all (the second field of each ``/proc/PID/task/TID/schedstat``); None where the kernel
    does not keep it. Its growth over an interval is time lost to the scheduler, apart from
    the process's own work: on a 2-core machine shared with a load generator and a writer
    process, a woken thread may wait for a core."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total / 1e9 if tasks else None


#: iterations of the reference loop: about 0.5 ms of one core on this machine
REFERENCE_LOOPS = 20_000


def reference_cpu_us(rounds: int = 3) -> float:
    """CPU time (µs) this thread takes for a fixed pure-Python loop, the best of ``rounds``:
    the machine's speed for the interpreter at this moment. Thread CPU time leaves out the
    waits for a core, so a slower reading means the same work cost more CPU (a host that
    runs slower, a sibling hyperthread, caches shared with busy neighbours), which is what a
    session beside it pays too. A stress report samples it each second beside the session's
    CPU, so a session that got slower is not mistaken for one that does more."""
    best = float("inf")
    clock = time.thread_time_ns
    for _ in range(rounds):
        t0 = clock()
        total = 0
        for i in range(REFERENCE_LOOPS):
            total += i
        best = min(best, clock() - t0)
    return best / 1000.0


def cpu_ticks() -> tuple[int, int] | None:
    """``(steal, total)`` jiffies of all CPUs since boot from ``/proc/stat``: the growth of
    ``steal`` over an interval is time the hypervisor gave this virtual machine's CPUs to
    others; None where the file does not say."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    values = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return values[7], sum(values)


@dataclass(frozen=True)
class ProcessSample:
    """Wall clock, CPU times and memory of this process at one moment."""

    wall_s: float
    cpu_user_s: float
    cpu_system_s: float
    rss_bytes: int
    rss_peak_bytes: int

    @classmethod
    def now(cls) -> ProcessSample:
        """Read the clock, ``os.times()`` and ``/proc/self/status``."""
        times = os.times()
        kb = _status_kb()
        return cls(
            time.perf_counter(), times.user, times.system,
            kb.get("VmRSS", 0) * 1024, kb.get("VmHWM", 0) * 1024,
        )  # fmt: skip


def process_usage(start: ProcessSample, end: ProcessSample) -> dict[str, float]:
    """CPU seconds, CPU % of wall time, RSS and peak RSS (MB) between two samples."""
    wall = max(end.wall_s - start.wall_s, 1e-9)
    user, system = end.cpu_user_s - start.cpu_user_s, end.cpu_system_s - start.cpu_system_s
    return {
        "wall_s": wall,
        "cpu_user_s": user,
        "cpu_system_s": system,
        "cpu_pct_of_wall": 100.0 * (user + system) / wall,
        "rss_start_mb": start.rss_bytes / 2**20,
        "rss_mb": end.rss_bytes / 2**20,
        "rss_peak_mb": end.rss_peak_bytes / 2**20,
    }


class GcMonitor:
    """Counts collections per generation and times their pauses through ``gc.callbacks``."""

    #: wall seconds of ``series`` kept (a day of seconds with a collection)
    MAX_SERIES = 86_400

    def __init__(self, timer: Callable[[], int] = time.perf_counter_ns) -> None:
        self._timer = timer
        self._t0 = 0
        self.collections = [0, 0, 0]
        self.collected = 0
        self.uncollectable = 0
        self.pauses = Durations()
        self.enabled_at_start: bool | None = None
        #: per wall-clock second with a collection: [unix second, collections, pause µs total,
        #: longest pause µs] (a session's GC over time)
        self.series: deque[list[float]] = deque(maxlen=self.MAX_SERIES)

    def start(self) -> None:
        """Start listening (idempotent)."""
        self.enabled_at_start = gc.isenabled()
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def stop(self) -> None:
        """Stop listening (idempotent)."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = self._timer()
            return
        dt = self._timer() - self._t0
        gen = int(info.get("generation", 0))
        self.collections[min(max(gen, 0), 2)] += 1
        self.collected += int(info.get("collected", 0))
        self.uncollectable += int(info.get("uncollectable", 0))
        self.pauses.record(dt)
        second, pause_us = int(time.time()), dt / 1e3
        series = self.series
        if series and series[-1][0] == second:
            row = series[-1]
            row[1] += 1
            row[2] += pause_us
            row[3] = max(row[3], pause_us)
        else:
            series.append([second, 1, pause_us, pause_us])

    @property
    def n_collections(self) -> int:
        """Collections seen, all generations."""
        return sum(self.collections)

    def to_json(self) -> dict[str, Any]:
        """Collections by generation, objects freed, pause percentiles (µs) and total (s)."""
        return {
            "enabled_at_start": self.enabled_at_start,
            "collections": {f"gen{i}": n for i, n in enumerate(self.collections)},
            "n_collections": self.n_collections,
            "collected": self.collected,
            "uncollectable": self.uncollectable,
            "pause": self.pauses.summary(),
        }


# (name, help, labels besides run and strategy) of the metric families, by key
_FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "stage": ("stage_seconds", "stage time per recorded bar, or per call (exact stages)",
              ("stage",)),
    "share": ("stage_share", "share of the estimated loop time", ("stage",)),
    "estimated": ("stage_estimated_seconds", "estimated total time over the run", ("stage",)),
    "events": ("events", "bars, orders and fills of the run", ("kind",)),
    "rate": ("throughput_per_second", "events per second of loop wall time", ("kind",)),
    "process": ("process", "CPU s, CPU %, RSS MB over the run's loop", ("kind",)),
    "gc": ("gc_collections", "garbage collections during the loop", ("generation",)),
    "gc_pause": ("gc_pause_seconds", "garbage-collector pauses during the loop", ()),
    "sample_every": ("sample_every", "one bar in N is recorded", ()),
}  # fmt: skip
_SUMMARIES = ("stage", "gc_pause")
_COUNTERS = ("events", "gc")


class _Collector(Collector):
    # a custom prometheus-client collector over profiles in their JSON form
    def __init__(self, runs: Sequence[dict[str, Any]]) -> None:
        self._runs = runs

    def collect(self) -> Iterator[Metric]:
        fams: dict[str, Metric] = {}
        for key, (name, doc, labels) in _FAMILIES.items():
            full, names = f"ultrathink_profile_{name}", ["run", "strategy", *labels]
            if key in _SUMMARIES:
                fams[key] = Metric(full, doc, "summary")
            elif key in _COUNTERS:
                fams[key] = CounterMetricFamily(full, doc, labels=names)
            else:
                fams[key] = GaugeMetricFamily(full, doc, labels=names)
        for run in self._runs:
            _add_run(fams, run)
        yield from fams.values()


def _add_run(fams: dict[str, Metric], run: dict[str, Any]) -> None:
    ids = {"run": run["label"], "strategy": run["strategy"]}

    def add(key: str, labels: list[str], value: float) -> None:
        fams[key].add_metric([*ids.values(), *labels], value)  # type: ignore[attr-defined]

    for stage, summary in {"bar": run["bar"], **run["stages"], **run["calls"]}.items():
        _add_summary(fams["stage"], {**ids, "stage": stage}, summary)
    for row in run["bottleneck"]:
        add("share", [row["stage"]], row["share"])
        add("estimated", [row["stage"]], row["estimated_s"])
    for kind in ("bars", "orders", "fills"):
        add("events", [kind], run["throughput"][kind])
        add("rate", [kind], run["throughput"][f"{kind}_per_s"])
    for kind, value in run["process"].items():
        add("process", [kind], value)
    for gen, n in run["gc"]["collections"].items():
        add("gc", [gen], n)
    _add_summary(fams["gc_pause"], ids, run["gc"]["pause"])
    add("sample_every", [], run["sample_every"])


def _add_summary(metric: Metric, labels: dict[str, str], summary: dict[str, float]) -> None:
    # a summary from a JSON stage summary (µs percentiles, s total)
    if summary["count"]:
        for p in PERCENTILES:
            quantile = {**labels, "quantile": f"{p / 100:g}"}
            metric.add_sample(metric.name, quantile, summary[f"p{p:g}_us"] / 1e6)
    metric.add_sample(f"{metric.name}_count", labels, summary["count"])
    metric.add_sample(f"{metric.name}_sum", labels, summary["total_s"])


def exposition(runs: Sequence[dict[str, Any]]) -> bytes:
    """Profiles (``Profiler.to_json()``) in the Prometheus text format (own registry)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(runs))
    return generate_latest(registry)
