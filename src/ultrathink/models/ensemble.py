"""``EnsembleClassifier``: three diverse binary classifiers combined by weighted soft voting.

Members (the keys of ``members_``, in the order of ``weights_``):

* ``"gbm"`` — gradient-boosted trees, ``lightgbm.LGBMClassifier`` (deterministic, row-wise);
* ``"forest"`` — bagged trees, ``ExtraTreesClassifier`` or ``RandomForestClassifier``;
* ``"linear"`` — ``Pipeline([("scale", StandardScaler()), ("logit", LogisticRegression())])``.

``predict_proba(X)[:, 1] = Σ_m w_m · p_m(y = 1 | X)`` with the weights normalised to sum to 1.
Members are always fitted and evaluated on plain float64 numpy arrays (a DataFrame is
converted once, and its column names checked, by the ensemble), so they never see mixed
DataFrame/ndarray input and never warn about feature names.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from lightgbm import LGBMClassifier
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from ultrathink.errors import ConfigError

MEMBER_NAMES: tuple[str, str, str] = ("gbm", "forest", "linear")
FOREST_KINDS: tuple[str, str] = ("extra_trees", "random_forest")


class ModelInputError(ConfigError, ValueError):
    """Parameters or training labels an ensemble cannot be fitted with.

    Also a ``ValueError``, so scikit-learn tooling that expects ``ValueError`` for bad
    parameters (``check_estimator``, search CV) keeps working.
    """


class EnsembleClassifier(ClassifierMixin, BaseEstimator):
    """Weighted soft-voting ensemble of LightGBM, a bagged tree forest and a logistic model.

    Parameters
    ----------
    gbm_n_estimators : int, default=200
        Boosting rounds of the LightGBM member.
    gbm_learning_rate : float, default=0.05
        Shrinkage of the LightGBM member, in (0, 1].
    gbm_num_leaves : int, default=15
        Maximum leaves per LightGBM tree (>= 2).
    gbm_min_child_samples : int, default=50
        Minimum rows per LightGBM leaf.
    forest : {"extra_trees", "random_forest"}, default="extra_trees"
        Which bagged tree ensemble to use.
    forest_n_estimators : int, default=200
        Trees in the forest member.
    forest_max_depth : int or None, default=6
        Maximum depth of the forest's trees (None: unlimited).
    forest_min_samples_leaf : int, default=50
        Minimum rows per forest leaf.
    logit_C : float, default=0.1
        Inverse L2 regularisation strength of the logistic member (> 0).
    weights : sequence of 3 floats, default=(1.0, 1.0, 1.0)
        Non-negative voting weights of (gbm, forest, linear); normalised to sum to 1.
    random_state : int or None, default=0
        Seed of every member; an int makes fitting bit-reproducible.
    n_jobs : int, default=1
        Threads used by the LightGBM and forest members.

    Attributes
    ----------
    members_ : dict of str to estimator
        The fitted members, keys exactly ``"gbm"``, ``"forest"``, ``"linear"``.
    weights_ : np.ndarray of shape (3,)
        Normalised weights in the order of ``members_``.
    classes_ : np.ndarray
        ``array([0, 1])``.
    n_features_in_ : int
        Number of features seen by ``fit``.
    feature_names_in_ : np.ndarray of str
        Column names, only when ``fit`` was given a DataFrame with string column names.
    """

    def __init__(
        self,
        gbm_n_estimators: int = 200,
        gbm_learning_rate: float = 0.05,
        gbm_num_leaves: int = 15,
        gbm_min_child_samples: int = 50,
        forest: str = "extra_trees",
        forest_n_estimators: int = 200,
        forest_max_depth: int | None = 6,
        forest_min_samples_leaf: int = 50,
        logit_C: float = 0.1,
        weights: Any = (1.0, 1.0, 1.0),
        random_state: int | None = 0,
        n_jobs: int = 1,
    ) -> None:
        self.gbm_n_estimators = gbm_n_estimators
        self.gbm_learning_rate = gbm_learning_rate
        self.gbm_num_leaves = gbm_num_leaves
        self.gbm_min_child_samples = gbm_min_child_samples
        self.forest = forest
        self.forest_n_estimators = forest_n_estimators
        self.forest_max_depth = forest_max_depth
        self.forest_min_samples_leaf = forest_min_samples_leaf
        self.logit_C = logit_C
        self.weights = weights
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: Any, y: Any) -> EnsembleClassifier:
        """Fit the three members on ``X`` and binary labels ``y`` in {0, 1}.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features (numpy array preferred; a DataFrame's column names are remembered).
        y : array-like of shape (n_samples,)
            Labels; exactly the values 0 and 1 (both must occur).

        Returns
        -------
        EnsembleClassifier
            ``self``, fitted. Every member is fitted, even one with weight 0, so that
            ``members_`` always holds all three.

        Raises
        ------
        ModelInputError
            On an invalid parameter or labels other than {0, 1}.
        """
        weights = self._validated_weights()
        self._check_params()
        X, y = validate_data(self, X, y, dtype=np.float64, order="C", ensure_min_samples=2)
        labels = _binary_labels(y)
        members = self._make_members()
        for member in members.values():
            member.fit(X, labels)
        # sklearn forests sum tree probabilities in thread-completion order when predicting
        # with n_jobs > 1, which changes the last bit between calls; predict single-threaded
        members["forest"].set_params(n_jobs=1)
        self.members_ = members
        self.weights_ = weights
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Return the weighted average of the members' class probabilities, shape (n, 2)."""
        check_is_fitted(self, "members_")
        X = validate_data(self, X, reset=False, dtype=np.float64, order="C")
        p1 = np.zeros(X.shape[0], dtype=np.float64)
        for weight, member in zip(self.weights_, self.members_.values(), strict=True):
            if weight > 0.0:
                p1 += weight * member.predict_proba(X)[:, 1]
        np.clip(p1, 0.0, 1.0, out=p1)
        return np.column_stack([1.0 - p1, p1])

    def predict(self, X: Any) -> np.ndarray:
        """Return the class with the higher ensemble probability (0 on a tie)."""
        proba = self.predict_proba(X)
        return self.classes_[(proba[:, 1] > proba[:, 0]).astype(np.intp)]

    def member_proba(self, X: Any) -> dict[str, np.ndarray]:
        """Return each member's probability of class 1, keyed like ``members_``."""
        check_is_fitted(self, "members_")
        X = validate_data(self, X, reset=False, dtype=np.float64, order="C")
        return {name: m.predict_proba(X)[:, 1] for name, m in self.members_.items()}

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def _make_members(self) -> dict[str, Any]:
        gbm = LGBMClassifier(
            n_estimators=self.gbm_n_estimators,
            learning_rate=self.gbm_learning_rate,
            num_leaves=self.gbm_num_leaves,
            min_child_samples=self.gbm_min_child_samples,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            deterministic=True,
            force_row_wise=True,
            verbose=-1,
        )
        forest_cls = (
            ExtraTreesClassifier if self.forest == "extra_trees" else RandomForestClassifier
        )
        forest = forest_cls(
            n_estimators=self.forest_n_estimators,
            max_depth=self.forest_max_depth,
            min_samples_leaf=self.forest_min_samples_leaf,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
        )
        linear = Pipeline(
            [
                ("scale", StandardScaler()),
                ("logit", LogisticRegression(C=self.logit_C, max_iter=1000)),
            ]
        )
        return {"gbm": gbm, "forest": forest, "linear": linear}

    def _check_params(self) -> None:
        if self.forest not in FOREST_KINDS:
            raise ModelInputError(
                f"forest must be one of {list(FOREST_KINDS)}, was {self.forest!r}; "
                "pick 'extra_trees' or 'random_forest'"
            )
        for name in ("gbm_n_estimators", "forest_n_estimators", "n_jobs"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("gbm_num_leaves", self.gbm_num_leaves, minimum=2)
        _check_int("gbm_min_child_samples", self.gbm_min_child_samples, minimum=1)
        _check_int("forest_min_samples_leaf", self.forest_min_samples_leaf, minimum=1)
        if self.forest_max_depth is not None:
            _check_int("forest_max_depth", self.forest_max_depth, minimum=1)
        _check_positive("gbm_learning_rate", self.gbm_learning_rate, maximum=1.0)
        _check_positive("logit_C", self.logit_C, maximum=math.inf)

    def _validated_weights(self) -> np.ndarray:
        try:
            weights = np.asarray(self.weights, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise ModelInputError(
                f"weights must be 3 numbers for {list(MEMBER_NAMES)}, was {self.weights!r}"
            ) from exc
        if weights.shape != (3,) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ModelInputError(
                f"weights must be 3 finite non-negative numbers for {list(MEMBER_NAMES)}, "
                f"was {self.weights!r}; e.g. weights=(1.0, 1.0, 1.0)"
            )
        total = float(weights.sum())
        if total <= 0.0:
            raise ModelInputError(
                f"weights must not all be zero, was {self.weights!r}; give at least one "
                "member a positive weight"
            )
        return weights / total


def _binary_labels(y: np.ndarray) -> np.ndarray:
    # the messages keep scikit-learn's wording ("Unknown label type", "Only binary
    # classification") so sklearn tooling recognises them; labels compare as numbers, so
    # 0.0/1.0 and False/True are accepted as 0/1
    kind = type_of_target(y)
    values = np.unique(y)
    fix = "; map the labels to 0/1 (and make sure both classes occur in the training rows)"
    if kind not in ("binary", "multiclass"):
        raise ModelInputError(
            f"Unknown label type: {kind}. y must be binary labels {{0, 1}}, had "
            f"{values.size} distinct values such as {values[:3].tolist()!r}{fix}"
        )
    if kind == "multiclass":
        raise ModelInputError(
            "Only binary classification is supported: y must have exactly the values "
            f"{{0, 1}}, had {values.tolist()!r} (type {kind!r}){fix}"
        )
    try:
        numeric = values.astype(np.float64)
    except (TypeError, ValueError):
        numeric = np.array([np.nan])
    if not np.array_equal(numeric, [0.0, 1.0]):
        raise ModelInputError(
            f"y must have exactly the values {{0, 1}}, had {values.tolist()!r}{fix}"
        )
    return np.asarray(y).astype(np.float64).astype(np.int64)


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ModelInputError(f"{name} must be an integer >= {minimum}, was {value!r}")


def _check_positive(name: str, value: Any, *, maximum: float) -> None:
    ok = isinstance(value, int | float | np.number) and not isinstance(value, bool)
    if not ok or not (0.0 < float(value) <= maximum):
        bound = "" if math.isinf(maximum) else f" and <= {maximum}"
        raise ModelInputError(f"{name} must be a number > 0{bound}, was {value!r}")
