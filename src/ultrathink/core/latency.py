"""Latency percentiles from HdrHistogram (3 significant digits, 1 ns .. 60 s)."""

from __future__ import annotations

from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def histogram_ns(values_ns: Iterable[int]) -> HdrHistogram:
    """An HdrHistogram of durations in nanoseconds (values above 60 s are clamped)."""
    hist = HdrHistogram(1, 60_000_000_000, 3)
    record = hist.record_value
    for value in values_ns:
        record(min(max(int(value), 1), 60_000_000_000))
    return hist


def percentiles_us(values_ns: Iterable[int]) -> dict[str, float] | None:
    """p50/p90/p99/p99.9/max and count of durations, in µs (None when there are none)."""
    hist = histogram_ns(values_ns)
    if hist.get_total_count() == 0:
        return None
    out = {f"p{p:g}": hist.get_value_at_percentile(p) / 1000.0 for p in PERCENTILES}
    out["max"] = hist.get_max_value() / 1000.0
    out["count"] = float(hist.get_total_count())
    return out
