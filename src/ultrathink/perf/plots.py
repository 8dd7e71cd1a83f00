"""PNG plots of a benchmark run: latency histograms and a throughput bar chart.

``write_plots(results, out_dir)`` draws, with matplotlib's Agg backend (no display needed):

* ``latency_<name>.png`` for every result that recorded per-event latencies (decision
  latency, single-row inference, streaming features): a histogram in µs on a log scale,
  with the p50 and p99 marked;
* ``throughput.png``: the median of every ``ops/s`` result as a horizontal bar on a log
  scale, with its min-max range as an error bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ultrathink.perf.suite import BenchResult


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def plot_latency(result: BenchResult, path: Path) -> Path:
    """Histogram of ``result``'s per-event latencies (µs, log x) with p50 and p99 lines."""
    if result.events_ns is None or result.events_ns.size == 0:
        raise ValueError(f"{result.name} recorded no per-event latencies")
    plt = _pyplot()
    us = np.maximum(result.events_ns.astype(np.float64) / 1e3, 1e-3)
    p50, p99 = np.percentile(us, [50, 99])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    try:
        edges = np.geomspace(us.min(), us.max() * 1.001, 80)
        ax.hist(us, bins=edges, color="#4878a8")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for value, label, style in ((p50, "p50", "--"), (p99, "p99", ":")):
            ax.axvline(value, color="#c03030", linestyle=style, label=f"{label} {value:.2f} µs")
        ax.set_xlabel("latency per event (µs)")
        ax.set_ylabel("events")
        ax.set_title(f"{result.name}: {us.size:,} events")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def plot_throughput(results: Sequence[BenchResult], path: Path) -> Path:
    """Horizontal bars of the median ops/s of ``results`` (log x), min-max as error bars."""
    rows = [r for r in results if r.unit == "ops/s"]
    if not rows:
        raise ValueError("no ops/s results to plot")
    plt = _pyplot()
    medians = np.array([r.median for r in rows])
    lower = medians - np.array([min(r.values) for r in rows])
    upper = np.array([max(r.values) for r in rows]) - medians
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(rows) + 1.5))
    try:
        y = np.arange(len(rows))
        ax.barh(y, medians, xerr=[lower, upper], color="#4878a8", ecolor="#333333")
        ax.set_yticks(y, [r.name for r in rows])
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("operations per second (median, min-max)")
        ax.set_title("throughput")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def write_plots(results: Sequence[BenchResult], out_dir: Path | str) -> list[Path]:
    """Write every plot ``results`` allow into ``out_dir`` (created); return the files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [
        plot_latency(r, out / f"latency_{_safe(r.name)}.png")
        for r in results
        if r.events_ns is not None and r.events_ns.size
    ]
    if any(r.unit == "ops/s" for r in results):
        written.append(plot_throughput(results, out / "throughput.png"))
    return written
