"""Forward-return labels: tradable (next open to later open), dead zone, no decision look-ahead."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ultrathink.errors import ConfigError
from ultrathink.features import forward_return_labels


def test_labels_use_next_open_to_open_after_horizon() -> None:
    open_ = np.array([100.0, 101.0, 103.0, 102.0, 99.0, 100.0])

    y, valid, fwd = forward_return_labels(open_, horizon=2, dead_zone_bps=0.0)

    expected = [102.0 / 101.0 - 1, 99.0 / 103.0 - 1, 100.0 / 102.0 - 1]
    np.testing.assert_allclose(fwd[:3], expected)
    assert np.isnan(fwd[3:]).all()
    assert valid.tolist() == [True, True, True, False, False, False]
    assert y.tolist() == [1, 0, 0, 0, 0, 0]
    assert y.dtype == np.int8
    assert valid.dtype == np.bool_
    assert fwd.dtype == np.float64


def test_dead_zone_marks_small_moves_invalid() -> None:
    open_ = np.array([100.0, 100.0, 100.05, 101.0, 100.0])  # returns: +5 bps, +95 bps, -99 bps

    y, valid, fwd = forward_return_labels(open_, horizon=1, dead_zone_bps=10.0)

    assert valid.tolist() == [False, True, True, False, False]
    assert y.tolist() == [0, 1, 0, 0, 0]
    assert fwd[0] == pytest.approx(5e-4)


def test_return_exactly_at_dead_zone_is_valid() -> None:
    open_ = np.array([1.0, 1.0, 1.5])

    _, valid, _ = forward_return_labels(open_, horizon=1, dead_zone_bps=5000.0)

    assert valid.tolist() == [True, False, False]


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_short_series_have_no_valid_rows(n: int) -> None:
    y, valid, fwd = forward_return_labels(np.ones(n), horizon=2, dead_zone_bps=0.0)

    assert y.shape == valid.shape == fwd.shape == (n,)
    assert not valid.any()


@pytest.mark.parametrize(
    ("horizon", "dead_zone_bps", "match"),
    [
        (0, 0.0, "horizon must be an integer >= 1.*was 0"),
        (1.5, 0.0, "horizon must be an integer >= 1.*was 1.5"),
        (True, 0.0, "horizon"),
        (1, -1.0, "dead_zone_bps must be finite and >= 0, was -1.0"),
        (1, float("nan"), "dead_zone_bps"),
    ],
)
def test_bad_parameters_raise_config_error(
    horizon: object, dead_zone_bps: float, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        forward_return_labels(np.ones(10), horizon=horizon, dead_zone_bps=dead_zone_bps)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    open_=hnp.arrays(np.float64, st.integers(0, 60), elements=st.floats(1.0, 1e4)),
    horizon=st.integers(1, 10),
    t=st.integers(0, 59),
)
def test_label_ignores_bars_up_to_decision_and_after_exit(
    open_: np.ndarray, horizon: int, t: int
) -> None:
    # label t may only depend on open[t+1] and open[t+1+horizon]
    changed = open_.copy()
    changed[: t + 1] *= 1.7
    changed[t + 2 + horizon :] *= 0.3

    before = forward_return_labels(open_, horizon, 0.0)
    after = forward_return_labels(changed, horizon, 0.0)

    if t < open_.shape[0]:
        for a, b in zip(before, after, strict=True):
            np.testing.assert_array_equal(a[t], b[t])
