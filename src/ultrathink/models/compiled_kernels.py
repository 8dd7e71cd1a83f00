"""Numba kernels that evaluate a flattened ensemble, and the table layout they read.

Tables (built by ``compiled_flatten``):

- ``node_i`` int32 ``(4, n_nodes)``: rows of feature indices, left children, right children
  and flags (one contiguous row per field: measured faster than one record per node);
- ``node_f`` float64 ``(2, n_nodes)``: thresholds (row 0), leaf values (row 1);
- ``tree_i`` int32 ``(2, n_trees)``: root node, depth; gradient-boosted trees first;
- ``params`` float64 ``(P_COEF + n_features,)``: see the ``P_*`` indices below.

Nodes are numbered breadth-first within each tree, so a split's right child is its left
child + 1 and a step is ``node = left[node] + goes_right`` with no branch. A leaf's children
are itself and its threshold is ``+inf``, so stepping from a leaf stays put and every tree is
walked exactly ``depth`` steps.

Speed (see ``tests/benchmarks/test_bench_inference.py``) comes from four choices:

- indices are converted to unsigned before use, so numba skips negative-index wraparound,
  which otherwise costs more than the comparison itself;
- a row or block with no NaN and no ``|x| <= 1e-35`` takes the plain ``x > threshold``;
  otherwise each node applies its library's missing-value rule (same decisions, slower);
- forest trees compare ``float64(float32(x))``, rounded once per row or block, which is
  exactly scikit-learn's ``float32(x) > threshold``;
- a single row walks 8 trees in lockstep (8 independent load chains for the CPU to overlap);
  a batch walks each tree for a block of rows (the rows' chains overlap).

Leaves are found exactly either way and summed in tree order with the same operations (no
fast-math), so ``predict_batch`` equals ``predict_row`` bit for bit.

The layout constants live here, next to the kernels, because numba's on-disk cache is keyed
on this file: changing them here invalidates the cached machine code.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np
from numba import njit

Int: TypeAlias = int | np.integer[Any]  # kernels take Python or numpy integers

FEATURE, LEFT, RIGHT, FLAGS = 0, 1, 2, 3  # rows of node_i
THRESHOLD, VALUE = 0, 1  # rows of node_f
ROOT, DEPTH = 0, 1  # rows of tree_i
NAN_RIGHT = 1  # flag: a NaN input goes to the right child
ZERO_RIGHT = 2  # flag (LightGBM only): an input with |x| <= 1e-35 goes to the right child
# LightGBM's kZeroThreshold is the float 1e-35f, compared against doubles after promotion.
LGBM_ZERO = float(np.float32(1e-35))

# params: member weights, LightGBM sigmoid scale, tree counts, folded linear intercept
P_W_GBM, P_W_FOREST, P_W_LINEAR, P_SIGMOID, P_N_GBM, P_N_FOREST, P_INTERCEPT = range(7)
P_COEF = 7  # params[P_COEF:] are the folded linear coefficients, one per feature
BLOCK_ROWS = 64  # rows that walk each tree together in batch mode (their inputs stay in L1)

PLAIN, GBM_RULES, FOREST_RULES = 0, 1, 2  # how a walk compares: plain, or a library's NaN rules
LOCKSTEP = 8  # trees a single row walks at once
_U0 = np.uint64(0)


@njit(cache=True, nogil=True)
def _check_width(n_feat: Int, params: np.ndarray) -> None:
    # Feature indices are trusted (checked at construction); the row width is checked here.
    if n_feat != params.shape[0] - P_COEF:
        raise ValueError("row length must equal the ensemble's n_features")


@njit(cache=True, nogil=True)
def _is_clean(xf: np.ndarray, lo: Int, hi: Int) -> bool:
    # No NaN and no |v| <= 1e-35 in xf[lo:hi]: every split may use the plain comparison.
    dirty = False
    for i in range(lo, hi):
        dirty |= not abs(xf[i]) > LGBM_ZERO
    return not dirty


@njit(cache=True, nogil=True)
def _round_f32(xf: np.ndarray, lo: Int, n: Int, out: np.ndarray) -> np.ndarray:
    # float64(float32(v)) > t  <=>  float32(v) > t: scikit-learn's comparison, in float64.
    for j in range(n):
        out[j] = np.float64(np.float32(xf[lo + j]))
    return out


@njit(cache=True, nogil=True, inline="always")
def _goes_right(v: float, threshold: float, flags: Int, mode: Int) -> np.uint64:
    # GBM_RULES: LightGBM NumericalDecision (NaN and |v| <= 1e-35 take precomputed routes).
    # FOREST_RULES: scikit-learn (v already float32-rounded; NaN follows missing_go_to_left).
    if mode == GBM_RULES and not abs(v) > LGBM_ZERO:
        if v != v:
            return np.uint64(flags & NAN_RIGHT)
        return np.uint64((flags & ZERO_RIGHT) >> 1)
    if mode == FOREST_RULES and v != v:
        return np.uint64(flags & NAN_RIGHT)
    return np.uint64(v > threshold)


@njit(cache=True, nogil=True, inline="always")
def _step(
    xv: np.ndarray,
    row: np.uint64,
    nd: np.uint64,
    feat: np.ndarray,
    left: np.ndarray,
    thr: np.ndarray,
) -> np.uint64:
    # One plain step from node nd for the row starting at xv[row].
    return np.uint64(left[nd]) + np.uint64(xv[row + np.uint64(feat[nd])] > thr[nd])


@njit(cache=True, nogil=True, inline="always")
def _step_rules(
    xv: np.ndarray,
    row: np.uint64,
    nd: np.uint64,
    node_i: np.ndarray,
    thr: np.ndarray,
    mode: Int,
) -> np.uint64:
    # One step applying the library's missing-value rule.
    v = xv[row + np.uint64(node_i[FEATURE, nd])]
    go = _goes_right(v, thr[nd], node_i[FLAGS, nd], mode)
    return np.uint64(node_i[LEFT, nd]) + go


@njit(cache=True, nogil=True, inline="always")
def _walk8(
    xv: np.ndarray, t: Int, feat: np.ndarray, left: np.ndarray, thr: np.ndarray, tree_i: np.ndarray
) -> tuple[np.uint64, ...]:
    # Eight trees in lockstep, to the deepest one's depth (leaves hold still).
    n0, n1 = np.uint64(tree_i[ROOT, t]), np.uint64(tree_i[ROOT, t + 1])
    n2, n3 = np.uint64(tree_i[ROOT, t + 2]), np.uint64(tree_i[ROOT, t + 3])
    n4, n5 = np.uint64(tree_i[ROOT, t + 4]), np.uint64(tree_i[ROOT, t + 5])
    n6, n7 = np.uint64(tree_i[ROOT, t + 6]), np.uint64(tree_i[ROOT, t + 7])
    depth = tree_i[DEPTH, t]
    for k in range(1, LOCKSTEP):
        depth = max(depth, tree_i[DEPTH, t + k])
    for _ in range(depth):
        n0 = _step(xv, _U0, n0, feat, left, thr)
        n1 = _step(xv, _U0, n1, feat, left, thr)
        n2 = _step(xv, _U0, n2, feat, left, thr)
        n3 = _step(xv, _U0, n3, feat, left, thr)
        n4 = _step(xv, _U0, n4, feat, left, thr)
        n5 = _step(xv, _U0, n5, feat, left, thr)
        n6 = _step(xv, _U0, n6, feat, left, thr)
        n7 = _step(xv, _U0, n7, feat, left, thr)
    return n0, n1, n2, n3, n4, n5, n6, n7


@njit(cache=True, nogil=True)
def _sum_plain(
    xv: np.ndarray,
    first: Int,
    stop: Int,
    node_i: np.ndarray,
    node_f: np.ndarray,
    tree_i: np.ndarray,
) -> float:
    # Sum of the leaf values of trees first..stop-1 for a clean row, in tree order.
    feat, left = node_i[FEATURE], node_i[LEFT]
    thr, value = node_f[THRESHOLD], node_f[VALUE]
    total = 0.0
    t = first
    while t + LOCKSTEP <= stop:
        n0, n1, n2, n3, n4, n5, n6, n7 = _walk8(xv, t, feat, left, thr, tree_i)
        total += value[n0]
        total += value[n1]
        total += value[n2]
        total += value[n3]
        total += value[n4]
        total += value[n5]
        total += value[n6]
        total += value[n7]
        t += LOCKSTEP
    for tree in range(t, stop):
        nd = np.uint64(tree_i[ROOT, tree])
        for _ in range(tree_i[DEPTH, tree]):
            nd = _step(xv, _U0, nd, feat, left, thr)
        total += value[nd]
    return total


@njit(cache=True, nogil=True)
def _sum_careful(
    xv: np.ndarray,
    first: Int,
    stop: Int,
    node_i: np.ndarray,
    node_f: np.ndarray,
    tree_i: np.ndarray,
    mode: Int,
) -> float:
    # As _sum_plain, for a row holding NaN or |v| <= 1e-35: each node applies its rule.
    thr, value = node_f[THRESHOLD], node_f[VALUE]
    total = 0.0
    for tree in range(first, stop):
        nd = np.uint64(tree_i[ROOT, tree])
        for _ in range(tree_i[DEPTH, tree]):
            nd = _step_rules(xv, _U0, nd, node_i, thr, mode)
        total += value[nd]
    return total


@njit(cache=True, nogil=True)
def _linear_proba(xf: np.ndarray, base: Int, n_feat: Int, params: np.ndarray) -> float:
    z = params[P_INTERCEPT]
    for j in range(n_feat):
        z += params[P_COEF + j] * xf[base + j]
    return 1.0 / (1.0 + np.exp(-z))


@njit(cache=True, nogil=True)
def _combine(
    xf: np.ndarray, base: Int, n_feat: Int, gbm_raw: float, forest_sum: float, params: np.ndarray
) -> float:
    # Σ w_m p_m over members with a non-zero weight, in the reference's order, then clip.
    p = 0.0
    if params[P_W_GBM] != 0.0:
        p += params[P_W_GBM] * (1.0 / (1.0 + np.exp(-params[P_SIGMOID] * gbm_raw)))
    if params[P_W_FOREST] != 0.0:
        p += params[P_W_FOREST] * (forest_sum / params[P_N_FOREST])
    if params[P_W_LINEAR] != 0.0:
        p += params[P_W_LINEAR] * _linear_proba(xf, base, n_feat, params)
    if p < 0.0:  # the reference clips to [0, 1]; NaN passes through
        p = 0.0
    elif p > 1.0:
        p = 1.0
    return p


@njit(cache=True, nogil=True)
def _row_sums(
    x: np.ndarray, node_i: np.ndarray, node_f: np.ndarray, tree_i: np.ndarray, params: np.ndarray
) -> tuple[float, float]:
    # One row: LightGBM raw score and the forest's summed leaf probabilities.
    n_gbm = np.int64(params[P_N_GBM])
    n_trees = n_gbm + np.int64(params[P_N_FOREST])
    x32 = _round_f32(x, 0, x.shape[0], np.empty(x.shape[0]))
    if _is_clean(x, 0, x.shape[0]):
        gbm_raw = _sum_plain(x, 0, n_gbm, node_i, node_f, tree_i)
        forest_sum = _sum_plain(x32, n_gbm, n_trees, node_i, node_f, tree_i)
    else:
        gbm_raw = _sum_careful(x, 0, n_gbm, node_i, node_f, tree_i, GBM_RULES)
        forest_sum = _sum_careful(x32, n_gbm, n_trees, node_i, node_f, tree_i, FOREST_RULES)
    return gbm_raw, forest_sum


@njit(cache=True, nogil=True)
def predict_row(
    x: np.ndarray, node_i: np.ndarray, node_f: np.ndarray, tree_i: np.ndarray, params: np.ndarray
) -> float:
    """Return the ensemble's positive-class probability for one float64 row."""
    _check_width(x.shape[0], params)
    gbm_raw, forest_sum = _row_sums(x, node_i, node_f, tree_i, params)
    return _combine(x, 0, x.shape[0], gbm_raw, forest_sum, params)


@njit(cache=True, nogil=True)
def _walk_block(
    xv: np.ndarray,
    base: np.uint64,
    stride: np.uint64,
    m: Int,
    tree: Int,
    node_i: np.ndarray,
    node_f: np.ndarray,
    tree_i: np.ndarray,
    idx: np.ndarray,
    mode: Int,
) -> None:
    # Walk one tree for m rows (row k's features start at xv[base + k * stride]).
    feat, left = node_i[FEATURE], node_i[LEFT]
    thr = node_f[THRESHOLD]
    root = np.uint64(tree_i[ROOT, tree])
    for k in range(m):
        idx[k] = root
    for _ in range(tree_i[DEPTH, tree]):
        row = base
        if mode == PLAIN:
            for k in range(m):
                idx[k] = _step(xv, row, idx[k], feat, left, thr)
                row += stride
        else:
            for k in range(m):
                idx[k] = _step_rules(xv, row, idx[k], node_i, thr, mode)
                row += stride


@njit(cache=True, nogil=True)
def _sum_block(
    xv: np.ndarray,
    base: np.uint64,
    stride: np.uint64,
    m: Int,
    first: Int,
    stop: Int,
    node_i: np.ndarray,
    node_f: np.ndarray,
    tree_i: np.ndarray,
    idx: np.ndarray,
    mode: Int,
    acc: np.ndarray,
) -> None:
    # acc[k] = Σ leaf values of trees first..stop-1 for row k of the block, in tree order.
    value = node_f[VALUE]
    for k in range(m):
        acc[k] = 0.0
    for tree in range(first, stop):
        _walk_block(xv, base, stride, m, tree, node_i, node_f, tree_i, idx, mode)
        for k in range(m):
            acc[k] += value[idx[k]]


@njit(cache=True, nogil=True)
def predict_batch(
    X: np.ndarray,
    node_i: np.ndarray,
    node_f: np.ndarray,
    tree_i: np.ndarray,
    params: np.ndarray,
    out: np.ndarray,
) -> np.ndarray:
    """Write the positive-class probability of every row of C-contiguous ``X`` into ``out``."""
    n_rows, n_feat = X.shape
    _check_width(n_feat, params)
    xf = X.reshape(n_rows * n_feat)
    stride = np.uint64(n_feat)
    n_gbm = np.int64(params[P_N_GBM])
    n_trees = n_gbm + np.int64(params[P_N_FOREST])
    x32 = np.empty(BLOCK_ROWS * n_feat)
    idx = np.empty(BLOCK_ROWS, dtype=np.uint64)
    gbm_raw, forest_sum = np.empty(BLOCK_ROWS), np.empty(BLOCK_ROWS)
    for start in range(0, n_rows, BLOCK_ROWS):
        m = min(BLOCK_ROWS, n_rows - start)
        lo = start * n_feat
        clean = _is_clean(xf, lo, lo + m * n_feat)
        _round_f32(xf, lo, m * n_feat, x32)
        mode = PLAIN if clean else GBM_RULES
        _sum_block(
            xf, np.uint64(lo), stride, m, 0, n_gbm, node_i, node_f, tree_i, idx, mode, gbm_raw
        )
        mode = PLAIN if clean else FOREST_RULES
        _sum_block(
            x32, _U0, stride, m, n_gbm, n_trees, node_i, node_f, tree_i, idx, mode, forest_sum
        )
        for k in range(m):
            base = lo + k * n_feat
            out[start + k] = _combine(xf, base, n_feat, gbm_raw[k], forest_sum[k], params)
    return out


@njit(cache=True, nogil=True)
def predict_members(
    X: np.ndarray,
    node_i: np.ndarray,
    node_f: np.ndarray,
    tree_i: np.ndarray,
    params: np.ndarray,
    out: np.ndarray,
) -> np.ndarray:
    """Write each member's positive-class probability (gbm, forest, linear) into ``out``."""
    n_feat = X.shape[1]
    _check_width(n_feat, params)
    n_forest = params[P_N_FOREST]
    for r in range(X.shape[0]):
        gbm_raw, forest_sum = _row_sums(X[r], node_i, node_f, tree_i, params)
        out[r, 0] = 1.0 / (1.0 + np.exp(-params[P_SIGMOID] * gbm_raw))
        out[r, 1] = forest_sum / n_forest if n_forest > 0 else np.nan
        out[r, 2] = _linear_proba(X[r], 0, n_feat, params)
    return out
