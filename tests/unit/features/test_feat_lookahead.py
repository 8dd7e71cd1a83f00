"""No look-ahead: the feature row of bar t never depends on bars after t."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ultrathink.features import FEATURE_NAMES, StreamingFeatures, compute_features

COLUMNS = ("ts_ns", "open", "high", "low", "close", "volume")


def random_bars(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
    open_ = np.concatenate(([100.0], close[:-1])) * np.exp(rng.normal(0.0, 0.003, n))
    high = np.maximum(open_, close) * np.exp(rng.uniform(0.0, 0.02, n))
    low = np.minimum(open_, close) * np.exp(-rng.uniform(0.0, 0.02, n))
    volume = rng.uniform(1e3, 1e6, n)
    ts = 86_400_000_000_000 * np.arange(n, dtype=np.int64)
    return [ts, open_, high, low, close, volume]


def change_after(bars: list[np.ndarray], t: int, columns: tuple[int, ...], seed: int) -> list:
    rng = np.random.default_rng(seed)
    changed = [col.copy() for col in bars]
    n_later = len(bars[0]) - t - 1
    for j in columns:
        if j == 0:
            changed[0][t + 1 :] += rng.integers(1, 7, n_later) * 86_400_000_000_000
        else:
            changed[j][t + 1 :] *= rng.uniform(0.5, 2.0, n_later)
    return changed


def stream_all(bars: list[np.ndarray]) -> np.ndarray:
    feats = StreamingFeatures()
    rows = [feats.update(*bar).copy() for bar in zip(*(col.tolist() for col in bars), strict=True)]
    return np.array(rows).reshape(len(rows), len(FEATURE_NAMES))


column_sets = st.sampled_from([(j,) for j in range(6)] + [tuple(range(6))])


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 250),
    seed=st.integers(0, 2**32 - 1),
    columns=column_sets,
    data=st.data(),
)
def test_changing_later_bars_leaves_earlier_rows_unchanged(
    n: int, seed: int, columns: tuple[int, ...], data: st.DataObject
) -> None:
    t = data.draw(st.integers(0, n - 2), label="t")
    bars = random_bars(n, np.random.default_rng(seed))
    changed = change_after(bars, t, columns, seed + 1)

    vectorised = compute_features(*bars), compute_features(*changed)
    streamed = stream_all(bars), stream_all(changed)

    np.testing.assert_array_equal(vectorised[0][: t + 1], vectorised[1][: t + 1])
    np.testing.assert_array_equal(streamed[0][: t + 1], streamed[1][: t + 1])


@pytest.mark.parametrize("t", [0, 30, 59, 60, 61, 150, 298])
def test_truncated_series_gives_the_same_rows(t: int) -> None:
    bars = random_bars(300, np.random.default_rng(t))

    full = compute_features(*bars)
    truncated = compute_features(*(col[: t + 1] for col in bars))

    np.testing.assert_array_equal(np.isnan(full[: t + 1]), np.isnan(truncated))
    np.testing.assert_allclose(full[: t + 1], truncated, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("column", range(6), ids=COLUMNS)
def test_changing_later_bars_changes_later_rows(column: int) -> None:
    # guards the no-look-ahead tests against a perturbation that changes nothing
    bars = random_bars(200, np.random.default_rng(1))
    changed = change_after(bars, 100, (column,), seed=2)

    before, after = compute_features(*bars), compute_features(*changed)

    assert not np.array_equal(before[101:], after[101:], equal_nan=True)
