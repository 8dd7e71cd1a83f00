"""``gather_checked`` against the numpy definition it replaces, on random rows with NaN,
infinite, out-of-range values and NaN bounds (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ultrathink.decision.ml_kernel import NOT_FINITE, OK, OUT_OF_RANGE, gather_checked

_VALUES = st.one_of(
    st.floats(-10, 10), st.sampled_from([np.nan, np.inf, -np.inf, -5.0, 5.0, 1e300])
)


def _numpy(row: np.ndarray, index: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> int:
    x = np.take(row, index)
    if not np.isfinite(x).all():
        return NOT_FINITE
    return OUT_OF_RANGE if ((x < lo) | (x > hi)).any() else OK


@settings(max_examples=400, deadline=None)
@given(
    row=st.lists(_VALUES, min_size=1, max_size=20),
    data=st.data(),
)
def test_same_gather_and_verdict_as_numpy(row: list[float], data: st.DataObject) -> None:
    arr = np.array(row, dtype=np.float64)
    n = data.draw(st.integers(0, 12))
    index = np.array(
        data.draw(st.lists(st.integers(0, len(row) - 1), min_size=n, max_size=n)), dtype=np.int64
    )
    bounds = st.one_of(st.floats(-6, 6), st.just(np.nan))
    lo = np.array(data.draw(st.lists(bounds, min_size=n, max_size=n)), dtype=np.float64)
    hi = np.array(data.draw(st.lists(bounds, min_size=n, max_size=n)), dtype=np.float64)
    out = np.full(n, -1.0)
    code = gather_checked(arr, index, lo, hi, out)
    np.testing.assert_array_equal(out, np.take(arr, index))
    assert code == _numpy(arr, index, lo, hi)


def test_a_strided_row_is_read_correctly() -> None:
    row = np.arange(10, dtype=np.float64)[::2]  # not contiguous
    out = np.empty(2)
    lo, hi = np.zeros(2), np.full(2, 100.0)
    assert gather_checked(row, np.array([4, 1]), lo, hi, out) == OK
    assert out.tolist() == [8.0, 2.0]
