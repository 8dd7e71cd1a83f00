"""Flatten fitted ensemble members into the node tables ``compiled_kernels`` evaluates.

Each tree becomes a run of nodes in ``node_i``/``node_f`` (layout: ``compiled_kernels``),
numbered breadth-first so that a split's right child is its left child + 1. A leaf points
at itself with threshold ``+inf``, feature 0 and no flags.

LightGBM trees come from ``booster_.dump_model()``; scikit-learn trees from
``estimator.tree_``; the logistic member's ``StandardScaler`` is folded into its weights.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from ultrathink.errors import ConfigError
from ultrathink.models.compiled_kernels import (
    DEPTH,
    FEATURE,
    FLAGS,
    LEFT,
    NAN_RIGHT,
    RIGHT,
    ROOT,
    THRESHOLD,
    VALUE,
    ZERO_RIGHT,
)


class UnsupportedModelError(ConfigError, ValueError):
    """A fitted model that ``CompiledEnsemble`` cannot compile (names the feature and the fix)."""


@dataclass(frozen=True)
class FlatTrees:
    """Trees flattened into node and tree tables (node numbers local to these tables)."""

    node_i: np.ndarray
    node_f: np.ndarray
    tree_i: np.ndarray

    @property
    def n_trees(self) -> int:
        """Return the number of trees."""
        return int(self.tree_i.shape[1])


def concat_trees(parts: list[FlatTrees]) -> FlatTrees:
    """Concatenate flattened trees, renumbering children and roots.

    Parameters
    ----------
    parts : list of FlatTrees
        Tree tables in the order their trees should be evaluated (and summed).

    Returns
    -------
    FlatTrees
        One table holding every tree of every part.
    """
    sizes = [part.node_i.shape[1] for part in parts]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    node_i = [p.node_i.astype(np.int64) for p in parts]
    tree_i = [p.tree_i.astype(np.int64) for p in parts]
    for offset, nodes, trees in zip(offsets, node_i, tree_i, strict=True):
        nodes[[LEFT, RIGHT]] += offset
        trees[ROOT] += offset
    return FlatTrees(
        node_i=np.ascontiguousarray(np.concatenate(node_i, axis=1), dtype=np.int32),
        node_f=np.ascontiguousarray(np.concatenate([p.node_f for p in parts], axis=1)),
        tree_i=np.ascontiguousarray(np.concatenate(tree_i, axis=1), dtype=np.int32),
    )


def _tables(n: int, is_leaf: np.ndarray, leaf_value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Node tables with every leaf already pointing at itself.
    node_i = np.zeros((4, n), dtype=np.int64)
    node_f = np.zeros((2, n), dtype=np.float64)
    leaves = np.flatnonzero(is_leaf)
    node_i[LEFT, leaves] = leaves
    node_i[RIGHT, leaves] = leaves
    node_f[THRESHOLD, leaves] = np.inf
    node_f[VALUE, leaves] = leaf_value
    return node_i, node_f


def _one_tree(node_i: np.ndarray, node_f: np.ndarray, depth: int) -> FlatTrees:
    tree_i = np.zeros((2, 1), dtype=np.int64)
    tree_i[ROOT, 0], tree_i[DEPTH, 0] = 0, depth
    return FlatTrees(node_i=node_i, node_f=node_f, tree_i=tree_i)


# ---------------------------------------------------------------- LightGBM


def _lgbm_flags(node: dict[str, Any], threshold: float) -> int:
    # NumericalDecision in LightGBM's tree.h: NaN becomes 0.0 unless missing_type is NaN;
    # missing_type Zero sends zeros (and so NaN) the default way; |x| <= 1e-35 is read as 0.0.
    missing = node.get("missing_type", "None")
    default_right = not node["default_left"]
    zero_right = default_right if missing == "Zero" else threshold < 0.0
    nan_right = default_right if missing in ("NaN", "Zero") else threshold < 0.0
    return (NAN_RIGHT if nan_right else 0) | (ZERO_RIGHT if zero_right else 0)


def _check_lgbm_node(node: dict[str, Any]) -> None:
    if "leaf_coeff" in node:
        raise UnsupportedModelError(
            "LightGBM member was trained with linear_tree=True; CompiledEnsemble compiles "
            "constant leaves only: retrain with linear_tree=False"
        )
    if "leaf_value" not in node and node.get("decision_type", "<=") != "<=":
        raise UnsupportedModelError(
            f"LightGBM split decision_type must be '<=' (numerical), was "
            f"{node.get('decision_type')!r}: categorical features are not supported by "
            "CompiledEnsemble; encode them numerically before training"
        )


def _lgbm_bfs(structure: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    order: list[dict[str, Any]] = []
    depth = 0
    queue: deque[tuple[dict[str, Any], int]] = deque([(structure, 0)])
    while queue:
        node, level = queue.popleft()
        _check_lgbm_node(node)
        order.append(node)
        depth = max(depth, level)
        if "leaf_value" not in node:
            queue.append((node["left_child"], level + 1))
            queue.append((node["right_child"], level + 1))
    return order, depth


def lgbm_tree(structure: dict[str, Any]) -> FlatTrees:
    """Flatten one LightGBM ``tree_structure`` dict, breadth-first.

    Parameters
    ----------
    structure : dict
        ``dump_model()["tree_info"][k]["tree_structure"]``.

    Returns
    -------
    FlatTrees
        One tree; its root is node 0.

    Raises
    ------
    UnsupportedModelError
        On a categorical split or a linear leaf.
    """
    order, depth = _lgbm_bfs(structure)
    is_leaf = np.array(["leaf_value" in node for node in order])
    values = np.array([node.get("leaf_value", 0.0) for node in order], dtype=np.float64)
    node_i, node_f = _tables(len(order), is_leaf, values[is_leaf])
    next_child = 1
    for k in np.flatnonzero(~is_leaf):
        node = order[k]
        threshold = float(node["threshold"])
        flags = _lgbm_flags(node, threshold)
        node_i[:, k] = (int(node["split_feature"]), next_child, next_child + 1, flags)
        node_f[THRESHOLD, k] = threshold
        next_child += 2
    return _one_tree(node_i, node_f, depth)


def lgbm_sigmoid(dump: dict[str, Any]) -> float:
    """Return the sigmoid scale of a binary LightGBM model, refusing anything else.

    Parameters
    ----------
    dump : dict
        ``booster_.dump_model()``.

    Returns
    -------
    float
        ``s`` in ``p = 1 / (1 + exp(-s * raw))``.

    Raises
    ------
    UnsupportedModelError
        If the objective is not ``binary`` or the model averages its trees.
    """
    objective = str(dump.get("objective", ""))
    words = objective.split()
    if not words or words[0] != "binary" or dump.get("num_tree_per_iteration", 1) != 1:
        raise UnsupportedModelError(
            f"LightGBM member objective must be 'binary' with one tree per iteration, was "
            f"{objective!r}; CompiledEnsemble compiles binary classifiers only"
        )
    if dump.get("average_output", False):
        raise UnsupportedModelError(
            "LightGBM member has average_output=True (boosting='rf'), which CompiledEnsemble "
            "does not compile; use boosting='gbdt'"
        )
    scales = [float(w.split(":", 1)[1]) for w in words[1:] if w.startswith("sigmoid:")]
    return scales[0] if scales else 1.0


def lgbm_trees(dump: dict[str, Any]) -> FlatTrees:
    """Flatten every tree of a LightGBM dump, in boosting order.

    Parameters
    ----------
    dump : dict
        ``booster_.dump_model()``: by default the iterations ``predict`` uses (the best
        iteration after early stopping, else all). LightGBM has already folded the init
        score into the first tree's leaves.

    Returns
    -------
    FlatTrees
        All trees.
    """
    return concat_trees([lgbm_tree(info["tree_structure"]) for info in dump["tree_info"]])


# ---------------------------------------------------------------- scikit-learn


def _bfs_order(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    # Old node ids in breadth-first order, children of a split adjacent (vectorised per level).
    levels = [np.zeros(1, dtype=np.int64)]
    while True:
        splits = levels[-1][left[levels[-1]] >= 0]
        if splits.size == 0:
            return np.concatenate(levels)
        children = np.empty(2 * splits.size, dtype=np.int64)
        children[0::2] = left[splits]
        children[1::2] = right[splits]
        levels.append(children)


def sklearn_tree(tree: Any) -> FlatTrees:
    """Flatten one fitted ``sklearn.tree._tree.Tree`` of a binary classifier, breadth-first.

    Parameters
    ----------
    tree : sklearn Tree
        ``estimator.tree_``.

    Returns
    -------
    FlatTrees
        One tree; its root is node 0. A leaf's value is its class-1 probability,
        ``value[:, 0, 1] / value[:, 0].sum()`` (whether ``value`` holds counts or fractions).
    """
    old_left = np.asarray(tree.children_left, dtype=np.int64)
    old_right = np.asarray(tree.children_right, dtype=np.int64)
    order = _bfs_order(old_left, old_right)
    new_id = np.empty(order.size, dtype=np.int64)
    new_id[order] = np.arange(order.size)
    is_leaf = old_left[order] < 0
    value = np.asarray(tree.value, dtype=np.float64)[order, 0, :]
    total = value.sum(axis=1)
    total[total == 0.0] = 1.0
    node_i, node_f = _tables(order.size, is_leaf, value[is_leaf, 1] / total[is_leaf])
    split = np.flatnonzero(~is_leaf)
    old = order[split]
    node_i[FEATURE, split] = np.asarray(tree.feature)[old]
    node_i[LEFT, split] = new_id[old_left[old]]
    node_i[RIGHT, split] = new_id[old_right[old]]
    node_f[THRESHOLD, split] = np.asarray(tree.threshold)[old]
    missing_left = getattr(tree, "missing_go_to_left", None)
    if missing_left is not None:
        node_i[FLAGS, split] = np.where(np.asarray(missing_left)[old] == 0, NAN_RIGHT, 0)
    return _one_tree(node_i, node_f, int(tree.max_depth))


def sklearn_forest(forest: Any) -> FlatTrees:
    """Flatten every tree of a fitted binary ``ExtraTreesClassifier``/``RandomForestClassifier``.

    Parameters
    ----------
    forest : sklearn forest classifier
        Fitted on one output with two classes; class 1 is column 1 of ``predict_proba``.

    Returns
    -------
    FlatTrees
        The trees in ``estimators_`` order (the order scikit-learn sums them in).

    Raises
    ------
    UnsupportedModelError
        If the forest is not a single-output binary classifier.
    """
    classes = getattr(forest, "classes_", None)
    if getattr(forest, "n_outputs_", 1) != 1 or classes is None or len(classes) != 2:
        raise UnsupportedModelError(
            f"forest member must be a fitted single-output binary classifier, had classes "
            f"{classes!r}; CompiledEnsemble compiles binary models"
        )
    return concat_trees([sklearn_tree(estimator.tree_) for estimator in forest.estimators_])


def fold_linear(member: Any) -> tuple[np.ndarray, float]:
    """Fold an optional ``StandardScaler`` into a binary ``LogisticRegression``.

    Parameters
    ----------
    member : Pipeline or LogisticRegression
        ``Pipeline([("scale", StandardScaler()), ("logit", LogisticRegression())])`` or a
        bare fitted ``LogisticRegression``.

    Returns
    -------
    coef : np.ndarray of shape (n_features,)
        ``w' = coef / scale``.
    intercept : float
        ``b' = intercept - sum(coef * mean / scale)``; then ``p = sigmoid(w' . x + b')``.

    Raises
    ------
    UnsupportedModelError
        If the model is not binary or has a step other than ``StandardScaler``.
    """
    steps = [step for _, step in getattr(member, "steps", [("logit", member)])]
    *scalers, logit = [s for s in steps if s is not None and not isinstance(s, str)]
    coef = np.asarray(logit.coef_, dtype=np.float64)
    if coef.ndim != 2 or coef.shape[0] != 1:
        raise UnsupportedModelError(
            f"linear member's coef_ must have shape (1, n_features), was {coef.shape}; "
            "CompiledEnsemble compiles a binary LogisticRegression"
        )
    coef = coef[0].copy()
    intercept = float(np.asarray(logit.intercept_, dtype=np.float64).reshape(-1)[0])
    for scaler in reversed(scalers):
        coef, intercept = _fold_scaler(scaler, coef, intercept)
    return coef, intercept


def _fold_scaler(scaler: Any, coef: np.ndarray, intercept: float) -> tuple[np.ndarray, float]:
    if not hasattr(scaler, "with_mean") or not hasattr(scaler, "scale_"):
        raise UnsupportedModelError(
            f"linear member step {type(scaler).__name__} is not supported; CompiledEnsemble "
            "folds only StandardScaler into the LogisticRegression"
        )
    if scaler.with_std and scaler.scale_ is not None:
        coef = coef / np.asarray(scaler.scale_, dtype=np.float64)
    if scaler.with_mean and scaler.mean_ is not None:
        intercept -= float(np.dot(coef, np.asarray(scaler.mean_, dtype=np.float64)))
    return coef, intercept
