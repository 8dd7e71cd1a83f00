"""Latency percentiles (``core/latency.py``): the vectorised histogram fill records exactly
what recording value by value records, and a ``LatencyLog`` stays bounded while its
percentiles stay those of every value after the warm-up."""

from __future__ import annotations

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from ultrathink.core.latency import LatencyLog, histogram_ns, percentiles_us

HIGHEST = 60_000_000_000


def one_by_one(values: list[int]) -> HdrHistogram:
    hist = HdrHistogram(1, HIGHEST, 3)
    for v in values:
        hist.record_value(min(max(v, 1), HIGHEST))
    return hist


def same_histogram(a: HdrHistogram, b: HdrHistogram) -> None:
    assert a.get_total_count() == b.get_total_count()
    assert a.get_min_value() == b.get_min_value() and a.get_max_value() == b.get_max_value()
    for p in (0.1, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0):
        assert a.get_value_at_percentile(p) == b.get_value_at_percentile(p), p


durations = st.lists(
    st.one_of(st.integers(-10, 5_000), st.integers(1, 10**8), st.integers(HIGHEST - 10, 10**12)),
    min_size=1,
    max_size=400,
)


@given(durations)
@settings(max_examples=100, deadline=None)
def test_the_vectorised_fill_records_what_one_by_one_records(values: list[int]) -> None:
    same_histogram(histogram_ns(np.asarray(values, dtype=np.int64)), one_by_one(values))
    same_histogram(histogram_ns(values), one_by_one(values))


def test_bucket_edges_at_every_power_of_two() -> None:
    values = [v for k in range(1, 36) for v in (2**k - 1, 2**k, 2**k + 1)]
    same_histogram(histogram_ns(values), one_by_one(values))


def test_no_values_no_percentiles() -> None:
    assert percentiles_us([]) is None
    assert LatencyLog(skip=3).percentiles_us() is None


@given(
    st.lists(
        st.one_of(st.integers(1, 10**7), st.integers(-5, 0), st.integers(HIGHEST - 10, 10**12)),
        max_size=300,
    ),  # clamped to 1 ns .. 60 s, folded or not
    st.integers(0, 40),
    st.integers(2, 30),
    st.integers(1, 9),
)
@settings(max_examples=100, deadline=None)
def test_a_folded_log_reports_the_percentiles_of_every_value_after_its_warm_up(
    values: list[int], skip: int, limit: int, flush_every: int
) -> None:
    keep = limit // 2
    log = LatencyLog(skip=skip, limit=limit, keep=keep)
    for i, v in enumerate(values, start=1):
        log.values.append(v)  # the hot path
        if i % flush_every == 0:
            log.fold()  # between two bars
            assert len(log.values) <= max(limit, flush_every + limit)
    assert len(log) == len(values)
    assert log.percentiles_us() == percentiles_us(values[skip:])


def test_the_held_values_stay_bounded_and_the_hot_path_append_stays_valid() -> None:
    log = LatencyLog(limit=1_000, keep=100)
    append = log.values.append  # bound once, as the kernel does
    for i in range(10_000):
        append(1_000 + i % 7)
        if i % 50 == 49:
            log.fold()
    assert len(log.values) <= 1_000 and len(log) == 10_000
    lat = log.percentiles_us()
    assert lat is not None and lat["count"] == 10_000.0


def test_a_window_names_where_to_read_from_next() -> None:
    log = LatencyLog(limit=4, keep=1)
    log.values.extend([1, 2, 3])
    window, since = log.window(0)
    assert list(window) == [1, 2, 3] and since == 3
    log.values.extend([4, 5])
    log.fold()  # 5 > 4: the oldest 4 are folded
    window, since = log.window(since)
    assert list(window) == [5] and since == 5


def test_keep_must_be_below_limit() -> None:
    with pytest.raises(ValueError):
        LatencyLog(limit=4, keep=4)
