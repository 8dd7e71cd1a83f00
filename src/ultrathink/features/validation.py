"""Purged walk-forward splits: train only on the past, never on labels that see the test.

The samples are cut into ``n_folds + 1`` contiguous blocks (sizes differ by at most one,
larger blocks first, as ``np.array_split``). Fold ``k`` (1-based) tests on block ``k`` and
trains on every sample before it except the last ``label_horizon + 1``: a label made at
sample ``t`` looks at bars up to ``t + 1 + label_horizon`` (see ``labels``), so those samples'
labels overlap the test period (the *purge*).

``embargo`` drops samples right *after* a test block from training sets (López de Prado).
Walk-forward training sets lie entirely before their test block, so the embargo can never
remove anything here; it is accepted (and validated) so that callers can switch to a split
that trains on post-test data without changing their configuration. Every split satisfies:
no training index lies in ``[test_start - label_horizon - 1, test_end + embargo]``.
"""

from __future__ import annotations

import numpy as np

from ultrathink.errors import ConfigError


def purged_walk_forward(
    n_samples: int,
    n_folds: int,
    label_horizon: int,
    embargo: int = 0,
    min_train: int | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return expanding-window ``(train_idx, test_idx)`` pairs, purged of label overlap.

    Parameters
    ----------
    n_samples : int
        Number of time-ordered samples.
    n_folds : int
        Number of test blocks, >= 1; the sample is cut into ``n_folds + 1`` blocks.
    label_horizon : int
        Bars after ``t + 1`` that the label of sample ``t`` uses, >= 0 (the ``horizon`` of
        ``forward_return_labels``). ``label_horizon + 1`` samples are purged before each test.
    embargo : int
        Samples after each test block excluded from any training set, >= 0.
    min_train : int or None
        Smallest acceptable training set (default 1).

    Returns
    -------
    list of (np.ndarray, np.ndarray)
        One ``(train_idx, test_idx)`` pair of sorted int64 indices per fold, in time order.

    Raises
    ------
    ConfigError
        For settings no split can satisfy; the message names the parameter, its value and
        the fix.
    """
    _check_params(n_samples, n_folds, label_horizon, embargo, min_train)
    bounds = _block_bounds(n_samples, n_folds + 1)
    purge = label_horizon + 1
    _check_first_fold(bounds, purge, 1 if min_train is None else min_train)
    splits = []
    for k in range(1, n_folds + 1):
        start, stop = int(bounds[k]), int(bounds[k + 1])
        train = np.arange(0, start - purge, dtype=np.int64)
        splits.append((train, np.arange(start, stop, dtype=np.int64)))
    return splits


def _check_first_fold(bounds: np.ndarray, purge: int, need: int) -> None:
    # training sets only grow after fold 1, so fold 1 decides feasibility
    first_train = int(bounds[1]) - purge
    if first_train < need:
        raise ConfigError(
            f"min_train={need}: fold 1 would train on {max(first_train, 0)} samples "
            f"(n_samples={int(bounds[-1])} cut into n_folds+1={len(bounds) - 1} blocks of "
            f"~{int(bounds[1])}, minus label_horizon+1={purge} purged); lower n_folds, "
            f"label_horizon or min_train, or provide more samples"
        )


def _block_bounds(n_samples: int, n_blocks: int) -> np.ndarray:
    base, extra = divmod(n_samples, n_blocks)
    sizes = np.full(n_blocks, base, dtype=np.int64)
    sizes[:extra] += 1
    return np.concatenate(([0], np.cumsum(sizes)))


def _check_params(
    n_samples: int, n_folds: int, label_horizon: int, embargo: int, min_train: int | None
) -> None:
    _require_int("n_folds", n_folds, 1, "use at least one test fold")
    _require_int("label_horizon", label_horizon, 0, "pass the labels' horizon in bars")
    _require_int("embargo", embargo, 0, "use 0 for no embargo")
    if min_train is not None:
        _require_int("min_train", min_train, 1, "use None for the default of 1")
    _require_int("n_samples", n_samples, 0, "pass the number of samples")
    if n_samples < n_folds + 1:
        raise ConfigError(
            f"n_samples must be >= n_folds + 1 = {n_folds + 1} so every block is non-empty, "
            f"was {n_samples}; lower n_folds or provide more samples"
        )


def _require_int(name: str, value: object, minimum: int, fix: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, was {value!r}; {fix}")
