"""Vectorised feature matrix for research and training (the streaming path's reference).

Windowed statistics use sliding-window views (exact two-pass variance, processed in chunks
so memory stays bounded); the recursive filters (EMA, MACD, Wilder RSI/ATR) run in the numba
kernel shared with ``StreamingFeatures``. Row ``t`` only uses bars ``0..t``.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ultrathink.data.frame import MarketData
from ultrathink.features import kernels as kn
from ultrathink.features import spec as sp

_CHUNK_ELEMS = 1 << 20  # two-pass variance temporaries stay around 8 MB


def compute_features(
    ts_ns: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
) -> np.ndarray:
    """Compute the feature matrix of one symbol's bars.

    Parameters
    ----------
    ts_ns : np.ndarray
        int64 UTC nanoseconds of each bar, ascending.
    open_, high, low, close, volume : np.ndarray
        float64 columns of the same length; prices and volumes positive.

    Returns
    -------
    np.ndarray
        ``(n, len(FEATURE_NAMES))`` float64, columns in ``FEATURE_NAMES`` order, NaN where a
        feature is still warming up (see ``FIRST_VALID_ROW``). The array is column-major
        (Fortran order); use ``np.ascontiguousarray`` if you need contiguous rows.

    Raises
    ------
    ValueError
        If the columns are not one-dimensional or differ in length.
    """
    ts, o, h, lo, c, v = _columns(ts_ns, open_, high, low, close, volume)
    out = np.full((sp.N_FEATURES, c.shape[0]), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        _price_features(out, c)
        _volatility_features(out, o, h, lo, c)
        _recursive_features(out, h, lo, c)
        _bar_features(out, ts, h, lo, c, v)
    return out.T


def compute_features_for(data: MarketData, symbol: str | None = None) -> np.ndarray:
    """Compute the feature matrix of one symbol of ``data``.

    Parameters
    ----------
    data : MarketData
        Bars of one or more symbols.
    symbol : str or None
        The symbol to use; may be omitted when ``data`` holds a single symbol.

    Returns
    -------
    np.ndarray
        As ``compute_features``, one row per bar of ``symbol`` in time order.
    """
    if symbol is None:
        if data.n_symbols != 1:
            raise ValueError(
                f"symbol is required when data holds several symbols, it holds "
                f"{list(data.symbols)}; pass symbol= one of them"
            )
    else:
        data = data.for_symbol(symbol)
    return compute_features(data.ts_ns, data.open, data.high, data.low, data.close, data.volume)


def _columns(*columns: np.ndarray) -> tuple[np.ndarray, ...]:
    ts = np.asarray(columns[0], dtype=np.int64)
    prices = tuple(np.ascontiguousarray(col, dtype=np.float64) for col in columns[1:])
    shapes = {col.shape for col in (ts, *prices)}
    if len(shapes) != 1 or ts.ndim != 1:
        raise ValueError(
            f"ts_ns, open_, high, low, close and volume must be 1-D and of equal length, "
            f"got shapes {[np.shape(col) for col in columns]}"
        )
    return (ts, *prices)


def _price_features(out: np.ndarray, c: np.ndarray) -> None:
    idx = sp.FEATURE_INDEX
    for w in sp.LOGRET_WINDOWS:
        out[idx[f"logret_{w}"], w:] = np.log(c[w:] / c[:-w])
    for w in sp.SMA_WINDOWS:
        out[idx[f"close_sma_{w}"]] = c / rolling_mean(c, w) - 1.0
    lag = sp.MOMENTUM_LAG
    out[idx[f"momentum_{lag}"], lag:] = c[lag:] / c[:-lag] - 1.0


def _volatility_features(
    out: np.ndarray, o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray
) -> None:
    idx = sp.FEATURE_INDEX
    returns = np.log(c[1:] / c[:-1])
    for w in sp.RVOL_WINDOWS:
        _, var, _ = rolling_moments(returns, w, ddof=1)
        out[idx[f"rvol_{w}"], 1:] = np.sqrt(var)
    w = sp.RANGE_VOL_WINDOW
    hl2 = np.log(h / lo) ** 2
    co2 = np.log(c / o) ** 2
    park_mean = np.maximum(rolling_mean(hl2, w), 0.0)  # NaN passes through
    out[idx[f"parkinson_{w}"]] = np.sqrt(park_mean / sp.PARKINSON_DENOM)
    gk_mean = rolling_mean(0.5 * hl2 - sp.GK_CLOSE_COEF * co2, w)
    out[idx[f"garman_klass_{w}"]] = np.sqrt(np.maximum(gk_mean, 0.0))
    w = sp.BB_WINDOW
    mean, var, dev = rolling_moments(c, w, ddof=0, last_dev=True)
    sd = np.sqrt(var)
    pctb = 0.5 + dev / (2.0 * sp.BB_N_SD * sd)
    out[idx[f"bb_pctb_{w}"]] = np.where(_no_dispersion(sd, mean), 0.5, pctb)


def _recursive_features(out: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray) -> None:
    idx = sp.FEATURE_INDEX
    raw = kn.recursive_series(h, lo, c)
    out[idx[f"close_ema_{sp.MACD_FAST}"]] = c / raw[kn.R_EMA_FAST] - 1.0
    out[idx[f"close_ema_{sp.MACD_SLOW}"]] = c / raw[kn.R_EMA_SLOW] - 1.0
    out[idx["macd"]] = raw[kn.R_MACD] / c
    out[idx["macd_signal"]] = raw[kn.R_SIGNAL] / c
    out[idx["macd_hist"]] = (raw[kn.R_MACD] - raw[kn.R_SIGNAL]) / c
    out[idx[f"rsi_{sp.RSI_WINDOW}"]] = raw[kn.R_RSI]
    out[idx[f"atr_{sp.ATR_WINDOW}"]] = raw[kn.R_ATR] / c


def _bar_features(
    out: np.ndarray, ts: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray
) -> None:
    idx = sp.FEATURE_INDEX
    w = sp.VOLUME_WINDOW
    mean, var, dev = rolling_moments(v, w, ddof=0, last_dev=True)
    sd = np.sqrt(var)
    out[idx[f"volume_z_{w}"]] = np.where(_no_dispersion(sd, mean), 0.0, dev / sd)
    span = h - lo
    out[idx["bar_range"]] = span / c
    out[idx["close_location"]] = np.where(span == 0.0, 0.5, (c - lo) / span)
    w = sp.HIGH_LOW_WINDOW
    out[idx[f"dist_high_{w}"]] = c / rolling_extreme(h, w, take_max=True) - 1.0
    out[idx[f"dist_low_{w}"]] = c / rolling_extreme(lo, w, take_max=False) - 1.0
    days = ts // sp.NS_PER_DAY
    out[idx["day_of_week"]] = (days + sp.EPOCH_WEEKDAY) % 7


def _no_dispersion(sd: np.ndarray, mean: np.ndarray) -> np.ndarray:
    return sd <= sp.MIN_REL_DISPERSION * np.abs(mean)


def rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each index; NaN for the first ``window - 1``."""
    out = np.full(x.shape, np.nan)
    if x.shape[0] >= window:
        out[window - 1 :] = sliding_window_view(x, window).mean(axis=1)
    return out


def rolling_moments(
    x: np.ndarray, window: int, ddof: int, *, last_dev: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rolling mean, two-pass variance (``ddof`` as in numpy) and deviation of the last value.

    The deviation ``x[t] - mean`` is computed as the mean of ``x[t] - x[i]`` over the window
    (only when ``last_dev``; NaN otherwise), which stays accurate when the window's spread
    is tiny next to its mean, where ``x[t] - mean`` would lose digits to ``mean``'s rounding.
    Everything is NaN for the first ``window - 1`` values.
    """
    mean, var, dev_last = (np.full(x.shape, np.nan) for _ in range(3))
    if x.shape[0] < window:
        return mean, var, dev_last
    view = sliding_window_view(x, window)
    step = max(1, _CHUNK_ELEMS // window)
    for start in range(0, view.shape[0], step):  # chunks bound the (rows, window) temporary
        block = view[start : start + step]
        block_mean = block.mean(axis=1)
        dev = block - block_mean[:, None]
        at = slice(window - 1 + start, window - 1 + start + block.shape[0])
        mean[at] = block_mean
        var[at] = np.einsum("ij,ij->i", dev, dev) / (window - ddof)
        if last_dev:
            dev_last[at] = (block[:, -1:] - block).mean(axis=1)
    return mean, var, dev_last


def rolling_extreme(x: np.ndarray, window: int, *, take_max: bool) -> np.ndarray:
    """Rolling max (``take_max``) or min of the last ``window`` values; NaN while warming up."""
    out = np.full(x.shape, np.nan)
    if x.shape[0] >= window:
        view = sliding_window_view(x, window)
        out[window - 1 :] = view.max(axis=1) if take_max else view.min(axis=1)
    return out
