"""Compress a registered ``EnsembleClassifier``: a smaller artefact, out of sample as good.

``ultrathink models compress VERSION`` rebuilds the version's exact training rows and purged
walk-forward folds (``pipeline.TrainingSet``), tries each lever below in turn on those folds
and keeps a lever only when the ensemble's out-of-sample AUC over all test rows stays within
``max_auc_loss_pct`` of the parent's (relative, measured against the parent each time, so the
levers share one budget). Every candidate is fitted per fold on the fold's training rows and
scored on its test rows, as ``training.walk_forward_report`` does; the result is fitted on
all rows and registered as a new version with its lineage. It is not promoted.

Levers, in the order they are tried (each on the model the previous ones left):

1. ``gbm_trees`` — fewer boosting rounds: the best iteration on validation (the last fifth of
   each fold's training rows, purged by the horizon; median over folds), then larger counts
   until the guard passes. Boosting overfits noisy labels, so this often gains AUC.
2. ``forest_trees`` — fewer forest trees: a bagged forest does not overfit with more trees,
   it only averages noise away, so the smallest of n/16, n/8, n/4, n/2 that passes is kept.
3. ``gbm_leaves`` / 4. ``forest_depth`` — fewer leaves per boosted tree (n/2, n/4) and
   shallower forest trees (depth - 2, depth / 2), each with its tree count chosen again.
5. ``drop_members`` — members whose removal keeps the guard, largest first (one always
   votes). A dropped member keeps its slot, weight 0, as a one-tree stub: the artefact stays
   an ``EnsembleClassifier`` whose members the compiled form, the ``ml`` strategy and the
   registry all read unchanged.
6. ``distil_forest`` — the forest (with the boosted member it votes with) distilled into one
   small LightGBM: fitted on each training row twice, as class 1 with weight ``t`` and as
   class 0 with weight ``1 - t`` (``t`` the tree members' vote), which is the cross-entropy
   with soft labels in LightGBM's own binary objective, so the student is an ordinary
   ``LGBMClassifier`` that ``CompiledEnsemble`` compiles. It takes the ``gbm`` slot; the
   forest becomes a stub. Kept only if the guard passes and the artefact shrinks.
7. ``float32_thresholds`` — measured, never applied: the compiled tables with thresholds
   rounded to float32 (forest thresholds to the largest float32 below them, which decides
   exactly as scikit-learn does). The registry stores the libraries' models, not the
   compiled tables (rebuilt at load), so the artefact does not shrink; and LightGBM compares
   float64 inputs with float64 thresholds, so inputs between a threshold and its float32
   rounding would change side and the 1e-12 parity test could not hold.

Sizes are ``len(pickle.dumps(model))``: the bytes ``ModelRegistry.save`` writes. Candidates
are ranked by an estimate (the last fold's members: LightGBM's model text, each forest
tree's pickle) and smaller candidates are tried first. Tree counts are prefixes — LightGBM
and scikit-learn forests grow the same first ``k`` trees whatever the total — so each
member is fitted once per fold at the parent's count and truncated, with exactly the
predictions a fit at ``k`` gives (a unit test checks it against ``walk_forward_report``).

The test folds both guard the levers and report the result, so the reported AUC of a model
chosen among several is slightly optimistic; the choices that have a validation criterion
(the best iteration) take it from the training rows.
"""

from __future__ import annotations

import json
import math
import pickle
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ultrathink.errors import ConfigError
from ultrathink.models.compiled import CompiledEnsemble
from ultrathink.models.compiled_kernels import THRESHOLD
from ultrathink.models.ensemble import MEMBER_NAMES, EnsembleClassifier
from ultrathink.models.metrics import StrategyRule, score_predictions
from ultrathink.models.pipeline import TrainingSet
from ultrathink.models.training import WalkForwardReport

__all__ = [
    "Compression",
    "LeverRow",
    "Recipe",
    "compress",
    "fit_recipe",
    "measure_speed",
    "register",
]

_KEYS = {
    "gbm": ("gbm_learning_rate", "gbm_num_leaves", "gbm_min_child_samples", "random_state"),
    "forest": ("forest", "forest_max_depth", "forest_min_samples_leaf", "random_state"),
    "linear": ("logit_C",),
}
_N = {"gbm": "gbm_n_estimators", "forest": "forest_n_estimators"}
_STUBS = {
    "gbm": {"gbm_n_estimators": 1, "gbm_num_leaves": 2},
    "forest": {"forest_n_estimators": 1, "forest_max_depth": 1},
    "linear": {},
}
_LINEAGE_BUDGET = ("bytes_before", "bytes_after", "smaller_pct", "auc_before", "auc_after",
                   "auc_loss_pct")  # fmt: skip
_VAL_SHARE = 5  # the last 1/5 of a fold's training rows validates the boosting rounds


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


@dataclass(frozen=True)
class LeverRow:
    """One row of the report: a lever's measured candidate (or the model before/after)."""

    lever: str
    status: str  # before | applied | rejected | n/a | measured | final
    change: str
    bytes: int | None = None
    auc: float | None = None
    log_loss: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    rows_per_s: float | None = None


@dataclass(frozen=True)
class Compression:
    """What ``compress`` found: the report rows, the compressed model and its lineage."""

    parent: str
    max_auc_loss_pct: float
    rows: list[LeverRow]
    levers: dict[str, dict[str, Any]]
    recipe: Recipe
    model: EnsembleClassifier
    report: WalkForwardReport
    budget: dict[str, Any]
    recorded_auc: float | None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (NaN becomes None)."""
        out = {
            "parent": self.parent,
            "max_auc_loss_pct": self.max_auc_loss_pct,
            "rows": [vars(row) for row in self.rows],
            "levers": self.levers,
            "params": self.recipe.params,
            "distilled": self.recipe.teacher is not None,
            "budget": self.budget,
            "recorded_auc": self.recorded_auc,
        }
        return json.loads(json.dumps(out, default=_json_default), parse_constant=lambda _: None)


@dataclass
class _Score:
    auc: float
    log_loss: float
    proba: list[np.ndarray]


@dataclass
class _Outcome:
    lever: str
    status: str
    change: str
    recipe: Recipe | None = None
    score: _Score | None = None
    record: dict[str, Any] = field(default_factory=dict)


def compress(ts: TrainingSet, *, max_auc_loss_pct: float = 0.5, speed: bool = True) -> Compression:
    """Search the levers on ``ts``'s folds and fit the compressed ensemble on all its rows.

    Parameters
    ----------
    ts : TrainingSet
        The parent version with its exact rows and folds (``services.version_training_set``).
    max_auc_loss_pct : float, default 0.5
        Largest relative loss of out-of-sample AUC against the parent, in percent.
    speed : bool, default True
        Measure compiled single-row latency and batch throughput of every row's model.

    Returns
    -------
    Compression

    Raises
    ------
    ConfigError
        When the model is not an ``EnsembleClassifier``, was distilled already, the budget is
        out of range, or no lever could be kept.
    """
    if not (isinstance(max_auc_loss_pct, int | float) and 0.0 <= max_auc_loss_pct < 100.0):
        raise ConfigError(f"--max-auc-loss-pct must be in [0, 100), was {max_auc_loss_pct!r}")
    search = _Search(ts, float(max_auc_loss_pct))
    outcomes = search.run()
    if not any(o.status == "applied" for o in outcomes):
        statuses = ", ".join(f"{o.lever} {o.status}" for o in outcomes)
        raise ConfigError(
            f"no lever shrinks {_version(ts)} within {max_auc_loss_pct:g} % of its "
            f"out-of-sample AUC {search.baseline.auc:.4f} ({statuses}); nothing registered. "
            "Allow more loss with --max-auc-loss-pct if levers were rejected"
        )
    return _assemble(search, outcomes, speed)


def fit_recipe(recipe: Recipe, X: np.ndarray, y: np.ndarray) -> EnsembleClassifier:
    """Fit the ensemble ``recipe`` describes on ``X``, ``y`` (distilling when it says so)."""
    model = EnsembleClassifier(**recipe.params).fit(X, y)
    if recipe.teacher is not None:
        teacher = EnsembleClassifier(**recipe.teacher).fit(X, y)
        members = teacher.members_
        soft = _soft_labels(
            Recipe(recipe.teacher),
            members["gbm"].predict_proba(X)[:, 1],
            members["forest"].predict_proba(X)[:, 1],
        )
        # the ensemble fits its gbm member on hard labels; the student replaces it
        model.members_["gbm"] = _fit_student(recipe.params, X, soft)
    return model


def register(result: Compression, ts: TrainingSet, registry: Any) -> str:
    """Save the compressed model as a new (not promoted) version of ``registry``."""
    info = ts.info
    extra = dict(info.extra or {})
    train_config = dict(extra.get("train_config") or {})
    train_config["model_params"] = result.recipe.params
    extra["train_config"] = train_config
    extra["lineage"] = {
        "kind": "compress",
        "parent": info.version,
        "data_sha256": info.data_hash,
        "max_auc_loss_pct": result.max_auc_loss_pct,
        "levers": result.levers,
        "budget": {k: result.budget[k] for k in _LINEAGE_BUDGET},
    }
    if result.recipe.teacher is not None:
        extra["lineage"]["teacher_params"] = result.recipe.teacher
    return str(
        registry.save(
            result.model,
            feature_names=list(info.feature_names),
            params=result.recipe.params,
            data_hash=info.data_hash,
            metrics=result.report.to_dict(),
            train_period=(int(info.train_period[0]), int(info.train_period[1])),
            extra=json.loads(json.dumps(extra, default=_json_default)),
        )
    )


# ---------------------------------------------------------------- the search


class _Search:
    """Per-fold member fits (cached by configuration) and the levers that use them."""

    def __init__(self, ts: TrainingSet, max_auc_loss_pct: float) -> None:
        self.ts = ts
        self.X, self.y = ts.X, ts.y.astype(np.int64)
        self.parent = _parent_params(ts)
        self.max_loss_pct = max_auc_loss_pct
        self._fits: dict[Any, list[Any]] = {}
        self._proba: dict[Any, list[np.ndarray]] = {}
        self._sizes: dict[Any, np.ndarray] = {}
        self.current = Recipe(self.parent)
        self.baseline = self.score(self.current)
        if not math.isfinite(self.baseline.auc):
            raise ConfigError(
                f"the out-of-sample AUC of {_version(ts)} is undefined (a class is missing "
                "from the test rows); compress a model trained on more data"
            )
        self.floor = self.baseline.auc * (1.0 - max_auc_loss_pct / 100.0)
        self.current_score = self.baseline

    def run(self) -> list[_Outcome]:
        levers = (self.gbm_trees, self.forest_trees, self.gbm_leaves, self.forest_depth,
                  self.drop_members, self.distil_forest)  # fmt: skip
        outcomes = []
        for lever in levers:
            outcome = lever()
            if outcome.status == "applied" and outcome.recipe and outcome.score:
                self.current, self.current_score = outcome.recipe, outcome.score
            outcomes.append(outcome)
        return outcomes

    # -- levers ------------------------------------------------------------------------------

    def gbm_trees(self) -> _Outcome:
        cur = self.current.params
        if not self.current.weight("gbm") or self.current.teacher:
            return _Outcome("gbm_trees", "n/a", "gbm does not vote")
        best = self.best_iteration(cur)
        n = cur["gbm_n_estimators"]
        trials = [(self._with(gbm_n_estimators=k), f"gbm {n} → {_trees(k)}")
                  for k in _ladder_up(best, n)]  # fmt: skip
        outcome = self.choose("gbm_trees", trials, f"best iteration on validation: {best}",
                              {"best_iteration": best})  # fmt: skip
        if (
            outcome.recipe
            and outcome.status == "applied"
            and _n_trees("gbm", outcome.recipe.params) > best
        ):
            outcome.change = f"{outcome.change[:-1]}; fewer lost AUC)"
        return outcome

    def forest_trees(self) -> _Outcome:
        cur = self.current.params
        if not self.current.weight("forest"):
            return _Outcome("forest_trees", "n/a", "forest does not vote")
        n = cur["forest_n_estimators"]
        trials = [(self._with(forest_n_estimators=k), f"forest {n} → {_trees(k)}")
                  for k in _ladder_down(n)]  # fmt: skip
        return self.choose("forest_trees", trials, "smallest count within budget")

    def gbm_leaves(self) -> _Outcome:
        cur = self.current.params
        if not self.current.weight("gbm") or self.current.teacher:
            return _Outcome("gbm_leaves", "n/a", "gbm does not vote")
        leaves, n_max = cur["gbm_num_leaves"], self.parent["gbm_n_estimators"]
        trials = []
        for option in sorted({max(2, leaves // 2), max(2, leaves // 4)} - {leaves}):
            variant = {**cur, "gbm_num_leaves": option, "gbm_n_estimators": n_max}
            for k in [*_ladder_up(self.best_iteration(variant), n_max), n_max]:
                recipe = self._with(gbm_num_leaves=option, gbm_n_estimators=k)
                trials.append((recipe, f"gbm {leaves} → {option} leaves, {_trees(k)}"))
        return self.choose("gbm_leaves", trials, "tree count re-chosen per leaf count")

    def forest_depth(self) -> _Outcome:
        cur = self.current.params
        if not self.current.weight("forest"):
            return _Outcome("forest_depth", "n/a", "forest does not vote")
        depth = cur["forest_max_depth"] or self._forest_depth_fitted(cur)
        n_max = self.parent["forest_n_estimators"]
        trials = []
        for option in sorted({max(1, depth - 2), max(1, depth // 2)} - {depth}):
            for k in [*_ladder_down(n_max), n_max]:
                recipe = self._with(forest_max_depth=option, forest_n_estimators=k)
                trials.append((recipe, f"forest depth {depth} → {option}, {_trees(k)}"))
        return self.choose("forest_depth", trials, "tree count re-chosen per depth")

    def drop_members(self) -> _Outcome:
        recipe = Recipe(_stub_silent(self.current.params), self.current.teacher)
        dropped: list[str] = []
        tried: dict[str, dict[str, float]] = {}
        voting = [m for m in MEMBER_NAMES if recipe.weight(m) > 0]
        first: tuple[Recipe, _Score] | None = None
        for name in sorted(voting, key=lambda m: -self.member_bytes(m, recipe)):
            if sum(recipe.weight(m) > 0 for m in MEMBER_NAMES) < 2:
                break
            trial = _drop(recipe, name)
            score = self.score(trial)
            first = first or (trial, score)
            tried[name] = {"auc": score.auc, "log_loss": score.log_loss}
            if score.auc >= self.floor:
                recipe, dropped = trial, [*dropped, name]
        record = {"dropped": dropped, "tried": tried}
        if dropped or recipe.key() != self.current.key():
            change = f"dropped {', '.join(dropped)}" if dropped else "stubbed silent members"
            return _Outcome("drop_members", "applied", change, recipe, self.score(recipe), record)
        if first is None:
            return _Outcome("drop_members", "n/a", "only one member votes", record=record)
        return _Outcome("drop_members", "rejected", self._why(first[1], "each removal"),
                        first[0], first[1], record)  # fmt: skip

    def distil_forest(self) -> _Outcome:
        cur = self.current
        if not cur.weight("forest"):
            return _Outcome("distil_forest", "n/a", "forest does not vote")
        leaves = (cur.params if cur.weight("gbm") else self.parent)["gbm_num_leaves"]
        n_max = self.parent["gbm_n_estimators"]
        w = cur.params["weights"]
        weights = (w[0] + w[1], 0.0, w[2])
        trials = []
        for k in [*_ladder_down(n_max), n_max]:
            params = {**cur.params, **_STUBS["forest"], "weights": weights,
                      "gbm_n_estimators": k, "gbm_num_leaves": leaves}  # fmt: skip
            change = f"trees → one LightGBM of {_trees(k)} × {leaves} leaves"
            trials.append((Recipe(params, cur.params), change))
        return self.choose("distil_forest", trials, "student of the tree members' vote")

    # -- choosing ----------------------------------------------------------------------------

    def choose(
        self,
        lever: str,
        trials: list[tuple[Recipe, str]],
        note: str,
        record: dict[str, Any] | None = None,
    ) -> _Outcome:
        record = dict(record or {})
        current_bytes = self.est_bytes(self.current)
        smaller = [(self.est_bytes(r), i, r, c) for i, (r, c) in enumerate(trials)]
        smaller = sorted(t for t in smaller if t[0] < current_bytes)
        if not smaller:
            return _Outcome(lever, "n/a", f"no smaller candidate ({note})", record=record)
        first: tuple[Recipe, str, _Score] | None = None
        for _, _, recipe, change in smaller:
            score = self.score(recipe)
            first = first or (recipe, change, score)
            if score.auc >= self.floor:
                record.update(_changed(self.current.params, recipe.params))
                return _Outcome(lever, "applied", f"{change} ({note})", recipe, score, record)
        assert first is not None
        what = f"none of {len(smaller)} candidates within budget; smallest, {first[1]}"
        return _Outcome(lever, "rejected", self._why(first[2], what), first[0], first[2], record)

    def _why(self, score: _Score, what: str) -> str:
        loss = 100.0 * (self.baseline.auc - score.auc) / self.baseline.auc
        return (
            f"{what}: AUC {score.auc:.4f} is {loss:.2f} % below {self.baseline.auc:.4f} "
            f"(budget {self.max_loss_pct:g} %)"
        )

    def _with(self, **changes: Any) -> Recipe:
        return Recipe({**self.current.params, **changes}, self.current.teacher)

    # -- scores ------------------------------------------------------------------------------

    def score(self, recipe: Recipe) -> _Score:
        w = np.asarray(recipe.params["weights"], dtype=np.float64)
        w = w / w.sum()  # as EnsembleClassifier normalises them
        folds = []
        for fold in range(len(self.ts.splits)):
            p1 = np.zeros(self.ts.splits[fold][1].size, dtype=np.float64)
            for weight, name in zip(w, MEMBER_NAMES, strict=True):
                if weight > 0.0:
                    p1 += weight * self.member_proba(name, recipe)[fold]
            folds.append(np.clip(p1, 0.0, 1.0))
        overall = _walk_forward(self.ts, folds).overall
        return _Score(overall.auc, overall.log_loss, folds)

    def member_proba(self, name: str, recipe: Recipe) -> list[np.ndarray]:
        key = (name, self._variant(name, recipe), _n_trees(name, recipe.params))
        if key not in self._proba:
            fits = self.fitted(name, recipe)
            k = key[2]
            self._proba[key] = [
                _proba(fit, self.X[test], k)
                for fit, (_, test) in zip(fits, self.ts.splits, strict=True)
            ]
        return self._proba[key]

    def fitted(self, name: str, recipe: Recipe) -> list[Any]:
        # each member is fitted once per fold at the parent's tree count; counts are prefixes
        key = (name, self._variant(name, recipe))
        if key not in self._fits:
            params = {**recipe.params, **{v: self.parent[v] for v in _N.values()}}
            fits = []
            for fold, (train, _) in enumerate(self.ts.splits):
                X, y = self.X[train], self.y[train]
                if name == "gbm" and recipe.teacher is not None:
                    soft = self._teacher_vote(Recipe(recipe.teacher), fold)
                    fits.append(_fit_student(params, X, soft))
                else:
                    fits.append(_fit_member(name, params, X, y))
            self._fits[key] = fits
        return self._fits[key]

    def _teacher_vote(self, teacher: Recipe, fold: int) -> np.ndarray:
        train = self.ts.splits[fold][0]
        probs = [
            _proba(self.fitted(m, teacher)[fold], self.X[train], _n_trees(m, teacher.params))
            if teacher.weight(m) > 0 else np.zeros(train.size)
            for m in ("gbm", "forest")
        ]  # fmt: skip
        return _soft_labels(teacher, probs[0], probs[1])

    def _variant(self, name: str, recipe: Recipe) -> str:
        values = [recipe.params[k] for k in _KEYS[name]]
        teacher = Recipe(recipe.teacher).key() if name == "gbm" and recipe.teacher else None
        return json.dumps([values, teacher], default=str)

    def best_iteration(self, params: dict[str, Any]) -> int:
        """Median over folds of the boosting round with the lowest validation log loss."""
        full = {**params, "gbm_n_estimators": self.parent["gbm_n_estimators"]}
        best = []
        for train, _ in self.ts.splits:
            n_val = train.size // _VAL_SHARE
            fit_rows = train[: train.size - n_val - (self.ts.config.horizon + 1)]
            val_rows = train[train.size - n_val :]
            if fit_rows.size < 20 or np.unique(self.y[fit_rows]).size < 2 or n_val < 10:
                continue
            gbm = _unfitted("gbm", full).fit(self.X[fit_rows], self.y[fit_rows])
            losses = _staged_log_loss(gbm.booster_, self.X[val_rows], self.y[val_rows])
            best.append(int(np.argmin(losses)) + 1)
        return int(np.median(best)) if best else int(full["gbm_n_estimators"])

    # -- sizes -------------------------------------------------------------------------------

    def est_bytes(self, recipe: Recipe) -> int:
        """Estimated artefact bytes of the voting members (the last fold's fits)."""
        return sum(self.member_bytes(m, recipe) for m in MEMBER_NAMES if recipe.weight(m) > 0)

    def member_bytes(self, name: str, recipe: Recipe) -> int:
        key = (name, self._variant(name, recipe))
        if key not in self._sizes:
            last = self.fitted(name, recipe)[-1]
            if name == "forest":
                sizes = [len(pickle.dumps(e, pickle.HIGHEST_PROTOCOL)) for e in last.estimators_]
            elif name == "gbm":
                sizes = _lgbm_tree_bytes(last.booster_.model_to_string())
            else:
                sizes = [len(pickle.dumps(last, pickle.HIGHEST_PROTOCOL))]
            self._sizes[key] = np.cumsum(sizes)
        n = _n_trees(name, recipe.params)
        return int(self._sizes[key][min(n, len(self._sizes[key])) - 1])

    def _forest_depth_fitted(self, params: dict[str, Any]) -> int:
        forest = self.fitted("forest", Recipe(params))[-1]
        return max(int(e.tree_.max_depth) for e in forest.estimators_)


# ---------------------------------------------------------------- building blocks


def _walk_forward(ts: TrainingSet, proba: list[np.ndarray]) -> WalkForwardReport:
    """The walk-forward report of per-fold test probabilities, as ``walk_forward_report``."""
    rule = StrategyRule(ts.config.long_threshold, None, ts.periods_per_year, ts.config.horizon)
    y, fwd = ts.y, ts.fwd
    folds, bases = [], []
    for number, ((train, test), p) in enumerate(zip(ts.splits, proba, strict=True), start=1):
        base = np.full(test.size, float(np.mean(y[train])))
        bases.append(base)
        folds.append(score_predictions(f"fold {number}", train.size, y[test], p, base,
                                       fwd[test], rule))  # fmt: skip
    index = np.concatenate([test for _, test in ts.splits])
    p_all = np.concatenate(proba)
    n_train = sum(f.n_train for f in folds)
    overall = score_predictions(
        "overall", n_train, y[index], p_all, np.concatenate(bases), fwd[index], rule
    )
    return WalkForwardReport(folds, overall, rule, index, p_all)


def _unfitted(name: str, params: dict[str, Any]) -> Any:
    # the ensemble builds its own members: asking it keeps every member setting identical
    return EnsembleClassifier(**params)._make_members()[name]


def _fit_member(name: str, params: dict[str, Any], X: np.ndarray, y: np.ndarray) -> Any:
    member = _unfitted(name, params).fit(X, y)
    if name == "forest":
        member.set_params(n_jobs=1)  # as EnsembleClassifier: single-threaded predictions
    return member


def _fit_student(params: dict[str, Any], X: np.ndarray, soft: np.ndarray) -> Any:
    # each row twice: class 1 weighted t, class 0 weighted 1 - t (cross-entropy on soft
    # labels); a leaf holds both copies of its rows, so min_child_samples counts them twice
    student = _unfitted("gbm", params)
    student.set_params(min_child_samples=2 * int(params["gbm_min_child_samples"]))
    n = X.shape[0]
    labels = np.concatenate([np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)])
    weights = np.concatenate([soft, 1.0 - soft])
    return student.fit(np.vstack([X, X]), labels, sample_weight=weights)


def _soft_labels(teacher: Recipe, p_gbm: np.ndarray, p_forest: np.ndarray) -> np.ndarray:
    w_gbm, w_forest = teacher.weight("gbm"), teacher.weight("forest")
    return np.clip((w_gbm * p_gbm + w_forest * p_forest) / (w_gbm + w_forest), 0.0, 1.0)


def _proba(member: Any, X: np.ndarray, k: int) -> np.ndarray:
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


def _staged_log_loss(booster: Any, X: np.ndarray, y: np.ndarray) -> np.ndarray:
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


def _lgbm_tree_bytes(text: str) -> list[int]:
    # LightGBM's model text lists each tree's length; the rest (header, feature importances)
    # is charged to the first tree
    line = next(x for x in text.splitlines() if x.startswith("tree_sizes="))
    sizes = [int(v) for v in line.split("=", 1)[1].split()]
    sizes[0] += len(text) - sum(sizes)
    return sizes


def _trees(k: int) -> str:
    return f"{k} tree" if k == 1 else f"{k} trees"


def _n_trees(name: str, params: dict[str, Any]) -> int:
    return int(params[_N[name]]) if name in _N else 0


def _ladder_up(start: int, stop: int) -> list[int]:
    # start, then x1.5 steps, below stop (the current count, which needs no trial)
    out, k = [], max(1, start)
    while k < stop:
        out.append(k)
        k = max(k + 1, math.ceil(k * 1.5))
    return out


def _ladder_down(n: int) -> list[int]:
    return sorted({max(1, n // 2**j) for j in range(1, 5)} - {n})


def _drop(recipe: Recipe, name: str) -> Recipe:
    weights = list(recipe.params["weights"])
    weights[MEMBER_NAMES.index(name)] = 0.0
    params = {**recipe.params, **_STUBS[name], "weights": tuple(weights)}
    # a distilled student lives in the gbm slot: dropping it drops the distillation
    return Recipe(params, None if name == "gbm" else recipe.teacher)


def _stub_silent(params: dict[str, Any]) -> dict[str, Any]:
    # a member with weight 0 is still fitted and stored: keep it as a one-tree stub
    out = dict(params)
    for i, name in enumerate(MEMBER_NAMES):
        if float(params["weights"][i]) == 0.0:
            out.update(_STUBS[name])
    return out


def _changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {k: [before.get(k), v] for k, v in after.items() if before.get(k) != v}


def _parent_params(ts: TrainingSet) -> dict[str, Any]:
    model = ts.model
    if not isinstance(model, EnsembleClassifier):
        raise ConfigError(
            f"model {_version(ts)} is a {type(model).__name__}, not an EnsembleClassifier; "
            "compress works on the ensembles `ultrathink train` registers"
        )
    lineage = ((ts.info.extra or {}).get("lineage") or {}) if ts.info is not None else {}
    if lineage.get("kind") == "compress" and lineage.get("teacher_params"):
        raise ConfigError(
            f"model {_version(ts)} was distilled, which its parameters alone do not "
            f"reproduce; compress its parent {lineage.get('parent')} instead"
        )
    params = model.get_params(deep=False)
    params["weights"] = tuple(float(w) for w in params["weights"])
    return params


def _version(ts: TrainingSet) -> str:
    return str(getattr(ts.info, "version", "the model"))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, tuple | np.ndarray):
        return list(value)
    return str(value)


# ---------------------------------------------------------------- the report


def _assemble(search: _Search, outcomes: list[_Outcome], speed: bool) -> Compression:
    ts = search.ts
    built: dict[str, EnsembleClassifier] = {}

    def build(recipe: Recipe) -> EnsembleClassifier:
        if recipe.key() not in built:
            built[recipe.key()] = fit_recipe(recipe, ts.X, ts.y)
        return built[recipe.key()]

    final = build(search.current)
    entries: list[tuple[LeverRow, Any]] = [
        (_row("before", "before", "the parent, refitted per fold", ts.model, search.baseline),
         ts.model)
    ]  # fmt: skip
    for o in outcomes:
        model = build(o.recipe) if o.recipe is not None else None
        entries.append((_row(o.lever, o.status, o.change, model, o.score), model))
    float32 = _float32_outcome(final, ts.X, search.current_score)
    entries.append((float32, None))
    entries.append((_row("final", "final", "fitted on all rows", final, search.current_score),
                    final))  # fmt: skip
    rows = _with_speed(entries, ts.X) if speed else [row for row, _ in entries]
    levers = {o.lever: _lineage_record(o) for o in outcomes}
    levers["float32_thresholds"] = {
        "applied": False,
        "status": "measured",
        "change": float32.change,
    }
    recorded = ((ts.info.metrics or {}).get("overall") or {}).get("auc") if ts.info else None
    return Compression(
        parent=_version(ts), max_auc_loss_pct=search.max_loss_pct, rows=rows, levers=levers,
        recipe=search.current, model=final, report=_walk_forward(ts, search.current_score.proba),
        budget=_budget(rows, search.max_loss_pct), recorded_auc=recorded,
    )  # fmt: skip


def _row(lever: str, status: str, change: str, model: Any, score: _Score | None) -> LeverRow:
    size = len(pickle.dumps(model, pickle.HIGHEST_PROTOCOL)) if model is not None else None
    auc = score.auc if score else None
    return LeverRow(lever, status, change, size, auc, score.log_loss if score else None)


def _lineage_record(o: _Outcome) -> dict[str, Any]:
    out: dict[str, Any] = {"applied": o.status == "applied", "status": o.status, "change": o.change}
    if o.score is not None:
        out.update(auc=o.score.auc, log_loss=o.score.log_loss)
    return {**out, **o.record}


def _float32_outcome(model: EnsembleClassifier, X: np.ndarray, score: _Score) -> LeverRow:
    compiled = CompiledEnsemble.from_ensemble(model)
    n_gbm, _ = compiled.n_trees
    first_forest = int(compiled.tree_i[0, n_gbm]) if n_gbm < compiled.tree_i.shape[1] else None
    thr = compiled.node_f[THRESHOLD].copy()
    rounded = thr.astype(np.float32).astype(np.float64)
    if first_forest is not None:  # forest: the largest float32 <= t decides as t does
        above = rounded[first_forest:] > thr[first_forest:]
        rounded[first_forest:][above] = np.nextafter(
            rounded[first_forest:][above].astype(np.float32), np.float32(-np.inf)
        )
    node_f = compiled.node_f.copy()
    node_f[THRESHOLD] = rounded
    quantised = CompiledEnsemble(compiled.node_i, node_f, compiled.tree_i, compiled.params)
    diff = np.abs(quantised.predict_batch(X) - compiled.predict_batch(X))
    tables = sum(a.nbytes for a in (compiled.node_i, compiled.node_f, compiled.tree_i))
    n_nodes = compiled.node_i.shape[1]
    change = (
        f"compiled tables {tables:,} → {tables - 4 * n_nodes:,} bytes, "
        f"{int(np.count_nonzero(diff))} of {X.shape[0]:,} rows changed (max |Δp| "
        f"{float(diff.max()):.1e}); not applied: the stored artefact would not shrink and "
        "float32 LightGBM thresholds break parity"
    )
    same = not np.any(diff)  # identical predictions: identical scores
    auc, log_loss = (score.auc, score.log_loss) if same else (None, None)
    return LeverRow("float32_thresholds", "measured", change, None, auc, log_loss)


def _with_speed(entries: list[tuple[LeverRow, Any]], X: np.ndarray) -> list[LeverRow]:
    models = [m for _, m in entries if m is not None]
    figures = dict(zip(map(id, models), measure_speed(models, X), strict=True))
    out = []
    for row, model in entries:
        if model is not None:
            p50, p99, rate = figures[id(model)]
            row = replace(row, p50_us=p50, p99_us=p99, rows_per_s=rate)
        out.append(row)
    return out


def measure_speed(
    models: list[Any], X: np.ndarray, *, n_calls: int = 3_000, n_rounds: int = 3
) -> list[tuple[float, float, float]]:
    """Compiled single-row p50/p99 (µs) and batch rows/s of each model, rounds interleaved.

    Calls run back to back (service time); the models take turns each round so that a
    noisy neighbour slows them alike. Batch: ``predict_batch`` on 32,768 rows, one thread.
    """
    compiled = [CompiledEnsemble.from_ensemble(m) for m in models]
    rows = np.ascontiguousarray(X[: min(len(X), 1024)], dtype=np.float64)
    batch = np.ascontiguousarray(np.resize(rows, (32_768, rows.shape[1])))
    samples: list[list[float]] = [[] for _ in compiled]
    rates: list[list[float]] = [[] for _ in compiled]
    clock = time.perf_counter_ns
    for c in compiled:
        c.warmup()
    for _ in range(n_rounds):
        for i, c in enumerate(compiled):
            predict = c.predict_row
            for j in range(n_calls // n_rounds):
                t0 = clock()
                predict(rows[j % rows.shape[0]])
                samples[i].append((clock() - t0) / 1e3)
            t0 = clock()
            c.predict_batch(batch)
            rates[i].append(batch.shape[0] / ((clock() - t0) / 1e9))
    return [
        (float(np.percentile(s, 50)), float(np.percentile(s, 99)), float(np.median(r)))
        for s, r in zip(samples, rates, strict=True)
    ]


def _budget(rows: list[LeverRow], max_loss_pct: float) -> dict[str, Any]:
    before, final = rows[0], rows[-1]
    assert before.bytes and final.bytes and before.auc and final.auc is not None
    smaller = 100.0 * (1.0 - final.bytes / before.bytes)
    loss = 100.0 * (before.auc - final.auc) / before.auc
    out: dict[str, Any] = {
        "bytes_before": before.bytes, "bytes_after": final.bytes, "smaller_pct": smaller,
        "size_ok": smaller >= 50.0, "auc_before": before.auc, "auc_after": final.auc,
        "auc_loss_pct": loss, "auc_ok": loss <= max_loss_pct + 1e-9,
    }  # fmt: skip
    if before.p50_us and final.p50_us and before.rows_per_s and final.rows_per_s:
        out.update(
            p50_us_before=before.p50_us, p50_us_after=final.p50_us,
            p50_ratio=final.p50_us / before.p50_us,
            rows_per_s_ratio=final.rows_per_s / before.rows_per_s,
        )  # fmt: skip
        out["latency_ok"] = out["p50_ratio"] <= 1.0 and out["rows_per_s_ratio"] >= 1.0
    return out
