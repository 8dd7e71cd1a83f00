"""The feature set: names in column order, warm-up, and the constants both paths share.

Every feature is computed from one symbol's OHLCV bars up to and including bar ``t`` (the
decision is made at bar ``t``'s close), by ``compute_features`` (vectorised, research) and
``StreamingFeatures`` (O(1) per bar, engine); tests assert both agree.

==================  ==================================================================
column              definition (``c``, ``o``, ``h``, ``l``, ``v`` are bar ``t``'s values)
==================  ==================================================================
logret_{w}          ``ln(c / c[t-w])`` for w in 1, 5, 10, 20, 60
close_sma_{w}       ``c / SMA_w(c) - 1`` for w in 10, 20, 50
close_ema_{w}       ``c / EMA_w(c) - 1`` for w in 12, 26 (EMA seeded with the first SMA)
rvol_{w}            sample std (ddof=1) of the last ``w`` 1-bar log returns, w in 10, 20, 60
parkinson_20        ``sqrt(mean_20(ln(h/l)^2) / (4 ln 2))``
garman_klass_20     ``sqrt(mean_20(0.5 ln(h/l)^2 - (2 ln 2 - 1) ln(c/o)^2))``
rsi_14              Wilder RSI in [0, 100]; 50 when there was no move at all
macd                ``(EMA_12(c) - EMA_26(c)) / c``
macd_signal         ``EMA_9(EMA_12 - EMA_26) / c``
macd_hist           ``macd - macd_signal``
bb_pctb_20          Bollinger %b: ``0.5 + (c - SMA_20) / (4 sd_20)``, population sd; 0.5
                    when the window has no dispersion
atr_14              Wilder ATR(14) of the true range, divided by ``c``
volume_z_20         ``(v - mean_20(v)) / sd_20(v)``, population sd; 0 without dispersion
bar_range           ``(h - l) / c``
close_location      ``(c - l) / (h - l)``; 0.5 when ``h == l``
momentum_10         ``c / c[t-10] - 1``
dist_high_20        ``c / max(h[t-19..t]) - 1`` (<= 0)
dist_low_20         ``c / min(l[t-19..t]) - 1`` (>= 0)
day_of_week         UTC weekday of ``ts_ns``, Monday = 0 .. Sunday = 6
==================  ==================================================================

RSI and ATR use the previous close, so their first input is bar 1.

"No dispersion" means ``sd <= MIN_REL_DISPERSION * |mean|``: real prices and volumes move in
ticks far coarser than that, and the threshold keeps constant windows (whose computed sd is
rounding noise) deterministic in both paths.
"""

from __future__ import annotations

import math

LOGRET_WINDOWS = (1, 5, 10, 20, 60)
SMA_WINDOWS = (10, 20, 50)
EMA_WINDOWS = (12, 26)
RVOL_WINDOWS = (10, 20, 60)
RANGE_VOL_WINDOW = 20
RSI_WINDOW = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BB_WINDOW = 20
BB_N_SD = 2.0
ATR_WINDOW = 14
VOLUME_WINDOW = 20
MOMENTUM_LAG = 10
HIGH_LOW_WINDOW = 20

GK_CLOSE_COEF = 2.0 * math.log(2.0) - 1.0
PARKINSON_DENOM = 4.0 * math.log(2.0)
MIN_REL_DISPERSION = 1e-7
NS_PER_DAY = 86_400_000_000_000
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)

# (name, first row index at which the feature is finite on clean data)
_COLUMNS: tuple[tuple[str, int], ...] = (
    *((f"logret_{w}", w) for w in LOGRET_WINDOWS),
    *((f"close_sma_{w}", w - 1) for w in SMA_WINDOWS),
    *((f"close_ema_{w}", w - 1) for w in EMA_WINDOWS),
    *((f"rvol_{w}", w) for w in RVOL_WINDOWS),
    (f"parkinson_{RANGE_VOL_WINDOW}", RANGE_VOL_WINDOW - 1),
    (f"garman_klass_{RANGE_VOL_WINDOW}", RANGE_VOL_WINDOW - 1),
    (f"rsi_{RSI_WINDOW}", RSI_WINDOW),
    ("macd", MACD_SLOW - 1),
    ("macd_signal", MACD_SLOW + MACD_SIGNAL - 2),
    ("macd_hist", MACD_SLOW + MACD_SIGNAL - 2),
    (f"bb_pctb_{BB_WINDOW}", BB_WINDOW - 1),
    (f"atr_{ATR_WINDOW}", ATR_WINDOW),
    (f"volume_z_{VOLUME_WINDOW}", VOLUME_WINDOW - 1),
    ("bar_range", 0),
    ("close_location", 0),
    (f"momentum_{MOMENTUM_LAG}", MOMENTUM_LAG),
    (f"dist_high_{HIGH_LOW_WINDOW}", HIGH_LOW_WINDOW - 1),
    (f"dist_low_{HIGH_LOW_WINDOW}", HIGH_LOW_WINDOW - 1),
    ("day_of_week", 0),
)

FEATURE_NAMES: tuple[str, ...] = tuple(name for name, _ in _COLUMNS)
"""Feature column names, in the column order of every feature matrix and row."""

FIRST_VALID_ROW: tuple[int, ...] = tuple(first for _, first in _COLUMNS)
"""Per feature, the first row index that is finite on clean data (earlier rows are NaN)."""

N_FEATURES = len(FEATURE_NAMES)

WARMUP_BARS: int = max(FIRST_VALID_ROW) + 1
"""Bars a series needs before its feature row is complete.

Row ``WARMUP_BARS - 1`` is the first with every feature finite (on clean data: positive
prices and volumes), so ``features[WARMUP_BARS:]`` is always safe; ``StreamingFeatures``
turns ``ready`` after ``WARMUP_BARS`` updates.
"""

FEATURE_INDEX: dict[str, int] = {name: i for i, name in enumerate(FEATURE_NAMES)}
"""Column index of each feature name."""
