"""Incremental features for the event-driven engine: O(1) per bar, equal to the vectorised ones.

All state lives in a few numpy arrays updated by one numba-compiled call per bar
(``stream_kernel.update``), so an update costs about a microsecond of dispatch plus the
arithmetic; see ``stream_kernel`` for how windowed sums stay exact.
"""

from __future__ import annotations

import numpy as np

from ultrathink.core.events import Bar
from ultrathink.features import stream_kernel as sk
from ultrathink.features.spec import N_FEATURES, WARMUP_BARS


class StreamingFeatures:
    """Feature row of one symbol, updated bar by bar.

    ``update`` returns the same preallocated float64 array every time, overwritten in place:
    copy it (``row.copy()``) if you keep it beyond the next update. Its columns follow
    ``FEATURE_NAMES``; a feature is NaN until it has warmed up, exactly where the vectorised
    ``compute_features`` is NaN. Inputs must be finite, prices positive (validated data):
    a NaN bar poisons the recursive features (EMA, MACD, RSI, ATR) until ``reset``.

    Examples
    --------
    >>> feats = StreamingFeatures()
    >>> row = feats.update(0, 100.0, 101.0, 99.0, 100.5, 1e6)
    >>> feats.ready, row.shape
    (False, (28,))
    """

    __slots__ = ("_bufs", "_filt", "_ints", "_out", "_rec", "_roll", "_scal")

    def __init__(self) -> None:
        self._out = np.full(N_FEATURES, np.nan)
        self.reset()

    @property
    def ready(self) -> bool:
        """True once ``WARMUP_BARS`` bars have been seen: every feature is then finite."""
        return bool(self._ints[0] >= WARMUP_BARS)

    @property
    def n_bars(self) -> int:
        """Bars seen since construction or the last ``reset``."""
        return int(self._ints[0])

    @property
    def row(self) -> np.ndarray:
        """The current feature row (the array ``update`` returns; overwritten per update)."""
        return self._out

    def reset(self) -> None:
        """Forget every bar seen, as if newly constructed (the row array is kept)."""
        self._bufs, self._roll, self._ints, self._filt, self._scal, self._rec = sk.new_state()
        self._out.fill(np.nan)

    def update(
        self,
        ts_ns: int,
        o: float,
        h: float,
        l: float,  # noqa: E741 -- o, h, l, c, v is the OHLCV convention
        c: float,
        v: float,
    ) -> np.ndarray:
        """Add one bar; return the feature row as of its close.

        Parameters
        ----------
        ts_ns : int
            Bar timestamp, UTC nanoseconds.
        o, h, l, c, v : float
            Open, high, low, close (positive) and volume (non-negative).

        Returns
        -------
        np.ndarray
            The preallocated row, overwritten by the next call: copy it to keep it.
        """
        sk.update(
            self._bufs,
            self._roll,
            self._ints,
            self._filt,
            self._scal,
            self._rec,
            self._out,
            ts_ns,
            o,
            h,
            l,
            c,
            v,
        )
        return self._out

    def update_bar(self, bar: Bar) -> np.ndarray:
        """Add one ``Bar`` event (its symbol is not checked); see ``update``."""
        return self.update(bar.ts_ns, bar.open, bar.high, bar.low, bar.close, bar.volume)
