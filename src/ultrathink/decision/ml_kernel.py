"""The ML strategy's per-bar input gate in one numba call: gather the model's features from
the feature row and say whether every one is finite and inside the model's trusted range.

Measured on this machine (12 features, ``timeit``): the numpy version (``np.take`` with
``out=``, ``np.isfinite(x).all()``, ``((x < lo) | (x > hi)).any()``) cost 7.7 µs a bar, 16 %
of a feed session's GIL time in a ``py-spy --gil`` profile at 20,000 bars/s; each numpy
call on a 12-element array is mostly dispatch. One compiled call costs about 0.3 µs. The
messages (which features, why) are built from its verdict, on the rare bar that fails.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numba import types as nt

__all__ = ["NOT_FINITE", "OK", "OUT_OF_RANGE", "gather_checked"]

OK, NOT_FINITE, OUT_OF_RANGE = 0, 1, 2
_F8_ANY, _F8_1D, _I8_1D = nt.float64[:], nt.float64[::1], nt.int64[::1]


@njit(nt.int64(_F8_ANY, _I8_1D, _F8_1D, _F8_1D, _F8_1D), cache=True)
def gather_checked(
    row: np.ndarray, index: np.ndarray, lo: np.ndarray, hi: np.ndarray, out: np.ndarray
) -> int:
    """``out[i] = row[index[i]]``; return ``NOT_FINITE`` if any value is NaN or infinite,
    else ``OUT_OF_RANGE`` if any is outside ``[lo[i], hi[i]]``, else ``OK``."""
    code = OK
    for i in range(index.shape[0]):
        v = row[index[i]]
        out[i] = v
        if not math.isfinite(v):
            code = NOT_FINITE
        elif code == OK and (v < lo[i] or v > hi[i]):  # a NaN bound: no limit
            code = OUT_OF_RANGE
    return code
