"""Recipes of compressed ensembles, and the members they are built from.

A ``Recipe`` is an ``EnsembleClassifier``'s parameters plus, for a distilled ensemble, the
teacher's; ``fit_recipe`` builds it. The rest are the blocks the search (``compress_search``)
and ``fit_recipe`` share: a member fitted exactly as the ensemble fits it, the distilled
student of the tree members' vote, a member's prediction from its first ``k`` trees, the
validation log loss after each boosting round, the bytes of each LightGBM tree, a member
dropped to a one-tree stub, and the parent's parameters read from a ``TrainingSet``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ultrathink.errors import ConfigError
from ultrathink.models.ensemble import MEMBER_NAMES, EnsembleClassifier
from ultrathink.models.pipeline import TrainingSet

TREE_PARAMS = {"gbm": "gbm_n_estimators", "forest": "forest_n_estimators"}
STUBS = {
    "gbm": {"gbm_n_estimators": 1, "gbm_num_leaves": 2},
    "forest": {"forest_n_estimators": 1, "forest_max_depth": 1},
    "linear": {},
}


@dataclass(frozen=True)
class Recipe:
    """How to build a (compressed) ensemble: its parameters, and the distillation teacher.

    Attributes
    ----------
    params : dict
        ``EnsembleClassifier`` parameters (``weights`` unnormalised, as given).
    teacher : dict or None
        Parameters of the ensemble whose tree members' vote the ``gbm`` member is distilled
        from (None: no distillation; the ensemble is ``EnsembleClassifier(**params)``).
    """

    params: dict[str, Any]
    teacher: dict[str, Any] | None = None

    def key(self) -> str:
        """Return a canonical text of the recipe (cache key)."""
        return json.dumps([self.params, self.teacher], sort_keys=True, default=str)

    def weight(self, name: str) -> float:
        """Return the (unnormalised) voting weight of member ``name``."""
        return float(self.params["weights"][MEMBER_NAMES.index(name)])


def fit_recipe(recipe: Recipe, X: np.ndarray, y: np.ndarray) -> EnsembleClassifier:
    """Fit the ensemble ``recipe`` describes on ``X``, ``y`` (distilling when it says so)."""
    model = EnsembleClassifier(**recipe.params).fit(X, y)
    if recipe.teacher is not None:
        teacher = EnsembleClassifier(**recipe.teacher).fit(X, y)
        members = teacher.members_
        soft = soft_labels(
            Recipe(recipe.teacher),
            members["gbm"].predict_proba(X)[:, 1],
            members["forest"].predict_proba(X)[:, 1],
        )
        # the ensemble fits its gbm member on hard labels; the student replaces it
        model.members_["gbm"] = fit_student(recipe.params, X, soft)
    return model


def parent_params(ts: TrainingSet) -> dict[str, Any]:
    """Return the parameters of ``ts``'s ensemble, refusing what compress cannot redo."""
    model = ts.model
    if not isinstance(model, EnsembleClassifier):
        raise ConfigError(
            f"model {version_of(ts)} is a {type(model).__name__}, not an EnsembleClassifier; "
            "compress works on the ensembles `ultrathink train` registers"
        )
    lineage = ((ts.info.extra or {}).get("lineage") or {}) if ts.info is not None else {}
    if lineage.get("kind") == "compress" and lineage.get("teacher_params"):
        raise ConfigError(
            f"model {version_of(ts)} was distilled, which its parameters alone do not "
            f"reproduce; compress its parent {lineage.get('parent')} instead"
        )
    params = model.get_params(deep=False)
    params["weights"] = tuple(float(w) for w in params["weights"])
    return params


def version_of(ts: TrainingSet) -> str:
    """Return the version ``ts`` was rebuilt from, for messages."""
    return str(getattr(ts.info, "version", "the model"))


def unfitted(name: str, params: dict[str, Any]) -> Any:
    """Return member ``name`` of ``EnsembleClassifier(**params)``, not fitted."""
    # the ensemble builds its own members: asking it keeps every member setting identical
    return EnsembleClassifier(**params)._make_members()[name]


def fit_member(name: str, params: dict[str, Any], X: np.ndarray, y: np.ndarray) -> Any:
    """Fit member ``name`` on ``X``, ``y`` as ``EnsembleClassifier`` fits it."""
    member = unfitted(name, params).fit(X, y)
    if name == "forest":
        member.set_params(n_jobs=1)  # as EnsembleClassifier: single-threaded predictions
    return member


def fit_student(params: dict[str, Any], X: np.ndarray, soft: np.ndarray) -> Any:
    """Fit the ``gbm`` member of ``params`` on the soft labels ``soft`` (distillation)."""
    # each row twice: class 1 weighted t, class 0 weighted 1 - t (cross-entropy on soft
    # labels); a leaf holds both copies of its rows, so min_child_samples counts them twice
    student = unfitted("gbm", params)
    student.set_params(min_child_samples=2 * int(params["gbm_min_child_samples"]))
    n = X.shape[0]
    labels = np.concatenate([np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)])
    weights = np.concatenate([soft, 1.0 - soft])
    return student.fit(np.vstack([X, X]), labels, sample_weight=weights)


def soft_labels(teacher: Recipe, p_gbm: np.ndarray, p_forest: np.ndarray) -> np.ndarray:
    """Return the tree members' weighted vote, the student's labels."""
    w_gbm, w_forest = teacher.weight("gbm"), teacher.weight("forest")
    return np.clip((w_gbm * p_gbm + w_forest * p_forest) / (w_gbm + w_forest), 0.0, 1.0)


def prefix_proba(member: Any, X: np.ndarray, k: int) -> np.ndarray:
    """Return P(class 1) on ``X`` from the first ``k`` trees of the fitted ``member``."""
    # the first k trees' prediction: exactly what a member fitted with k trees predicts
    if hasattr(member, "booster_"):
        return np.asarray(member.predict_proba(X, num_iteration=k)[:, 1], dtype=np.float64)
    if hasattr(member, "estimators_"):
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        total = np.zeros(X.shape[0], dtype=np.float64)
        for tree in member.estimators_[:k]:  # summed in order, as the forest sums them
            total += tree.predict_proba(X32, check_input=False)[:, 1]
        return total / k
    return np.asarray(member.predict_proba(X)[:, 1], dtype=np.float64)


def staged_log_loss(booster: Any, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return the log loss on ``X``, ``y`` after each boosting round of ``booster``."""
    # validation log loss after each boosting round, from the leaves each row reaches (the
    # init score is in the first tree's leaves); version-proof, unlike eval_set/eval_X
    leaves = np.asarray(booster.predict(X, pred_leaf=True), dtype=np.int64).reshape(len(X), -1)
    values = np.empty(leaves.shape, dtype=np.float64)
    for t in range(leaves.shape[1]):
        table = [booster.get_leaf_output(t, j) for j in range(int(leaves[:, t].max()) + 1)]
        values[:, t] = np.asarray(table)[leaves[:, t]]
    p = 1.0 / (1.0 + np.exp(-np.cumsum(values, axis=1)))
    p = np.clip(p, 1e-15, 1.0 - 1e-15)
    yy = y[:, None].astype(np.float64)
    return np.asarray(-(yy * np.log(p) + (1.0 - yy) * np.log(1.0 - p)).mean(axis=0))


def lgbm_tree_bytes(text: str) -> list[int]:
    """Return the bytes of each tree in LightGBM's model text ``text``."""
    # LightGBM's model text lists each tree's length; the rest (header, feature importances)
    # is charged to the first tree
    line = next(x for x in text.splitlines() if x.startswith("tree_sizes="))
    sizes = [int(v) for v in line.split("=", 1)[1].split()]
    sizes[0] += len(text) - sum(sizes)
    return sizes


def n_trees(name: str, params: dict[str, Any]) -> int:
    """Return member ``name``'s tree count in ``params`` (0 for the linear member)."""
    return int(params[TREE_PARAMS[name]]) if name in TREE_PARAMS else 0


def drop_member(recipe: Recipe, name: str) -> Recipe:
    """Return ``recipe`` with member ``name`` silenced (weight 0) and stubbed."""
    weights = list(recipe.params["weights"])
    weights[MEMBER_NAMES.index(name)] = 0.0
    params = {**recipe.params, **STUBS[name], "weights": tuple(weights)}
    # a distilled student lives in the gbm slot: dropping it drops the distillation
    return Recipe(params, None if name == "gbm" else recipe.teacher)


def stub_silent(params: dict[str, Any]) -> dict[str, Any]:
    """Return ``params`` with every member of weight 0 reduced to its stub."""
    # a member with weight 0 is still fitted and stored: keep it as a one-tree stub
    out = dict(params)
    for i, name in enumerate(MEMBER_NAMES):
        if float(params["weights"][i]) == 0.0:
            out.update(STUBS[name])
    return out
