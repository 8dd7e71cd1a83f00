"""StreamingFeatures: warm-up, the reused row buffer, reset, Bar input."""

from __future__ import annotations

import numpy as np

from ultrathink.core.events import Bar
from ultrathink.features import FEATURE_NAMES, WARMUP_BARS, StreamingFeatures, compute_features


def walk(n: int) -> list[tuple[int, float, float, float, float, float]]:
    rng = np.random.default_rng(5)
    close = 20.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, n)))
    bars = []
    prev = 20.0
    for t, c in enumerate(close.tolist()):
        bars.append(
            (t * 3_600_000_000_000, prev, max(prev, c) * 1.01, min(prev, c) * 0.99, c, 1e3 + t)
        )
        prev = c
    return bars


def test_ready_after_warmup_bars() -> None:
    feats = StreamingFeatures()
    flags = []
    for bar in walk(WARMUP_BARS + 3):
        row = feats.update(*bar)
        flags.append((feats.ready, bool(np.isfinite(row).all())))

    assert flags[WARMUP_BARS - 2] == (False, False)
    assert all(flag == (True, True) for flag in flags[WARMUP_BARS - 1 :])
    assert feats.n_bars == WARMUP_BARS + 3


def test_update_returns_the_same_overwritten_array() -> None:
    feats = StreamingFeatures()
    bars = walk(3)

    first = feats.update(*bars[0])
    kept = first.copy()
    second = feats.update(*bars[1])

    assert second is first is feats.row
    assert second.shape == (len(FEATURE_NAMES),)
    assert not np.array_equal(kept, second, equal_nan=True)


def test_reset_starts_over() -> None:
    bars = walk(80)
    feats = StreamingFeatures()
    first_pass = [feats.update(*bar).copy() for bar in bars]

    feats.reset()

    assert feats.n_bars == 0
    assert not feats.ready
    assert np.isnan(feats.row).all()
    second_pass = [feats.update(*bar).copy() for bar in bars]
    np.testing.assert_array_equal(np.array(first_pass), np.array(second_pass))


def test_update_bar_accepts_bar_events() -> None:
    bars = walk(70)
    by_tuple, by_bar = StreamingFeatures(), StreamingFeatures()

    for bar in bars:
        expected = by_tuple.update(*bar)
        got = by_bar.update_bar(Bar(bar[0], "X", *bar[1:]))

    np.testing.assert_array_equal(got, expected)


def test_last_row_matches_vectorised() -> None:
    bars = walk(100)
    feats = StreamingFeatures()
    for bar in bars:
        row = feats.update(*bar)

    columns = [np.array(col) for col in zip(*bars, strict=True)]
    expected = compute_features(columns[0].astype(np.int64), *columns[1:])[-1]
    np.testing.assert_allclose(row, expected, rtol=1e-9, atol=1e-12)
