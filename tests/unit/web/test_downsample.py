"""Downsampling for drawing: LTTB and per-bucket min/max keep what they promise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ultrathink.errors import ConfigError
from ultrathink.web.downsample import lttb, lttb_index, minmax, minmax_index

FINITE = st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False)
MAYBE_NAN = st.one_of(FINITE, st.just(float("nan")))


@st.composite
def series(draw: st.DrawFn, values: st.SearchStrategy[float] = FINITE) -> tuple[np.ndarray, ...]:
    """Non-decreasing int64 times (repeats allowed) and float values of one length."""
    n = draw(st.integers(0, 400))
    steps = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 10**9)))
    y = draw(hnp.arrays(np.float64, n, elements=values))
    return 1_600_000_000 * 10**9 + np.cumsum(steps), y


def positions(x_in: np.ndarray, x_out: np.ndarray) -> None:
    """Every output point is an input point, in input order (x non-decreasing)."""
    assert np.all(np.diff(x_out) >= 0)
    assert np.isin(x_out, x_in).all()


def reference_lttb(x: np.ndarray, y: np.ndarray, n_out: int) -> list[int]:
    """Steinarsson's algorithm written plainly (sums in order, as the kernel adds)."""
    n, every = len(x), (len(x) - 2) / (n_out - 2)
    xf = (x - x[0]).astype(float)
    kept, anchor = [0], 0
    for b in range(n_out - 2):
        start, end = int(b * every) + 1, min(int((b + 1) * every) + 1, n - 1)
        nxt = slice(end, min(int((b + 2) * every) + 1, n))
        mx, my = sum(xf[nxt].tolist()) / len(xf[nxt]), sum(y[nxt].tolist()) / len(y[nxt])
        areas = [abs((xf[anchor] - mx) * (y[j] - y[anchor]) - (xf[anchor] - xf[j]) *
                     (my - y[anchor])) for j in range(start, end)]  # fmt: skip
        anchor = start + int(np.argmax(areas))
        kept.append(anchor)
    return [*kept, n - 1]


@settings(max_examples=100, deadline=None)
@given(series(), st.integers(3, 60))
def test_lttb_keeps_first_and_last_and_n_out_points(data, n_out) -> None:
    x, y = data
    x_out, y_out = lttb(x, y, n_out)
    assert len(x_out) == len(y_out) == min(len(x), n_out)
    if len(x):
        assert (x_out[0], x_out[-1]) == (x[0], x[-1])
        assert y_out[0] == y[0] and y_out[-1] == y[-1]
    positions(x, x_out)


@settings(max_examples=100, deadline=None)
@given(series(), st.integers(3, 60))
def test_lttb_is_the_identity_when_small_and_matches_the_reference(data, n_out) -> None:
    x, y = data
    idx = lttb_index(x, y, n_out)
    if len(x) <= n_out:
        assert idx is None
        x_out, y_out = lttb(x, y, n_out)
        assert x_out is x and y_out is y
    else:
        assert idx is not None and np.all(np.diff(idx) > 0)
        assert idx.tolist() == reference_lttb(x, y, n_out)


@settings(max_examples=100, deadline=None)
@given(series(), st.integers(1, 30))
def test_minmax_keeps_ends_and_every_extreme_within_its_bound(data, n_buckets) -> None:
    x, y = data
    x_out, y_out = minmax(x, y, n_buckets)
    bound = 2 * n_buckets + 2
    assert len(x_out) <= bound if len(x) > bound else x_out is x
    positions(x, x_out)
    if len(x):
        assert (x_out[0], x_out[-1]) == (x[0], x[-1])
        assert y_out.min() == y.min() and y_out.max() == y.max()


@settings(max_examples=100, deadline=None)
@given(series(MAYBE_NAN), st.integers(1, 30))
def test_minmax_skips_nan_but_keeps_the_finite_extremes(data, n_buckets) -> None:
    x, y = data
    x_out, y_out = minmax(x, y, n_buckets)
    positions(x, x_out)
    if np.isfinite(y).any():
        assert np.nanmin(y_out) == np.nanmin(y) and np.nanmax(y_out) == np.nanmax(y)


@settings(max_examples=100, deadline=None)
@given(series(), st.integers(1, 30))
def test_minmax_is_the_identity_when_small(data, n_buckets) -> None:
    x, y = data
    if len(x) <= 2 * n_buckets + 2:
        assert minmax_index(y, n_buckets) is None
        x_out, y_out = minmax(x, y, n_buckets)
        assert x_out is x and y_out is y


def test_a_one_bar_trough_in_a_long_curve_survives_minmax_not_striding() -> None:
    n = 1_000_000
    x = np.arange(n, dtype=np.int64)
    y = 100.0 + np.sin(np.arange(n) / 5_000.0)
    y[123_457] = 50.0  # one bar: the deepest drawdown
    _, y_out = minmax(x, y, 999)
    assert y_out.size <= 2_000 and y_out.min() == 50.0
    assert y[:: n // 2_000].min() > 98.0, "strided decimation hides it"


def test_lttb_keeps_an_isolated_spike() -> None:
    y = np.zeros(10_000)
    y[4_321] = 1.0
    x_out, y_out = lttb(np.arange(y.size), y, 100)
    assert 4_321 in x_out and y_out.max() == 1.0


def test_datetime64_times_and_lists_are_accepted() -> None:
    x = np.arange(100).astype("datetime64[D]")
    y = list(np.cos(np.arange(100) / 7.0))
    x_out, y_out = minmax(x, y, 10)
    assert x_out.dtype == np.int64 and len(x_out) == len(y_out) <= 22
    assert lttb(x, y, 10)[0].size == 10


def test_a_series_of_nan_keeps_one_point_per_bucket() -> None:
    y = np.full(1_000, np.nan)
    x_out, _ = minmax(np.arange(1_000), y, 10)
    assert x_out.size == 12
    assert lttb(np.arange(1_000), y, 10)[0].size == 10


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: lttb([3, 2, 1], [1.0, 2.0, 3.0], 3), "non-decreasing"),
        (lambda: minmax([1, 2], [1.0], 1), "one length"),
        (lambda: minmax(np.zeros((2, 2)), np.zeros((2, 2)), 1), "1-d"),
        (lambda: minmax(["a", "b"], [1.0, 2.0], 1), "numeric or datetime64 x"),
        (lambda: lttb([1, 2, 3], [1.0, 2.0, 3.0], 2), "n_out must be an integer >= 3"),
        (lambda: lttb([1, 2, 3], [1.0, 2.0, 3.0], 3.5), "n_out must be an integer >= 3"),
        (lambda: minmax([1, 2, 3], [1.0, 2.0, 3.0], 0), "n_buckets must be an integer >= 1"),
        (lambda: minmax([1, 2, 3], [1.0, 2.0, 3.0], True), "n_buckets must be an integer"),
    ],
)
def test_bad_inputs_are_config_errors(call, message) -> None:
    with pytest.raises(ConfigError, match=message):
        call()
