"""Training labels: forward returns that a strategy deciding at bar ``t``'s close can trade.

The decision is made at the close of bar ``t`` from features that use bars ``0..t``; the
order fills at the next open, ``open[t + 1]``, and is held ``horizon`` bars, so the label
is ``open[t + 1 + horizon] / open[t + 1] - 1``. A label therefore depends on bars
``t + 1 .. t + 1 + horizon``: purge ``horizon + 1`` samples before each test period when
validating (``purged_walk_forward(label_horizon=horizon)``).
"""

from __future__ import annotations

import numpy as np

from ultrathink.errors import ConfigError

BPS = 1e-4


def forward_return_labels(
    open_: np.ndarray, horizon: int, dead_zone_bps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label each bar with the direction of its tradable forward return.

    Parameters
    ----------
    open_ : np.ndarray
        Opening prices of one symbol, time-ordered, positive.
    horizon : int
        Holding period in bars, >= 1.
    dead_zone_bps : float
        Returns with ``|r| < dead_zone_bps / 10_000`` are too small to call: their rows are
        marked invalid (exclude them from training). 0 keeps every row whose return is known.

    Returns
    -------
    y : np.ndarray
        int8, 1 where the forward return is positive, 0 otherwise (also 0 on invalid rows).
    valid : np.ndarray
        bool, True where the return is known (``t + 1 + horizon < n``) and outside the
        dead zone.
    fwd_return : np.ndarray
        float64 ``open[t + 1 + horizon] / open[t + 1] - 1``, NaN where it is unknown.

    Raises
    ------
    ConfigError
        If ``horizon < 1`` or ``dead_zone_bps`` is negative or not finite.
    """
    _check(horizon, dead_zone_bps)
    prices = np.asarray(open_, dtype=np.float64)
    if prices.ndim != 1:
        raise ValueError(f"open_ must be one-dimensional, got shape {prices.shape}")
    n = prices.shape[0]
    fwd = np.full(n, np.nan)
    n_known = max(n - 1 - horizon, 0)
    if n_known:
        fwd[:n_known] = prices[1 + horizon : 1 + horizon + n_known] / prices[1 : 1 + n_known] - 1.0
    with np.errstate(invalid="ignore"):
        valid = np.abs(fwd) >= dead_zone_bps * BPS
    y = ((fwd > 0.0) & valid).astype(np.int8)
    return y, valid, fwd


def _check(horizon: int, dead_zone_bps: float) -> None:
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ConfigError(
            f"horizon must be an integer >= 1 (bars held after the next open), was {horizon!r}"
        )
    if not np.isfinite(dead_zone_bps) or dead_zone_bps < 0:
        raise ConfigError(
            f"dead_zone_bps must be finite and >= 0, was {dead_zone_bps!r}; use 0 to keep every row"
        )
