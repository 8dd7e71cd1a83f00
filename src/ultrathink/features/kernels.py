"""Numba kernels for the recursive filters (EMA, Wilder), shared by both feature paths.

The vectorised path loops ``recursive_step`` over the rows and the streaming path calls it
once per bar, with the same state layout, so EMA/MACD/RSI/ATR values are computed by the same
floating-point operations in the same order in both.

Filter state is a ``(N_FILTERS, 3)`` float64 array; each row holds ``(value, seed_sum,
n_seen)``. A filter is NaN until it has seen ``window`` inputs, is then seeded with their
simple mean, and updated recursively afterwards.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numba import types as nt

from ultrathink.features.spec import ATR_WINDOW, MACD_FAST, MACD_SIGNAL, MACD_SLOW, RSI_WINDOW

NAN = math.nan
# Explicit signatures: one compiled specialisation per function (literal arguments would
# otherwise compile a copy per constant) and no recompilation for int prices.
F8, I8, B1 = nt.float64, nt.int64, nt.boolean
F8_1D, F8_2D, I8_1D = nt.float64[::1], nt.float64[:, ::1], nt.int64[::1]
RO_F8_1D = nt.Array(nt.float64, 1, "C", readonly=True)  # e.g. embedded datasets' columns

# filter rows
F_EMA_FAST, F_EMA_SLOW, F_SIGNAL, F_GAIN, F_LOSS, F_ATR = range(6)
N_FILTERS = 6
# recursive_step output slots
R_EMA_FAST, R_EMA_SLOW, R_MACD, R_SIGNAL, R_RSI, R_ATR = range(6)
N_RECURSIVE = 6


def new_filter_state() -> np.ndarray:
    """Return a zeroed filter state (no inputs seen)."""
    state = np.zeros((N_FILTERS, 3), dtype=np.float64)
    state[:, 0] = NAN
    return state


@njit(F8(F8_2D, I8, F8, I8, B1), cache=True)
def filter_step(state: np.ndarray, k: int, x: float, window: int, wilder: bool) -> float:
    """Feed ``x`` to filter ``k``; return its value (NaN while warming up).

    EMA: ``v += 2 / (window + 1) * (x - v)``; Wilder: ``v = (v * (window - 1) + x) / window``.
    """
    n_seen = state[k, 2] + 1.0
    state[k, 2] = n_seen
    if n_seen <= window:
        state[k, 1] += x
        if n_seen == window:
            state[k, 0] = state[k, 1] / window
        return state[k, 0]
    if wilder:
        state[k, 0] = (state[k, 0] * (window - 1.0) + x) / window
    else:
        state[k, 0] += 2.0 / (window + 1.0) * (x - state[k, 0])
    return state[k, 0]


@njit(nt.void(F8_2D, F8_1D, F8, F8, F8, F8), cache=True)
def recursive_step(
    state: np.ndarray, out: np.ndarray, h: float, lo: float, c: float, prev_c: float
) -> None:
    """Advance every recursive filter by one bar; write raw values into ``out[:6]``.

    ``prev_c`` is the previous close, NaN on the first bar (RSI and ATR need a previous
    close, so they only start on the second bar). ``out`` receives EMA fast, EMA slow, MACD
    line, MACD signal (unnormalised), RSI in [0, 100] and ATR (unnormalised).
    """
    fast = filter_step(state, F_EMA_FAST, c, MACD_FAST, False)
    slow = filter_step(state, F_EMA_SLOW, c, MACD_SLOW, False)
    macd = fast - slow
    signal = NAN
    if not math.isnan(macd):
        signal = filter_step(state, F_SIGNAL, macd, MACD_SIGNAL, False)
    rsi = NAN
    atr = NAN
    if not math.isnan(prev_c):
        delta = c - prev_c
        gain = filter_step(state, F_GAIN, max(delta, 0.0), RSI_WINDOW, True)
        loss = filter_step(state, F_LOSS, max(-delta, 0.0), RSI_WINDOW, True)
        if not math.isnan(gain):
            total = gain + loss
            rsi = 50.0 if total == 0.0 else 100.0 * gain / total
        true_range = max(h, prev_c) - min(lo, prev_c)
        atr = filter_step(state, F_ATR, true_range, ATR_WINDOW, True)
    out[R_EMA_FAST] = fast
    out[R_EMA_SLOW] = slow
    out[R_MACD] = macd
    out[R_SIGNAL] = signal
    out[R_RSI] = rsi
    out[R_ATR] = atr


@njit(F8_2D(RO_F8_1D, RO_F8_1D, RO_F8_1D), cache=True)  # writable arrays convert
def recursive_series(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Run ``recursive_step`` over whole columns; return an ``(N_RECURSIVE, n)`` array."""
    n = close.shape[0]
    out = np.empty((N_RECURSIVE, n), dtype=np.float64)
    row = np.empty(N_RECURSIVE, dtype=np.float64)
    state = np.zeros((N_FILTERS, 3), dtype=np.float64)
    state[:, 0] = NAN
    prev_c = NAN
    for t in range(n):
        recursive_step(state, row, high[t], low[t], close[t], prev_c)
        out[:, t] = row
        prev_c = close[t]
    return out
