"""Feature selection: out-of-sample permutation importance (MDA), clustered or sequential.

``ultrathink features select VERSION`` removes the features a registered model does not
need. Importance is measured out of sample on the version's own purged walk-forward folds:
each fold's model is fitted on its training rows with the version's parameters, and its
test rows are scored with one feature (or one group of features) shuffled, ``n_repeats``
times (Breiman's permutation importance; López de Prado, *Advances in Financial Machine
Learning*, 2018, ch. 8, "mean decrease accuracy"). A fold's importance is the mean decrease
of the score (accuracy, or minus the log loss); a feature's is the mean over folds with its
fold-to-fold standard error.

Permuting one feature of a pair of near-twins barely hurts, because the model reads the
same information from the other twin: both look unimportant and plain MDA would drop both
(the *substitution effect*). Clustered MDA (López de Prado, *Machine Learning for Asset
Managers*, 2020, ch. 6) groups the features by correlation — hierarchical clustering
(average linkage) of the distance ``1 - |Spearman ρ|`` — and shuffles a whole cluster at
once with one row permutation, which keeps the cluster's inner correlation and removes all
of its information together. The methods:

* ``clustered`` (default): a cluster is kept when its importance is positive beyond noise
  (``mean > min_t × s.e.``); in a kept cluster the member with the highest single-feature
  importance is kept, plus every member important on its own.
* ``mda``: a feature is kept when its own importance is positive beyond noise.
* ``sequential``: backward elimination: drop the least important feature, refit every fold
  and re-measure the importances (a twin left alone now carries the signal and shows it),
  until the next drop would lose more than ``max_loss_se`` fold standard errors.

When nothing passes, the best-ranked feature is kept (a model needs one) and the outcome
says so. ``permutation_scores`` mirrors ``sklearn.inspection.permutation_importance``
exactly (same random streams, tested), adding feature groups, and scores with the
``CompiledEnsemble`` (identical probabilities; several times faster than the ensemble's own
``predict_proba``, see ``tests/benchmarks/test_bench_select.py``).

The figures before and after are the same folds, rows and parameters, fitted on all the
version's features and on the kept ones. The selection chose its features on these folds,
so "after" is mildly optimistic; the registered version's own walk-forward report (more
rows may qualify when long-window features are dropped) is the independent check.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ultrathink.errors import ConfigError
from ultrathink.models.metrics import FoldMetrics, StrategyRule, score_predictions

Split = tuple[np.ndarray, np.ndarray]
METHODS = ("clustered", "mda", "sequential")
SCORINGS = ("accuracy", "logloss")


class SelectionConfig(BaseModel):
    """How ``features select`` selects.

    Attributes
    ----------
    method : {"clustered", "mda", "sequential"}
        See the module docstring.
    scoring : {"accuracy", "logloss"}
        The score whose mean decrease is the importance (accuracy at p > 0.5: MDA).
    n_repeats : int
        Shuffles per feature (or cluster) and fold.
    seed : int
        Seed of the shuffles: the same seed gives the same selection.
    min_t : float
        Keep a feature or cluster when its mean importance exceeds ``min_t`` fold s.e.
    max_cluster_distance : float
        Clusters merge while their average ``1 - |Spearman ρ|`` is at most this.
    max_loss_se : float
        Allowed out-of-sample loss, in fold s.e. of the score before selection (the target,
        and the stopping rule of ``sequential``).
    target_reduction_pct : float
        Share of the features the target asks to remove.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["clustered", "mda", "sequential"] = "clustered"
    scoring: Literal["accuracy", "logloss"] = "accuracy"
    n_repeats: int = Field(default=10, ge=1, le=1000)
    seed: int = Field(default=0, ge=0)
    min_t: float = Field(default=2.0, ge=0)
    max_cluster_distance: float = Field(default=0.5, gt=0, le=1)
    max_loss_se: float = Field(default=1.0, ge=0)
    target_reduction_pct: float = Field(default=70.0, ge=0, le=100)


@dataclass(frozen=True)
class Problem:
    """What selection works on: time-ordered rows, labels, folds and a model factory.

    ``make_model`` returns an unfitted ``EnsembleClassifier`` (the version's parameters);
    ``fwd`` and ``rule`` only feed the fold metrics' Sharpe ratio.
    """

    X: np.ndarray
    y: np.ndarray
    splits: list[Split]
    names: tuple[str, ...]
    make_model: Callable[[], Any]
    fwd: np.ndarray | None = None
    rule: StrategyRule = field(default_factory=StrategyRule)


@dataclass(frozen=True)
class Importance:
    """Mean decrease of the score when ``members`` are shuffled, over the folds."""

    label: str
    members: tuple[str, ...]
    per_fold: tuple[float, ...]

    @property
    def mean(self) -> float:
        """Mean importance over the folds."""
        return float(np.mean(self.per_fold))

    @property
    def se(self) -> float:
        """Fold-to-fold standard error of ``mean``."""
        return fold_se(self.per_fold)

    def is_significant(self, min_t: float) -> bool:
        """Positive beyond noise: ``mean > 0`` and ``mean > min_t × s.e.``."""
        return self.mean > 0.0 and self.mean > min_t * self.se

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields with ``mean`` and ``se``."""
        return {"label": self.label, "members": list(self.members), "mean": self.mean,
                "se": self.se, "per_fold": list(self.per_fold)}  # fmt: skip


@dataclass(frozen=True)
class Selection:
    """What a selection kept and why, with the fold metrics before and after."""

    config: SelectionConfig
    names: tuple[str, ...]
    kept: tuple[str, ...]
    features: tuple[Importance, ...]
    clusters: tuple[Importance, ...]
    before: tuple[FoldMetrics, ...]
    after: tuple[FoldMetrics, ...]
    fallback: bool = False
    steps: tuple[dict[str, Any], ...] = ()

    @property
    def dropped(self) -> tuple[str, ...]:
        """The features not kept, in column order."""
        return tuple(n for n in self.names if n not in self.kept)

    @property
    def reduction_pct(self) -> float:
        """Share of the features removed."""
        return 100.0 * (1.0 - len(self.kept) / len(self.names))

    def summary(self, metric: str) -> dict[str, float]:
        """Mean and fold s.e. of ``metric`` (a FoldMetrics field) before and after."""
        b = [getattr(f, metric) for f in self.before]
        a = [getattr(f, metric) for f in self.after]
        return {"before": float(np.mean(b)), "before_se": fold_se(b),
                "after": float(np.mean(a)), "after_se": fold_se(a)}  # fmt: skip

    @property
    def loss(self) -> float:
        """Score lost by the selection (positive: worse), in the scoring's units."""
        s = self.summary(_METRIC[self.config.scoring])
        sign = 1.0 if self.config.scoring == "accuracy" else -1.0
        return sign * (s["before"] - s["after"])

    @property
    def loss_se(self) -> float:
        """``loss`` in fold standard errors of the score before selection."""
        se = self.summary(_METRIC[self.config.scoring])["before_se"]
        return self.loss / se if se > 0 else (0.0 if self.loss <= 0 else math.inf)

    @property
    def target_met(self) -> bool:
        """At least ``target_reduction_pct`` removed, losing at most ``max_loss_se`` s.e."""
        cfg = self.config
        return self.reduction_pct >= cfg.target_reduction_pct and self.loss_se <= cfg.max_loss_se


_METRIC = {"accuracy": "accuracy", "logloss": "log_loss"}


def fold_se(values: Sequence[float]) -> float:
    # fold-to-fold standard error of the mean; 0 for a single fold
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else 0.0


def permutation_scores(
    predict: Callable[[np.ndarray], np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    groups: Sequence[Sequence[int]],
    *,
    scoring: str = "accuracy",
    n_repeats: int = 5,
    random_state: int = 0,
) -> tuple[float, np.ndarray]:
    """Score ``X`` as given, and with each group of columns shuffled ``n_repeats`` times.

    The random streams are those of ``sklearn.inspection.permutation_importance``: one
    seed drawn from ``random_state``, and for every group a fresh ``RandomState(seed)``
    shuffling a row index in place, once per repeat. With one column per group the
    importances are exactly sklearn's; a group's columns are moved by the same row
    permutation, so their joint distribution is kept.

    Parameters
    ----------
    predict : callable
        Rows -> positive-class probabilities, shape (n,).
    X, y : np.ndarray
        Test rows and their {0, 1} labels.
    groups : sequence of sequences of int
        Column indices shuffled together.
    scoring : {"accuracy", "logloss"}
        Higher-is-better score: accuracy at p > 0.5, or minus the log loss.
    n_repeats : int
        Shuffles per group.
    random_state : int
        Seed.

    Returns
    -------
    (float, np.ndarray)
        The unshuffled score, and the importances ``baseline - shuffled`` of shape
        (n_groups, n_repeats).
    """
    score = _scorer(scoring)
    X = np.ascontiguousarray(X, dtype=np.float64)
    baseline = score(y, predict(X))
    seed = np.random.RandomState(random_state).randint(np.iinfo(np.int32).max + 1)
    out = np.empty((len(groups), n_repeats), dtype=np.float64)
    n = X.shape[0]
    stacked = np.empty((n_repeats, *X.shape), dtype=np.float64)
    for g, cols in enumerate(groups):
        rs = np.random.RandomState(seed)
        cols_arr = np.asarray(cols, dtype=np.intp)
        shuffled = X.copy()
        index = np.arange(n)
        for r in range(n_repeats):
            rs.shuffle(index)
            shuffled[:, cols_arr] = shuffled[np.ix_(index, cols_arr)]
            stacked[r] = shuffled
        # one call scores every repeat (fewer calls; a threaded predictor gets a big batch)
        proba = predict(stacked.reshape(n_repeats * n, -1))
        for r in range(n_repeats):
            out[g, r] = baseline - score(y, proba[r * n : (r + 1) * n])
    return baseline, out


def _scorer(scoring: str) -> Callable[[np.ndarray, np.ndarray], float]:
    from sklearn.metrics import log_loss

    if scoring == "accuracy":
        return lambda y, p: float(np.mean((p > 1.0 - p) == (y == 1)))
    if scoring == "logloss":
        return lambda y, p: -float(log_loss(y, np.column_stack([1.0 - p, p]), labels=[0, 1]))
    raise ConfigError(f"scoring must be one of {list(SCORINGS)}, was {scoring!r}")


def correlation_clusters(X: np.ndarray, max_distance: float) -> list[tuple[int, ...]]:
    """Column clusters: average-linkage clustering of ``1 - |Spearman ρ|``, cut at
    ``max_distance``; ordered by their first column. A constant column is its own cluster."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform
    from scipy.stats import rankdata

    n = X.shape[1]
    if n == 1:
        return [(0,)]
    ranks = rankdata(X, axis=0)
    ranks -= ranks.mean(axis=0)
    norms = np.sqrt((ranks**2).sum(axis=0))
    live = norms > 0  # a constant column correlates with nothing (and would divide by 0)
    rho = np.zeros((n, n))
    rho[np.ix_(live, live)] = (ranks[:, live].T @ ranks[:, live]) / np.outer(
        norms[live], norms[live]
    )
    dist = np.clip(1.0 - np.abs(rho), 0.0, 1.0)
    dist = (dist + dist.T) / 2.0
    np.fill_diagonal(dist, 0.0)
    labels = fcluster(linkage(squareform(dist), method="average"), max_distance, "distance")
    groups: dict[int, list[int]] = {}
    for col, label in enumerate(labels):
        groups.setdefault(int(label), []).append(col)
    return sorted((tuple(g) for g in groups.values()), key=lambda g: g[0])


def _fold_pass(
    problem: Problem, columns: Sequence[int], groups: Sequence[Sequence[int]], cfg: SelectionConfig
) -> tuple[list[FoldMetrics], np.ndarray]:
    """Fit each fold on ``columns``; its test metrics and per-group mean importance.

    Returns (fold metrics, importances of shape (n_folds, n_groups))."""
    from ultrathink.models.compiled import CompiledEnsemble

    X = np.ascontiguousarray(problem.X[:, list(columns)])
    y = problem.y
    fwd = problem.fwd if problem.fwd is not None else np.zeros(len(y))
    metrics, imps = [], np.zeros((len(problem.splits), len(groups)))
    for k, (train, test) in enumerate(problem.splits):
        model = problem.make_model().fit(X[train], y[train])
        proba = model.predict_proba(X[test])[:, 1]
        base = np.full(test.size, float(np.mean(y[train])))
        metrics.append(score_predictions(f"fold {k + 1}", train.size, y[test], proba, base,
                                         fwd[test], problem.rule))  # fmt: skip
        if groups:
            compiled = CompiledEnsemble.from_ensemble(model)
            _, scores = permutation_scores(
                compiled.predict_batch, X[test], y[test], groups, scoring=cfg.scoring,
                n_repeats=cfg.n_repeats, random_state=_fold_seed(cfg.seed, k),
            )  # fmt: skip
            imps[k] = scores.mean(axis=1)
    return metrics, imps


def _fold_seed(seed: int, fold: int) -> int:
    return int(np.random.SeedSequence([seed, fold]).generate_state(1)[0] >> 1)


def select_features(problem: Problem, cfg: SelectionConfig) -> Selection:
    """Run the selection ``cfg.method`` on ``problem`` (see the module docstring)."""
    names = problem.names
    n = len(names)
    clusters = correlation_clusters(problem.X, cfg.max_cluster_distance)
    multi = [c for c in clusters if len(c) > 1]
    groups = [(i,) for i in range(n)] + multi
    before, imps = _fold_pass(problem, range(n), groups, cfg)
    singles = tuple(_importance(names[i], (names[i],), imps[:, i]) for i in range(n))
    cluster_imps = []
    for number, members in enumerate(clusters, start=1):
        col = members[0] if len(members) == 1 else n + multi.index(members)
        cluster_imps.append(
            _importance(f"c{number}", tuple(names[i] for i in members), imps[:, col])
        )
    steps: list[dict[str, Any]] = []
    fallback = False
    if cfg.method == "sequential":
        kept, after, steps = _sequential(problem, cfg, singles, before)
    else:
        # a fallback never keeps a constant column: a model on it predicts the base rate
        varying = {names[i] for i in np.flatnonzero(np.ptp(problem.X, axis=0) > 0)} or set(names)
        if cfg.method == "clustered":
            chosen, fallback = _keep_clustered(cluster_imps, singles, cfg.min_t, varying)
        else:
            chosen, fallback = _keep_mda(singles, cfg.min_t, varying)
        kept = tuple(name for name in names if name in chosen)
        after, _ = _fold_pass(problem, [names.index(k) for k in kept], [], cfg)
    return Selection(
        cfg, names, kept, singles, tuple(cluster_imps), tuple(before), tuple(after),
        fallback, tuple(steps),
    )  # fmt: skip


def _importance(label: str, members: tuple[str, ...], per_fold: np.ndarray) -> Importance:
    return Importance(label, members, tuple(float(v) for v in per_fold))


def _ranked(items: Sequence[Importance]) -> list[Importance]:
    # highest mean first; ties keep the column order (sorted is stable)
    return sorted(items, key=lambda imp: -imp.mean)


def _keep_clustered(
    clusters: Sequence[Importance],
    singles: Sequence[Importance],
    min_t: float,
    varying: set[str],
) -> tuple[set[str], bool]:
    by_name = {imp.label: imp for imp in singles}
    chosen = [c for c in clusters if c.is_significant(min_t)]
    if not chosen:  # keep the best varying member of the best-ranked cluster
        usable = [c for c in clusters if varying & set(c.members)]
        best = _ranked(usable)[0]
        return {_ranked([by_name[m] for m in best.members if m in varying])[0].label}, True
    kept: set[str] = set()
    for cluster in chosen:
        members = _ranked([by_name[m] for m in cluster.members])
        kept.add(members[0].label)
        kept |= {m.label for m in members if m.is_significant(min_t)}
    return kept, False


def _keep_mda(
    singles: Sequence[Importance], min_t: float, varying: set[str]
) -> tuple[set[str], bool]:
    kept = {imp.label for imp in singles if imp.is_significant(min_t)}
    if kept:
        return kept, False
    return {_ranked([s for s in singles if s.label in varying])[0].label}, True


def _sequential(
    problem: Problem,
    cfg: SelectionConfig,
    singles: Sequence[Importance],
    before: Sequence[FoldMetrics],
) -> tuple[tuple[str, ...], list[FoldMetrics], list[dict[str, Any]]]:
    """Backward elimination: drop the least important, refit, re-rank; stop before the
    first drop that loses more than ``max_loss_se`` fold s.e. of the score."""
    metric, sign = _METRIC[cfg.scoring], (1.0 if cfg.scoring == "accuracy" else -1.0)
    start = [getattr(f, metric) for f in before]
    bound = cfg.max_loss_se * fold_se(start)
    current, ranked, after = list(problem.names), list(singles), list(before)
    steps: list[dict[str, Any]] = []
    while len(current) > 1:
        drop = min(ranked, key=lambda imp: imp.mean).label  # first of equal minima
        trial = [n for n in current if n != drop]
        columns = [problem.names.index(n) for n in trial]
        metrics, imps = _fold_pass(problem, columns, [(i,) for i in range(len(trial))], cfg)
        score = float(np.mean([getattr(f, metric) for f in metrics]))
        loss = sign * (float(np.mean(start)) - score)
        stop = loss > bound
        steps.append({"drop": drop, "n_features": len(trial), "loss": loss, "stopped": stop})
        if stop:
            break
        current, after = trial, metrics
        ranked = [_importance(nm, (nm,), imps[:, i]) for i, nm in enumerate(trial)]
    return tuple(current), after, steps
