"""``feed_bars._Ages``: the per-second rows of bar ages against a brute-force nearest rank."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ultrathink.engine.feed_bars import _Ages

_S = 1_000_000_000


def _nearest_rank(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * q / 100)) - 1]


@pytest.mark.parametrize("seed", range(5))
def test_each_seconds_row_is_the_nearest_rank_over_its_bars(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ages = _Ages()
    expected: dict[int, list[int]] = {}
    t0 = 1_700_000_000 * _S
    for second in range(4):
        for _ in range(int(rng.integers(1, 400))):
            now = t0 + second * _S + int(rng.integers(0, _S))
            age_us = int(rng.integers(1, 5_000_000))
            n = int(rng.integers(1, 5))  # a group of n bars: its age counts n times
            ages.record(now, now - age_us * 1_000, n)
            expected.setdefault(t0 // _S + second, []).extend([age_us] * n)
    ages.flush()
    assert [row[0] for row in ages.series] == sorted(expected)
    for second, bars, p50, p99, top in ages.series:
        values = expected[second]
        assert bars == len(values)
        assert (p50, p99, top) == (
            _nearest_rank(values, 50), _nearest_rank(values, 99), max(values)
        )  # fmt: skip
    assert ages.total.get_total_count() == sum(len(v) for v in expected.values())


def test_a_second_without_bars_has_no_row_and_flush_closes_the_last() -> None:
    ages = _Ages()
    t0 = 1_700_000_000 * _S
    ages.record(t0, t0 - 500_000, 4)  # 500 µs
    ages.record(t0 + 3 * _S, t0 + 3 * _S - 2_000_000, 1)  # seconds 1 and 2 are empty
    assert list(ages.series) == [(t0 // _S, 4, 500.0, 500.0, 500.0)]
    ages.flush()
    assert list(ages.series)[-1] == (t0 // _S + 3, 1, 2000.0, 2000.0, 2000.0)
    ages.flush()  # nothing new: no row
    assert len(ages.series) == 2
