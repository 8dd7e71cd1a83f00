"""Latency percentiles from HdrHistogram (3 significant digits, 1 ns .. 60 s).

``histogram_ns`` fills the histogram from numpy: each value is rounded down to the lowest
value of its HdrHistogram bucket (vectorised), and each distinct bucket is recorded once with
its count, which gives exactly the counts (so the percentiles, min and max) of recording the
values one by one, at about a hundredth of the cost for a million values (a Python call per
value was 2-6 µs).

``LatencyLog`` is a run's decision-latency record: one ``array('q').append`` per decision on
the hot path, and, between two bars, values beyond ``limit`` folded into a histogram so a
session of any length keeps a bounded amount (8 B per decision was the leak the endurance
scenario found).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

import numpy as np
from hdrh.histogram import HdrHistogram

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


#: HdrHistogram's range and precision for durations
_LOWEST, _HIGHEST, _DIGITS = 1, 60_000_000_000, 3


def new_histogram() -> HdrHistogram:
    """An empty HdrHistogram of durations in nanoseconds (1 ns .. 60 s, 3 digits)."""
    return HdrHistogram(_LOWEST, _HIGHEST, _DIGITS)


#: the bucket key of ``new_histogram``'s histograms: (shift << _BITS) | (value >> shift)
_BITS = new_histogram().sub_bucket_half_count_magnitude + 1
_KEYS = (_HIGHEST.bit_length() - _BITS + 1) << _BITS  # every key of a value up to _HIGHEST


def record_many(hist: HdrHistogram, values_ns: Iterable[int] | np.ndarray) -> None:
    """Record every value (clamped to 1 ns .. 60 s) as ``record_value`` one by one would."""
    v = _clipped(values_ns)
    if v.size:
        _record_counts(hist, _bucket_counts(v, hist.sub_bucket_half_count_magnitude + 1))


def _clipped(values_ns: Iterable[int] | np.ndarray) -> np.ndarray:
    v = np.asarray(values_ns if isinstance(values_ns, np.ndarray) else _as_array(values_ns))
    return np.clip(v.astype(np.int64, copy=False), _LOWEST, _HIGHEST)


def _bucket_counts(v: np.ndarray, bits: int, minlength: int = 0) -> np.ndarray:
    # bucket lowest value: keep the top bits that resolve the bucket (v >> shift, under
    # 2**bits), clear the others; (shift, v >> shift) is a small dense key, so the buckets
    # are counted with one bincount, O(n), where np.unique sorted: 70 ms for a million
    # values, a stall of the kernel thread each time ``LatencyLog.fold`` ran
    shift = np.maximum(_bit_length(v) - bits, 0)
    return np.bincount((shift << bits) | (v >> shift), minlength=minlength)


def _record_counts(hist: HdrHistogram, counts: np.ndarray) -> None:
    # one ``record_value`` per non-empty bucket key of ``_bucket_counts``: about 1 µs each
    bits = hist.sub_bucket_half_count_magnitude + 1
    keys = np.flatnonzero(counts)
    values = (keys & ((1 << bits) - 1)) << (keys >> bits)
    record = hist.record_value
    for value, count in zip(values.tolist(), counts[keys].tolist(), strict=True):
        record(value, count)


def _as_array(values: Iterable[int]) -> np.ndarray:
    if isinstance(values, array):
        return (
            np.frombuffer(values, dtype=np.int64)
            if values.typecode == "q"
            else np.asarray(values, dtype=np.int64)
        )
    return np.fromiter((int(x) for x in values), dtype=np.int64)


def _bit_length(v: np.ndarray) -> np.ndarray:
    # int.bit_length for positive int64s: frexp's exponent is exact (no float rounding issue
    # up to 2**53; values here are at most 6e10)
    return np.frexp(v.astype(np.float64))[1].astype(np.int64)


def histogram_ns(values_ns: Iterable[int]) -> HdrHistogram:
    """An HdrHistogram of durations in nanoseconds (values above 60 s are clamped)."""
    hist = new_histogram()
    record_many(hist, values_ns)
    return hist


def percentiles_us(values_ns: Iterable[int]) -> dict[str, float] | None:
    """p50/p90/p99/p99.9/max and count of durations, in µs (None when there are none)."""
    return _percentiles(histogram_ns(values_ns))


def tail_percentiles(hist: HdrHistogram) -> dict[str, float]:
    """p50, p99 and p99.9 of ``hist`` in its own unit, keyed ``p50``, ``p99`` and ``p999``
    (the feed's bar ages and the load generator's lags report them so)."""
    return {
        f"p{p:g}".replace(".", ""): float(hist.get_value_at_percentile(p)) for p in (50, 99, 99.9)
    }


def _percentiles(hist: HdrHistogram) -> dict[str, float] | None:
    if hist.get_total_count() == 0:
        return None
    out = {f"p{p:g}": hist.get_value_at_percentile(p) / 1000.0 for p in PERCENTILES}
    out["max"] = hist.get_max_value() / 1000.0
    out["count"] = float(hist.get_total_count())
    return out


class LatencyLog:
    """A run's decision latencies (ns), bounded.

    ``values`` is appended to on the hot path (``values.append``, no Python frame). ``fold``,
    called between two bars, moves all but the newest ``keep`` values into the histogram's
    bucket counts once there are more than ``limit``; the array is trimmed in place, so the
    hot path's bound ``append`` stays valid. The counts are a dense numpy array over the
    histogram's bucket keys (53,248 of them, 426 KB), added to with one ``bincount`` a fold;
    the HdrHistogram is built from them only when ``percentiles_us`` is read. Folds are small
    and frequent (65,536 values every 65,536 decisions by default) rather than large and
    rare: a fold of 983,040 values took 70 ms, and at 20,000 decisions/s it stalled the
    kernel thread every 49 s (the stress load scenario, docs/stress.md); recording each fold's
    buckets into the HdrHistogram then still took about 5 ms (a ``record_value`` per bucket,
    some 5,000), 0.6 ms as counts. The first ``skip`` values ever recorded (a
    strategy's warm-up) are left out of ``percentiles_us``. ``window(since)`` reads what was
    recorded after an absolute position, as a snapshot's window does.
    """

    def __init__(self, skip: int = 0, *, limit: int = 1 << 17, keep: int = 1 << 16) -> None:
        if not 0 <= keep < limit:
            raise ValueError("LatencyLog needs 0 <= keep < limit")
        self.values: array[int] = array("q")
        self.skip = max(int(skip), 0)
        self.limit = limit
        self.keep = keep
        self.base = 0  # the absolute position of values[0]
        self._counts: np.ndarray | None = None  # the folded values, per bucket key

    def __len__(self) -> int:
        """Values recorded in all (folded or not)."""
        return self.base + len(self.values)

    def fold(self) -> None:
        """Fold the oldest values into the histogram when there are more than ``limit``."""
        n = len(self.values)
        if n <= self.limit:
            return
        k = n - self.keep
        start = min(max(self.skip - self.base, 0), k)
        if start < k:
            part = _clipped(np.frombuffer(self.values, dtype=np.int64)[start:k])
            counts = _bucket_counts(part, _BITS, _KEYS)
            del part  # no view of ``values`` may outlive this: the array is resized below
            if self._counts is None:
                self._counts = counts
            else:
                self._counts += counts
        del self.values[:k]
        self.base += k

    def window(self, since: int) -> tuple[array[int], int]:
        """The values recorded at absolute positions ``since`` onwards (those still held),
        and the position to ask from next time."""
        return self.values[max(since - self.base, 0) :], len(self)

    def percentiles_us(self) -> dict[str, float] | None:
        """``percentiles_us`` of every value after the first ``skip``."""
        hist = new_histogram()
        if self._counts is not None:
            _record_counts(hist, self._counts)
        start = max(self.skip - self.base, 0)
        if start < len(self.values):
            record_many(hist, np.frombuffer(self.values, dtype=np.int64)[start:])
        return _percentiles(hist)
