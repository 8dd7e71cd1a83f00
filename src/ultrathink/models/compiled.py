"""``CompiledEnsemble``: an ``EnsembleClassifier`` flattened into arrays and run by numba.

Single-row inference through scikit-learn and LightGBM costs hundreds of microseconds of
Python-level validation per call; this evaluates the same ensemble in a few microseconds.
``from_ensemble`` flattens every tree into a node table (``compiled_flatten``), folds the
scaler into the logistic weights, and the ``@njit(cache=True)`` kernels in
``compiled_kernels`` walk the tables. The result matches ``model.predict_proba`` to within
1e-12 (see ``tests/unit/models/test_compiled_parity.py``) because it mimics each library's
decision rule exactly:

* LightGBM: ``x <= threshold`` goes left, in float64; ``|x| <= 1e-35`` is read as 0.0;
  a NaN goes the split's default direction when its ``missing_type`` is ``NaN`` (or
  ``Zero``) and is read as 0.0 when it is ``None``; ``missing_type`` ``Zero`` also sends
  zeros the default direction; ``p = 1 / (1 + exp(-sigmoid * Σ leaf values))`` (the init
  score is already folded into the first tree by LightGBM).
* scikit-learn forests: the input is cast to **float32** before ``x <= threshold``
  (thresholds stay float64), exactly as ``Tree.apply`` does; a NaN follows the node's
  ``missing_go_to_left`` (scikit-learn >= 1.3; without it a NaN goes left); the forest
  probability is the tree-order sum of leaf probabilities divided by the tree count.
* Linear: ``p = 1 / (1 + exp(-(w' . x + b')))`` with the ``StandardScaler`` folded in. NaN
  in any feature makes it NaN (the reference refuses NaN outright).

Then ``p = clip(Σ w_m p_m, 0, 1)`` over the members with a non-zero weight, in the order
gbm, forest, linear, as ``EnsembleClassifier.predict_proba`` does.

Persistence: the instance holds only numpy arrays and pickles small (the numba dispatchers
live at module level). The registry stores the ``EnsembleClassifier``; the serving side
rebuilds the compiled form at load time with ``from_ensemble`` (tens of milliseconds for
200 + 200 trees), so there is one source of truth and no second artefact to keep in step.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import numpy as np

from ultrathink.models import compiled_kernels as kernels
from ultrathink.models.compiled_flatten import (
    UnsupportedModelError,
    concat_trees,
    fold_linear,
    lgbm_sigmoid,
    lgbm_trees,
    sklearn_forest,
)

__all__ = ["CompiledEnsemble", "UnsupportedModelError"]

_MEMBERS = ("gbm", "forest", "linear")
_MIN_BLOCKS_PER_THREAD = 16  # below ~1,000 rows per thread, starting a thread costs more


class CompiledEnsemble:
    """A fitted three-member ensemble compiled to flat arrays, evaluated by numba kernels.

    Build it with :meth:`from_ensemble`; the constructor takes the prebuilt arrays.

    Parameters
    ----------
    node_i : np.ndarray of int32, shape (4, n_nodes)
        Rows: feature index, left child, right child, missing-value flags of each node.
    node_f : np.ndarray of float64, shape (2, n_nodes)
        Rows: threshold, leaf value of each node.
    tree_i : np.ndarray of int32, shape (2, n_trees)
        Rows: root node, depth; gradient-boosted trees first, then forest trees.
    params : np.ndarray of float64, shape (7 + n_features,)
        Weights (gbm, forest, linear), LightGBM sigmoid scale, tree counts (gbm, forest),
        folded linear intercept, then the folded linear coefficients.

    Attributes
    ----------
    n_features : int
        Length of the rows the ensemble scores.
    """

    __slots__ = ("n_features", "node_f", "node_i", "params", "tree_i")

    def __init__(
        self, node_i: np.ndarray, node_f: np.ndarray, tree_i: np.ndarray, params: np.ndarray
    ) -> None:
        self.node_i = np.ascontiguousarray(node_i, dtype=np.int32)
        self.node_f = np.ascontiguousarray(node_f, dtype=np.float64)
        self.tree_i = np.ascontiguousarray(tree_i, dtype=np.int32)
        self.params = np.ascontiguousarray(params, dtype=np.float64)
        self.n_features = int(self.params.shape[0]) - kernels.P_COEF
        _check_tables(self)

    @classmethod
    def from_ensemble(cls, model: Any) -> CompiledEnsemble:
        """Compile a fitted ensemble with ``members_`` and ``weights_``.

        Parameters
        ----------
        model : EnsembleClassifier or duck-typed equivalent
            ``members_`` = ``{"gbm": LGBMClassifier, "forest": ExtraTreesClassifier |
            RandomForestClassifier, "linear": Pipeline(StandardScaler, LogisticRegression)}``
            and ``weights_`` = 3 weights in that order.

        Returns
        -------
        CompiledEnsemble
            Evaluates ``model.predict_proba(X)[:, 1]`` row by row.

        Raises
        ------
        UnsupportedModelError
            If a member uses something the kernels do not implement (categorical or linear
            LightGBM trees, a non-binary objective, a non-StandardScaler linear step).
        """
        members = getattr(model, "members_", None)
        if not isinstance(members, dict) or set(members) != set(_MEMBERS):
            raise UnsupportedModelError(
                f"model must be a fitted ensemble with members_ keys {list(_MEMBERS)}, had "
                f"{sorted(members) if isinstance(members, dict) else None!r}; fit it first"
            )
        weights = np.asarray(model.weights_, dtype=np.float64).reshape(-1)
        if weights.shape != (3,):
            raise UnsupportedModelError(
                f"model.weights_ must hold 3 weights for {list(_MEMBERS)}, was {weights!r}"
            )
        dump = members["gbm"].booster_.dump_model()
        gbm, forest = lgbm_trees(dump), sklearn_forest(members["forest"])
        coef, intercept = fold_linear(members["linear"])
        head = [*weights, lgbm_sigmoid(dump), gbm.n_trees, forest.n_trees, intercept]
        trees = concat_trees([gbm, forest])
        params = np.concatenate([np.asarray(head, dtype=np.float64), coef])
        return cls(trees.node_i, trees.node_f, trees.tree_i, params)

    def predict_row(self, x: np.ndarray) -> float:
        """Return the positive-class probability of one row.

        The hot path: no validation. ``x`` must be a 1-D C-contiguous float64 array of
        length ``n_features``; another dtype compiles a new specialisation on first use.

        Parameters
        ----------
        x : np.ndarray of float64, shape (n_features,)
            Feature row.

        Returns
        -------
        float
            ``P(y = 1 | x)``.
        """
        return kernels.predict_row(x, self.node_i, self.node_f, self.tree_i, self.params)

    def predict_batch(self, X: np.ndarray, *, n_threads: int = 1) -> np.ndarray:
        """Return the positive-class probability of every row, shape (n,).

        Parameters
        ----------
        X : array-like of shape (n, n_features)
            Rows; converted to C-contiguous float64 if needed.
        n_threads : int, default 1
            Threads to split the rows over (the kernels release the GIL). Results do not
            depend on it: each row is scored by the same operations in any thread.

        Returns
        -------
        np.ndarray of float64, shape (n,)
            Identical, bit for bit, to calling :meth:`predict_row` on each row.
        """
        X = self._checked(X)
        out = np.empty(X.shape[0], dtype=np.float64)
        bounds = _chunk_bounds(X.shape[0], n_threads)
        if len(bounds) == 2:
            self._score(X, out)
            return out
        workers = [
            threading.Thread(target=self._score, args=(X[lo:hi], out[lo:hi]), daemon=True)
            for lo, hi in itertools.pairwise(bounds[1:])
        ]
        for worker in workers:
            worker.start()
        self._score(X[: bounds[1]], out[: bounds[1]])
        for worker in workers:
            worker.join()
        return out

    def predict_proba(self, X: np.ndarray, *, n_threads: int = 1) -> np.ndarray:
        """Return class probabilities like scikit-learn, shape (n, 2): ``[1 - p, p]``."""
        p1 = self.predict_batch(X, n_threads=n_threads)
        return np.column_stack([1.0 - p1, p1])

    def predict_members(self, X: np.ndarray) -> np.ndarray:
        """Return each member's positive-class probability, columns (gbm, forest, linear).

        Parameters
        ----------
        X : array-like of shape (n, n_features)
            Rows.

        Returns
        -------
        np.ndarray of float64, shape (n, 3)
            The members' own ``predict_proba(X)[:, 1]``, whatever their weight.
        """
        X = self._checked(X)
        out = np.empty((X.shape[0], 3), dtype=np.float64)
        kernels.predict_members(X, self.node_i, self.node_f, self.tree_i, self.params, out)
        return out

    def warmup(self) -> None:
        """Compile (or load from the on-disk cache) every kernel on a dummy row."""
        row = np.zeros(self.n_features, dtype=np.float64)
        self.predict_row(row)
        self.predict_members(row[None, :])
        self.predict_batch(row[None, :])

    @property
    def weights(self) -> np.ndarray:
        """Return the member weights (gbm, forest, linear)."""
        return self.params[kernels.P_W_GBM : kernels.P_W_LINEAR + 1].copy()

    @property
    def n_trees(self) -> tuple[int, int]:
        """Return the number of (gradient-boosted, forest) trees."""
        return int(self.params[kernels.P_N_GBM]), int(self.params[kernels.P_N_FOREST])

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.node_i, self.node_f, self.tree_i, self.params))

    def __repr__(self) -> str:
        n_gbm, n_forest = self.n_trees
        return (
            f"CompiledEnsemble(n_features={self.n_features}, n_gbm_trees={n_gbm}, "
            f"n_forest_trees={n_forest}, n_nodes={self.node_i.shape[1]})"
        )

    def _score(self, X: np.ndarray, out: np.ndarray) -> None:
        kernels.predict_batch(X, self.node_i, self.node_f, self.tree_i, self.params, out)

    def _checked(self, X: Any) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"X must have shape (n_rows, {self.n_features}), was {X.shape}; pass the "
                "same feature columns the ensemble was trained on"
            )
        return X


def _chunk_bounds(n_rows: int, n_threads: int) -> list[int]:
    # Row bounds of the per-thread chunks, on block boundaries; one chunk for small inputs.
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
        raise ValueError(f"n_threads must be an integer >= 1, was {n_threads!r}")
    blocks = -(-n_rows // kernels.BLOCK_ROWS)
    n_chunks = max(1, min(n_threads, blocks // _MIN_BLOCKS_PER_THREAD))
    per_chunk = -(-blocks // n_chunks) * kernels.BLOCK_ROWS
    return [min(i * per_chunk, n_rows) for i in range(n_chunks)] + [n_rows]


def _check_tables(model: CompiledEnsemble) -> None:
    # The kernels skip bounds checks, so the tables are checked once, here.
    n_nodes = model.node_i.shape[-1]
    shapes_ok = (
        model.node_i.shape == (4, n_nodes)
        and model.node_f.shape == (2, n_nodes)
        and model.tree_i.shape == (2, sum(model.n_trees))
        and model.n_features >= 1
    )
    if not shapes_ok:
        raise UnsupportedModelError(
            f"CompiledEnsemble tables have inconsistent shapes: node_i {model.node_i.shape}, "
            f"node_f {model.node_f.shape}, tree_i {model.tree_i.shape}; build with from_ensemble"
        )
    children = model.node_i[kernels.LEFT : kernels.RIGHT + 1]
    bounds = (
        (children, n_nodes),
        (model.tree_i[kernels.ROOT], n_nodes),
        (model.node_i[kernels.FEATURE], model.n_features),
    )
    for values, limit in bounds:
        if values.size and (values.min() < 0 or values.max() >= limit):
            raise UnsupportedModelError(
                "CompiledEnsemble tables point outside themselves or outside the feature row "
                f"(n_features={model.n_features}); the members disagree on the features"
            )
