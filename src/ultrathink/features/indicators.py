"""Streaming indicators with O(1) updates and their vectorised twins (parity-tested).

A streaming indicator is updated once per bar with the bar's close and exposes ``value``
(NaN until ``ready``). The vectorised function computes the same series over a whole array;
tests assert both agree, and that no value depends on later bars.
"""

from __future__ import annotations

import math

import numpy as np

NAN = math.nan


class SMA:
    """Simple moving average of the last ``window`` values, O(1) per update.

    A ring buffer keeps the window; the running sum is re-anchored with ``math.fsum`` each
    time the ring wraps, which bounds floating-point drift at O(1) amortised cost. Within one
    window the plain running sum is used (a compensated sum would cost ~30 % more per bar):
    its relative error stays below 1e-9 while the values inside a window span less than
    ~1e4 in magnitude — any price series — but not for adversarial mixes like 1e6 and 1e-3.
    """

    __slots__ = ("_buf", "_i", "_sum", "_warm", "value", "window")

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"SMA window must be >= 1, was {window}")
        self.window = window
        self._buf = [0.0] * window
        self._i = 0
        self._sum = 0.0
        self._warm = False
        self.value = NAN

    @property
    def ready(self) -> bool:
        """True once ``window`` values have been seen."""
        return self._warm

    def update(self, x: float) -> float:
        """Add one value; return the new average (NaN while warming up)."""
        buf = self._buf
        i = self._i
        self._sum += x - buf[i]
        buf[i] = x
        i += 1
        if i == self.window:
            i = 0
            self._sum = math.fsum(buf)
            self._warm = True
        self._i = i
        if self._warm:
            self.value = self._sum / self.window
        return self.value


class EMA:
    """Exponential moving average with ``alpha = 2 / (window + 1)``, seeded with the SMA."""

    __slots__ = ("_alpha", "_seed", "value", "window")

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"EMA window must be >= 1, was {window}")
        self.window = window
        self._alpha = 2.0 / (window + 1.0)
        self._seed = SMA(window)
        self.value = NAN

    @property
    def ready(self) -> bool:
        """True once ``window`` values have been seen."""
        return self._seed.ready

    def update(self, x: float) -> float:
        """Add one value; return the new average (NaN while warming up)."""
        if not self._seed.ready:
            self.value = self._seed.update(x)
            return self.value
        self.value += self._alpha * (x - self.value)
        return self.value


def sma(x: np.ndarray, window: int) -> np.ndarray:
    """Vectorised SMA: NaN for the first ``window - 1`` points."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    if window < 1:
        raise ValueError(f"SMA window must be >= 1, was {window}")
    if x.size >= window:
        view = np.lib.stride_tricks.sliding_window_view(x, window)
        out[window - 1 :] = view.mean(axis=1)
    return out


def ema(x: np.ndarray, window: int) -> np.ndarray:
    """Vectorised EMA matching ``EMA``: seeded with the SMA of the first ``window`` values."""
    if window < 1:
        raise ValueError(f"EMA window must be >= 1, was {window}")
    x = np.asarray(x, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    if x.size < window:
        return out
    alpha = 2.0 / (window + 1.0)
    value = float(np.mean(x[:window]))
    out[window - 1] = value
    for i in range(window, x.size):  # recursive filter; research-path only
        value += alpha * (x[i] - value)
        out[i] = value
    return out
