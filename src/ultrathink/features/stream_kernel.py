"""The numba kernel behind ``StreamingFeatures``: all state in arrays, one call per bar.

State arrays (built by ``new_state``):

- ``bufs`` ``(N_ROWS, CAP)``: one ring buffer per windowed input (rows ``ROW_*``).
- ``roll`` ``(N_ROWS, 4)``: per windowed statistic ``(anchor, s1, s2, peak)``: running sums
  of ``x - anchor`` and ``(x - anchor)^2`` over the window, and the largest ``s2`` since the
  last exact recomputation.
- ``ints`` int64: ``[0]`` bars seen, ``[1 + row]`` ring position, ``[1 + N_ROWS + row]``
  values pushed to that row.
- ``filt`` ``(N_FILTERS, 3)``: recursive filters (``kernels``), ``scal``: ``[0]`` previous
  close, ``rec``: scratch for the recursive outputs.

Windowed sums are updated in O(1) (add the new value, subtract the one leaving). Rounding
error then grows with the values that passed through, so the sums are recomputed exactly
(two-pass over the ring, O(window)) whenever the ring wraps (O(1) amortised) and whenever
cancellation would cost precision (``s2 - s1^2/w < peak * 2^-12``: the window's spread
collapsed relative to the sums, e.g. a quiet stretch after a volatile one; a constant window
hits this on every bar, which costs O(window) there). The anchor (the window mean at the last
recomputation) keeps the sums small, so the variance does not suffer the cancellation of
``E[x^2] - E[x]^2`` on raw prices. The 20-bar high/low scan their ring (O(20)).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numba import types as nt

from ultrathink.features import kernels as kn
from ultrathink.features import spec as sp
from ultrathink.features.kernels import B1, F8, F8_1D, F8_2D, I8, I8_1D

CAP = 64  # ring capacity: >= every window and the longest close lag + 1
(
    ROW_C10,
    ROW_C20,
    ROW_C50,
    ROW_RET10,
    ROW_RET20,
    ROW_RET60,
    ROW_PARK,
    ROW_GK,
    ROW_VOL,
    ROW_HIGH,
    ROW_LOW,
    ROW_CLOSE,
) = range(12)
N_ROWS = 12
# period of each row's ring (the window of its statistic)
W = (
    *sp.SMA_WINDOWS,
    *sp.RVOL_WINDOWS,
    sp.RANGE_VOL_WINDOW,
    sp.RANGE_VOL_WINDOW,
    sp.VOLUME_WINDOW,
    sp.HIGH_LOW_WINDOW,
    sp.HIGH_LOW_WINDOW,
    CAP,
)
if W[ROW_C20] != sp.BB_WINDOW or max(*W[:-1], *sp.LOGRET_WINDOWS, sp.MOMENTUM_LAG) >= CAP:
    raise ImportError("stream_kernel's row layout no longer matches features.spec")
# Recompute when s2 - s1^2/w falls below 2^-12 of the peak: the sums' rounding (~w ulps of
# the peak) then stays below ~60 * 2^-52 * 2^12 ~ 5e-11 of the variance.
GUARD = 2.0**-12
_I = sp.FEATURE_INDEX
F_LOGRET = tuple(_I[f"logret_{w}"] for w in sp.LOGRET_WINDOWS)
F_SMA10, F_SMA20, F_SMA50 = (_I[f"close_sma_{w}"] for w in sp.SMA_WINDOWS)
F_EMA12, F_EMA26 = (_I[f"close_ema_{w}"] for w in sp.EMA_WINDOWS)
F_RVOL10, F_RVOL20, F_RVOL60 = (_I[f"rvol_{w}"] for w in sp.RVOL_WINDOWS)
F_PARK, F_GK = _I["parkinson_20"], _I["garman_klass_20"]
F_RSI, F_MACD, F_SIGNAL, F_HIST = _I["rsi_14"], _I["macd"], _I["macd_signal"], _I["macd_hist"]
F_BB, F_ATR, F_VOLZ = _I["bb_pctb_20"], _I["atr_14"], _I["volume_z_20"]
F_RANGE, F_LOC, F_MOM = _I["bar_range"], _I["close_location"], _I["momentum_10"]
F_HIGH, F_LOW, F_DOW = _I["dist_high_20"], _I["dist_low_20"], _I["day_of_week"]
NAN = math.nan


def new_state() -> tuple[np.ndarray, ...]:
    """Return fresh ``(bufs, roll, ints, filt, scal, rec)`` state arrays."""
    return (
        np.zeros((N_ROWS, CAP), dtype=np.float64),
        np.zeros((N_ROWS, 4), dtype=np.float64),
        np.zeros(1 + 2 * N_ROWS, dtype=np.int64),
        kn.new_filter_state(),
        np.full(1, NAN, dtype=np.float64),
        np.zeros(kn.N_RECURSIVE, dtype=np.float64),
    )


@njit(nt.void(F8_2D, F8_2D, I8, I8), cache=True)
def _recompute(bufs: np.ndarray, roll: np.ndarray, row: int, w: int) -> None:
    total = 0.0
    for i in range(w):
        total += bufs[row, i]
    anchor = total / w
    s1 = 0.0
    s2 = 0.0
    for i in range(w):
        d = bufs[row, i] - anchor
        s1 += d
        s2 += d * d
    roll[row, 0] = anchor
    roll[row, 1] = s1
    roll[row, 2] = s2
    roll[row, 3] = s2


@njit(F8(F8_2D, I8_1D, I8, F8, I8), cache=True)
def _ring_push(bufs: np.ndarray, ints: np.ndarray, row: int, x: float, w: int) -> float:
    # store x in the ring of ``row`` (period w); return the value it replaced
    pos = ints[1 + row]
    old = bufs[row, pos]
    bufs[row, pos] = x
    pos += 1
    ints[1 + row] = 0 if pos == w else pos
    ints[1 + N_ROWS + row] += 1
    return old


@njit(nt.void(F8_2D, F8_2D, I8_1D, I8, F8, I8), cache=True)
def _roll_push(
    bufs: np.ndarray, roll: np.ndarray, ints: np.ndarray, row: int, x: float, w: int
) -> None:
    was_full = ints[1 + N_ROWS + row] >= w
    old = _ring_push(bufs, ints, row, x, w)
    d = x - roll[row, 0]
    if was_full:
        d_old = old - roll[row, 0]
        roll[row, 1] += d - d_old
        roll[row, 2] += d * d - d_old * d_old
    else:
        roll[row, 1] += d
        roll[row, 2] += d * d
    roll[row, 3] = max(roll[row, 3], roll[row, 2])
    if ints[1 + N_ROWS + row] >= w:
        m2 = roll[row, 2] - roll[row, 1] * roll[row, 1] / w
        if ints[1 + row] == 0 or m2 < roll[row, 3] * GUARD:
            _recompute(bufs, roll, row, w)


@njit(F8(F8_2D, I8_1D, I8, I8), cache=True)
def _mean(roll: np.ndarray, ints: np.ndarray, row: int, w: int) -> float:
    if ints[1 + N_ROWS + row] < w:
        return NAN
    return roll[row, 0] + roll[row, 1] / w


@njit(F8(F8_2D, I8_1D, I8, I8, I8), cache=True)
def _sd(roll: np.ndarray, ints: np.ndarray, row: int, w: int, ddof: int) -> float:
    if ints[1 + N_ROWS + row] < w:
        return NAN
    m2 = max(roll[row, 2] - roll[row, 1] * roll[row, 1] / w, 0.0)
    return math.sqrt(m2 / (w - ddof))


@njit(F8(F8_2D, I8_1D, I8, F8, I8), cache=True)
def _dev(roll: np.ndarray, ints: np.ndarray, row: int, x: float, w: int) -> float:
    # x - mean without the mean's rounding: x - anchor is near exact, s1 / w is small
    if ints[1 + N_ROWS + row] < w:
        return NAN
    return (x - roll[row, 0]) - roll[row, 1] / w


@njit(F8(F8_2D, I8_1D, I8, I8, B1), cache=True)
def _extreme(bufs: np.ndarray, ints: np.ndarray, row: int, w: int, take_max: bool) -> float:
    if ints[1 + N_ROWS + row] < w:
        return NAN
    best = bufs[row, 0]
    for i in range(1, w):
        x = bufs[row, i]
        best = max(best, x) if take_max else min(best, x)
    return best


@njit(F8(F8), cache=True)
def _non_negative(x: float) -> float:
    # clamps rounding noise below zero; NaN passes through
    return 0.0 if x < 0.0 else x


@njit(F8(F8_2D, I8_1D, I8), cache=True)
def _lag(bufs: np.ndarray, ints: np.ndarray, lag: int) -> float:
    # close ``lag`` bars before the one just pushed
    if ints[1 + N_ROWS + ROW_CLOSE] <= lag:
        return NAN
    return bufs[ROW_CLOSE, (ints[1 + ROW_CLOSE] - 1 - lag) % CAP]


@njit(nt.void(F8_2D, F8_2D, I8_1D, F8, F8, F8, F8, F8, F8), cache=True)
def _push_inputs(
    bufs: np.ndarray,
    roll: np.ndarray,
    ints: np.ndarray,
    o: float,
    h: float,
    lo: float,
    c: float,
    v: float,
    prev_c: float,
) -> None:
    _roll_push(bufs, roll, ints, ROW_C10, c, W[ROW_C10])
    _roll_push(bufs, roll, ints, ROW_C20, c, W[ROW_C20])
    _roll_push(bufs, roll, ints, ROW_C50, c, W[ROW_C50])
    if not math.isnan(prev_c):
        r = math.log(c / prev_c)
        _roll_push(bufs, roll, ints, ROW_RET10, r, W[ROW_RET10])
        _roll_push(bufs, roll, ints, ROW_RET20, r, W[ROW_RET20])
        _roll_push(bufs, roll, ints, ROW_RET60, r, W[ROW_RET60])
    hl = math.log(h / lo)
    co = math.log(c / o)
    hl2 = hl * hl
    _roll_push(bufs, roll, ints, ROW_PARK, hl2, W[ROW_PARK])
    _roll_push(bufs, roll, ints, ROW_GK, 0.5 * hl2 - sp.GK_CLOSE_COEF * (co * co), W[ROW_GK])
    _roll_push(bufs, roll, ints, ROW_VOL, v, W[ROW_VOL])
    _ring_push(bufs, ints, ROW_HIGH, h, W[ROW_HIGH])
    _ring_push(bufs, ints, ROW_LOW, lo, W[ROW_LOW])
    _ring_push(bufs, ints, ROW_CLOSE, c, CAP)


@njit(nt.void(F8_2D, F8_2D, I8_1D, F8_1D, F8, F8), cache=True)
def _write_windowed(
    bufs: np.ndarray, roll: np.ndarray, ints: np.ndarray, out: np.ndarray, c: float, v: float
) -> None:
    out[F_LOGRET[0]] = math.log(c / _lag(bufs, ints, sp.LOGRET_WINDOWS[0]))
    out[F_LOGRET[1]] = math.log(c / _lag(bufs, ints, sp.LOGRET_WINDOWS[1]))
    out[F_LOGRET[2]] = math.log(c / _lag(bufs, ints, sp.LOGRET_WINDOWS[2]))
    out[F_LOGRET[3]] = math.log(c / _lag(bufs, ints, sp.LOGRET_WINDOWS[3]))
    out[F_LOGRET[4]] = math.log(c / _lag(bufs, ints, sp.LOGRET_WINDOWS[4]))
    out[F_MOM] = c / _lag(bufs, ints, sp.MOMENTUM_LAG) - 1.0
    out[F_SMA10] = c / _mean(roll, ints, ROW_C10, W[ROW_C10]) - 1.0
    out[F_SMA20] = c / _mean(roll, ints, ROW_C20, W[ROW_C20]) - 1.0
    out[F_SMA50] = c / _mean(roll, ints, ROW_C50, W[ROW_C50]) - 1.0
    out[F_RVOL10] = _sd(roll, ints, ROW_RET10, W[ROW_RET10], 1)
    out[F_RVOL20] = _sd(roll, ints, ROW_RET20, W[ROW_RET20], 1)
    out[F_RVOL60] = _sd(roll, ints, ROW_RET60, W[ROW_RET60], 1)
    park = _non_negative(_mean(roll, ints, ROW_PARK, W[ROW_PARK]))
    out[F_PARK] = math.sqrt(park / sp.PARKINSON_DENOM)
    out[F_GK] = math.sqrt(_non_negative(_mean(roll, ints, ROW_GK, W[ROW_GK])))
    mean = _mean(roll, ints, ROW_C20, W[ROW_C20])
    sd = _sd(roll, ints, ROW_C20, W[ROW_C20], 0)
    dispersed = not sd <= sp.MIN_REL_DISPERSION * abs(mean)
    dev = _dev(roll, ints, ROW_C20, c, W[ROW_C20])
    out[F_BB] = 0.5 + dev / (2.0 * sp.BB_N_SD * sd) if dispersed else 0.5
    mean = _mean(roll, ints, ROW_VOL, W[ROW_VOL])
    sd = _sd(roll, ints, ROW_VOL, W[ROW_VOL], 0)
    dispersed = not sd <= sp.MIN_REL_DISPERSION * abs(mean)
    out[F_VOLZ] = _dev(roll, ints, ROW_VOL, v, W[ROW_VOL]) / sd if dispersed else 0.0
    out[F_HIGH] = c / _extreme(bufs, ints, ROW_HIGH, W[ROW_HIGH], True) - 1.0
    out[F_LOW] = c / _extreme(bufs, ints, ROW_LOW, W[ROW_LOW], False) - 1.0


@njit(nt.void(F8_1D, F8_1D, F8), cache=True)
def _write_recursive(rec: np.ndarray, out: np.ndarray, c: float) -> None:
    out[F_EMA12] = c / rec[kn.R_EMA_FAST] - 1.0
    out[F_EMA26] = c / rec[kn.R_EMA_SLOW] - 1.0
    out[F_MACD] = rec[kn.R_MACD] / c
    out[F_SIGNAL] = rec[kn.R_SIGNAL] / c
    out[F_HIST] = (rec[kn.R_MACD] - rec[kn.R_SIGNAL]) / c
    out[F_RSI] = rec[kn.R_RSI]
    out[F_ATR] = rec[kn.R_ATR] / c


@njit(nt.void(F8_2D, F8_2D, I8_1D, F8_2D, F8_1D, F8_1D, F8_1D, I8, F8, F8, F8, F8, F8), cache=True)
def update(
    bufs: np.ndarray,
    roll: np.ndarray,
    ints: np.ndarray,
    filt: np.ndarray,
    scal: np.ndarray,
    rec: np.ndarray,
    out: np.ndarray,
    ts_ns: int,
    o: float,
    h: float,
    lo: float,
    c: float,
    v: float,
) -> None:
    """Advance the state by one bar; write its feature row into ``out``."""
    prev_c = scal[0]
    _push_inputs(bufs, roll, ints, o, h, lo, c, v, prev_c)
    _write_windowed(bufs, roll, ints, out, c, v)
    kn.recursive_step(filt, rec, h, lo, c, prev_c)
    _write_recursive(rec, out, c)
    span = h - lo
    out[F_RANGE] = span / c
    out[F_LOC] = 0.5 if span == 0.0 else (c - lo) / span
    out[F_DOW] = (ts_ns // sp.NS_PER_DAY + sp.EPOCH_WEEKDAY) % 7
    scal[0] = c
    ints[0] += 1
