"""Vectorised feature matrix: shape, warm-up, hand-checked values, degenerate bars."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ultrathink.data import MarketData, load_dataset
from ultrathink.features import (
    FEATURE_INDEX,
    FEATURE_NAMES,
    FIRST_VALID_ROW,
    WARMUP_BARS,
    compute_features,
    compute_features_for,
)

DAY_NS = 86_400_000_000_000


def bars(n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate(([100.0], close[:-1]))[:n]
    high = np.maximum(open_, close) * 1.004
    low = np.minimum(open_, close) * 0.996
    volume = rng.uniform(1e4, 1e5, n)
    return DAY_NS * np.arange(n, dtype=np.int64), open_, high, low, close, volume


def column(features: np.ndarray, name: str) -> np.ndarray:
    return features[:, FEATURE_INDEX[name]]


def test_feature_names_are_unique_and_about_thirty() -> None:
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES) == 28
    assert len(FIRST_VALID_ROW) == len(FEATURE_NAMES)
    assert WARMUP_BARS == 61


def test_nan_exactly_during_each_features_warm_up() -> None:
    features = compute_features(*bars(200))

    assert features.shape == (200, len(FEATURE_NAMES))
    assert features.dtype == np.float64
    for j, first in enumerate(FIRST_VALID_ROW):
        assert np.isnan(features[:first, j]).all(), FEATURE_NAMES[j]
        assert np.isfinite(features[first:, j]).all(), FEATURE_NAMES[j]
    assert np.isnan(features[WARMUP_BARS - 2]).any()
    assert np.isfinite(features[WARMUP_BARS - 1 :]).all()


def test_price_features_match_their_definitions() -> None:
    ts, o, h, lo, c, v = bars(120)

    f = compute_features(ts, o, h, lo, c, v)

    t = 100
    assert column(f, "logret_5")[t] == pytest.approx(math.log(c[t] / c[t - 5]))
    assert column(f, "momentum_10")[t] == pytest.approx(c[t] / c[t - 10] - 1)
    assert column(f, "close_sma_20")[t] == pytest.approx(c[t] / c[t - 19 : t + 1].mean() - 1)
    returns = np.diff(np.log(c))
    assert column(f, "rvol_20")[t] == pytest.approx(returns[t - 20 : t].std(ddof=1))
    window = c[t - 19 : t + 1]
    pctb = (c[t] - (window.mean() - 2 * window.std())) / (4 * window.std())
    assert column(f, "bb_pctb_20")[t] == pytest.approx(pctb)
    assert column(f, "dist_high_20")[t] == pytest.approx(c[t] / h[t - 19 : t + 1].max() - 1)
    assert column(f, "bar_range")[t] == pytest.approx((h[t] - lo[t]) / c[t])
    assert column(f, "close_location")[t] == pytest.approx((c[t] - lo[t]) / (h[t] - lo[t]))
    vol = v[t - 19 : t + 1]
    assert column(f, "volume_z_20")[t] == pytest.approx((v[t] - vol.mean()) / vol.std())


def test_ema_is_seeded_with_the_sma_and_macd_is_normalised() -> None:
    ts, o, h, lo, c, v = bars(40)

    f = compute_features(ts, o, h, lo, c, v)

    ema12 = c[:12].mean()
    assert column(f, "close_ema_12")[11] == pytest.approx(c[11] / ema12 - 1)
    ema12 += 2 / 13 * (c[12] - ema12)
    assert column(f, "close_ema_12")[12] == pytest.approx(c[12] / ema12 - 1)
    macd, signal = column(f, "macd"), column(f, "macd_signal")
    assert np.allclose(column(f, "macd_hist")[33:], macd[33:] - signal[33:])


def test_rsi_is_100_when_only_rising_and_50_when_flat() -> None:
    ts, o, h, lo, v = (np.arange(30), np.ones(30), np.ones(30), np.ones(30), np.ones(30))

    rising = compute_features(ts, o, h, lo, np.arange(1.0, 31.0), v)
    flat = compute_features(ts, o, h, lo, np.ones(30), v)

    assert column(rising, "rsi_14")[14:].tolist() == [100.0] * 16
    assert column(flat, "rsi_14")[14:].tolist() == [50.0] * 16


def test_constant_bars_have_neutral_scores() -> None:
    ones = np.ones(70)

    f = compute_features(np.arange(70), ones, ones, ones, ones, ones)

    assert column(f, "close_location")[0] == 0.5
    assert column(f, "bb_pctb_20")[-1] == 0.5
    assert column(f, "volume_z_20")[-1] == 0.0
    assert column(f, "rvol_60")[-1] == 0.0
    assert column(f, "atr_14")[-1] == 0.0


def test_day_of_week_is_utc_weekday_monday_zero() -> None:
    # 2024-01-01 00:00 UTC was a Monday; 1969-12-31 was a Wednesday
    monday = 1_704_067_200 * 1_000_000_000
    ts = np.array([monday, monday + DAY_NS - 1, monday + 6 * DAY_NS, -1])
    ones = np.ones(4)

    f = compute_features(ts, ones, ones, ones, ones, ones)

    assert column(f, "day_of_week").tolist() == [0.0, 0.0, 6.0, 2.0]


@pytest.mark.parametrize("n", [0, 1, 5])
def test_short_inputs_are_all_warm_up(n: int) -> None:
    f = compute_features(*bars(n))

    assert f.shape == (n, len(FEATURE_NAMES))


def test_mismatched_columns_are_rejected() -> None:
    ts, o, h, lo, c, v = bars(10)

    with pytest.raises(ValueError, match="equal length"):
        compute_features(ts, o, h, lo, c[:-1], v)


def test_compute_features_for_market_data() -> None:
    data = load_dataset("sp500")

    f = compute_features_for(data)

    assert f.shape == (len(data), len(FEATURE_NAMES))
    np.testing.assert_array_equal(f, compute_features_for(data, data.symbols[0]))


def test_compute_features_for_needs_a_symbol_when_several() -> None:
    ts, o, h, lo, c, v = bars(10)
    o2, h2, lo2, c2, v2 = (np.tile(x, 2) for x in (o, h, lo, c, v))
    data = MarketData.from_arrays(
        np.concatenate((ts, ts)), ["A"] * 10 + ["B"] * 10, o2, h2, lo2, c2, v2
    )

    with pytest.raises(ValueError, match="symbol is required"):
        compute_features_for(data)
    np.testing.assert_array_equal(
        compute_features_for(data, "B"), compute_features(ts, o, h, lo, c, v)
    )
