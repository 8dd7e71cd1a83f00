"""The search of ``compress``: each lever's candidates scored on the parent's purged folds.

``Search`` fits every member once per fold and configuration (cached), scores a recipe's
ensemble on all test rows as ``training.walk_forward_report`` does (``walk_forward``) and
runs the levers in order, keeping a candidate only when its AUC stays at or above the
floor the budget sets under the parent's.

Candidates are ranked by an estimate of their size (the last fold's members: LightGBM's
model text, each forest tree's pickle) and smaller candidates are tried first. Tree counts
are prefixes — LightGBM and scikit-learn forests grow the same first ``k`` trees whatever the
total — so each member is fitted once per fold at the parent's count and truncated, with
exactly the predictions a fit at ``k`` gives (a unit test checks it against
``walk_forward_report``).
"""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ultrathink.errors import ConfigError
from ultrathink.models.compress_recipe import (
    STUBS,
    TREE_PARAMS,
    Recipe,
    drop_member,
    fit_member,
    fit_student,
    lgbm_tree_bytes,
    n_trees,
    parent_params,
    prefix_proba,
    soft_labels,
    staged_log_loss,
    stub_silent,
    unfitted,
    version_of,
)
from ultrathink.models.ensemble import MEMBER_NAMES
from ultrathink.models.metrics import StrategyRule, score_predictions
from ultrathink.models.pipeline import TrainingSet
from ultrathink.models.training import WalkForwardReport

_KEYS = {
    "gbm": ("gbm_learning_rate", "gbm_num_leaves", "gbm_min_child_samples", "random_state"),
    "forest": ("forest", "forest_max_depth", "forest_min_samples_leaf", "random_state"),
    "linear": ("logit_C",),
}
_VAL_SHARE = 5  # the last 1/5 of a fold's training rows validates the boosting rounds


@dataclass
class Score:
    """A recipe's out-of-sample AUC and log loss, and its per-fold test probabilities."""

    auc: float
    log_loss: float
    proba: list[np.ndarray]


@dataclass
class Outcome:
    """What a lever did: its status, the change, and its candidate with the score."""

    lever: str
    status: str
    change: str
    recipe: Recipe | None = None
    score: Score | None = None
    record: dict[str, Any] = field(default_factory=dict)


class Search:
    """Per-fold member fits (cached by configuration) and the levers that use them."""

    def __init__(self, ts: TrainingSet, max_auc_loss_pct: float) -> None:
        self.ts = ts
        self.X, self.y = ts.X, ts.y.astype(np.int64)
        self.parent = parent_params(ts)
        self.max_loss_pct = max_auc_loss_pct
        self._fits: dict[Any, list[Any]] = {}
        self._proba: dict[Any, list[np.ndarray]] = {}
        self._sizes: dict[Any, np.ndarray] = {}
        self.current = Recipe(self.parent)
        self.baseline = self.score(self.current)
        if not math.isfinite(self.baseline.auc):
            raise ConfigError(
                f"the out-of-sample AUC of {version_of(ts)} is undefined (a class is missing "
                "from the test rows); compress a model trained on more data"
            )
        self.floor = self.baseline.auc * (1.0 - max_auc_loss_pct / 100.0)
        self.current_score = self.baseline

    def run(self) -> list[Outcome]:
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

    def gbm_trees(self) -> Outcome:
        cur = self.current.params
        if not self.current.weight("gbm") or self.current.teacher:
            return Outcome("gbm_trees", "n/a", "gbm does not vote")
        best = self.best_iteration(cur)
        n = cur["gbm_n_estimators"]
        trials = [(self._with(gbm_n_estimators=k), f"gbm {n} → {_trees(k)}")
                  for k in _ladder_up(best, n)]  # fmt: skip
        outcome = self.choose("gbm_trees", trials, f"best iteration on validation: {best}",
                              {"best_iteration": best})  # fmt: skip
        if (
            outcome.recipe
            and outcome.status == "applied"
            and n_trees("gbm", outcome.recipe.params) > best
        ):
            outcome.change = f"{outcome.change[:-1]}; fewer lost AUC)"
        return outcome

    def forest_trees(self) -> Outcome:
        cur = self.current.params
        if not self.current.weight("forest"):
            return Outcome("forest_trees", "n/a", "forest does not vote")
        n = cur["forest_n_estimators"]
        trials = [(self._with(forest_n_estimators=k), f"forest {n} → {_trees(k)}")
                  for k in _ladder_down(n)]  # fmt: skip
        return self.choose("forest_trees", trials, "smallest count within budget")

    def gbm_leaves(self) -> Outcome:
        cur = self.current.params
        if not self.current.weight("gbm") or self.current.teacher:
            return Outcome("gbm_leaves", "n/a", "gbm does not vote")
        leaves, n_max = cur["gbm_num_leaves"], self.parent["gbm_n_estimators"]
        trials = []
        for option in sorted({max(2, leaves // 2), max(2, leaves // 4)} - {leaves}):
            variant = {**cur, "gbm_num_leaves": option, "gbm_n_estimators": n_max}
            for k in [*_ladder_up(self.best_iteration(variant), n_max), n_max]:
                recipe = self._with(gbm_num_leaves=option, gbm_n_estimators=k)
                trials.append((recipe, f"gbm {leaves} → {option} leaves, {_trees(k)}"))
        return self.choose("gbm_leaves", trials, "tree count re-chosen per leaf count")

    def forest_depth(self) -> Outcome:
        cur = self.current.params
        if not self.current.weight("forest"):
            return Outcome("forest_depth", "n/a", "forest does not vote")
        depth = cur["forest_max_depth"] or self._forest_depth_fitted(cur)
        n_max = self.parent["forest_n_estimators"]
        trials = []
        for option in sorted({max(1, depth - 2), max(1, depth // 2)} - {depth}):
            for k in [*_ladder_down(n_max), n_max]:
                recipe = self._with(forest_max_depth=option, forest_n_estimators=k)
                trials.append((recipe, f"forest depth {depth} → {option}, {_trees(k)}"))
        return self.choose("forest_depth", trials, "tree count re-chosen per depth")

    def drop_members(self) -> Outcome:
        recipe = Recipe(stub_silent(self.current.params), self.current.teacher)
        dropped: list[str] = []
        tried: dict[str, dict[str, float]] = {}
        voting = [m for m in MEMBER_NAMES if recipe.weight(m) > 0]
        first: tuple[Recipe, Score] | None = None
        for name in sorted(voting, key=lambda m: -self.member_bytes(m, recipe)):
            if sum(recipe.weight(m) > 0 for m in MEMBER_NAMES) < 2:
                break
            trial = drop_member(recipe, name)
            score = self.score(trial)
            first = first or (trial, score)
            tried[name] = {"auc": score.auc, "log_loss": score.log_loss}
            if score.auc >= self.floor:
                recipe, dropped = trial, [*dropped, name]
        record = {"dropped": dropped, "tried": tried}
        if dropped or recipe.key() != self.current.key():
            change = f"dropped {', '.join(dropped)}" if dropped else "stubbed silent members"
            return Outcome("drop_members", "applied", change, recipe, self.score(recipe), record)
        if first is None:
            return Outcome("drop_members", "n/a", "only one member votes", record=record)
        return Outcome("drop_members", "rejected", self._why(first[1], "each removal"),
                        first[0], first[1], record)  # fmt: skip

    def distil_forest(self) -> Outcome:
        cur = self.current
        if not cur.weight("forest"):
            return Outcome("distil_forest", "n/a", "forest does not vote")
        leaves = (cur.params if cur.weight("gbm") else self.parent)["gbm_num_leaves"]
        n_max = self.parent["gbm_n_estimators"]
        w = cur.params["weights"]
        weights = (w[0] + w[1], 0.0, w[2])
        trials = []
        for k in [*_ladder_down(n_max), n_max]:
            params = {**cur.params, **STUBS["forest"], "weights": weights,
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
    ) -> Outcome:
        record = dict(record or {})
        current_bytes = self.est_bytes(self.current)
        smaller = [(self.est_bytes(r), i, r, c) for i, (r, c) in enumerate(trials)]
        smaller = sorted(t for t in smaller if t[0] < current_bytes)
        if not smaller:
            return Outcome(lever, "n/a", f"no smaller candidate ({note})", record=record)
        first: tuple[Recipe, str, Score] | None = None
        for _, _, recipe, change in smaller:
            score = self.score(recipe)
            first = first or (recipe, change, score)
            if score.auc >= self.floor:
                record.update(_changed(self.current.params, recipe.params))
                return Outcome(lever, "applied", f"{change} ({note})", recipe, score, record)
        assert first is not None
        what = f"none of {len(smaller)} candidates within budget; smallest, {first[1]}"
        return Outcome(lever, "rejected", self._why(first[2], what), first[0], first[2], record)

    def _why(self, score: Score, what: str) -> str:
        loss = 100.0 * (self.baseline.auc - score.auc) / self.baseline.auc
        return (
            f"{what}: AUC {score.auc:.4f} is {loss:.2f} % below {self.baseline.auc:.4f} "
            f"(budget {self.max_loss_pct:g} %)"
        )

    def _with(self, **changes: Any) -> Recipe:
        return Recipe({**self.current.params, **changes}, self.current.teacher)

    # -- scores ------------------------------------------------------------------------------

    def score(self, recipe: Recipe) -> Score:
        w = np.asarray(recipe.params["weights"], dtype=np.float64)
        w = w / w.sum()  # as EnsembleClassifier normalises them
        folds = []
        for fold in range(len(self.ts.splits)):
            p1 = np.zeros(self.ts.splits[fold][1].size, dtype=np.float64)
            for weight, name in zip(w, MEMBER_NAMES, strict=True):
                if weight > 0.0:
                    p1 += weight * self.member_proba(name, recipe)[fold]
            folds.append(np.clip(p1, 0.0, 1.0))
        overall = walk_forward(self.ts, folds).overall
        return Score(overall.auc, overall.log_loss, folds)

    def member_proba(self, name: str, recipe: Recipe) -> list[np.ndarray]:
        key = (name, self._variant(name, recipe), n_trees(name, recipe.params))
        if key not in self._proba:
            fits = self.fitted(name, recipe)
            k = key[2]
            self._proba[key] = [
                prefix_proba(fit, self.X[test], k)
                for fit, (_, test) in zip(fits, self.ts.splits, strict=True)
            ]
        return self._proba[key]

    def fitted(self, name: str, recipe: Recipe) -> list[Any]:
        # each member is fitted once per fold at the parent's tree count; counts are prefixes
        key = (name, self._variant(name, recipe))
        if key not in self._fits:
            params = {**recipe.params, **{v: self.parent[v] for v in TREE_PARAMS.values()}}
            fits = []
            for fold, (train, _) in enumerate(self.ts.splits):
                X, y = self.X[train], self.y[train]
                if name == "gbm" and recipe.teacher is not None:
                    soft = self._teacher_vote(Recipe(recipe.teacher), fold)
                    fits.append(fit_student(params, X, soft))
                else:
                    fits.append(fit_member(name, params, X, y))
            self._fits[key] = fits
        return self._fits[key]

    def _teacher_vote(self, teacher: Recipe, fold: int) -> np.ndarray:
        train = self.ts.splits[fold][0]
        probs = [
            prefix_proba(self.fitted(m, teacher)[fold], self.X[train], n_trees(m, teacher.params))
            if teacher.weight(m) > 0 else np.zeros(train.size)
            for m in ("gbm", "forest")
        ]  # fmt: skip
        return soft_labels(teacher, probs[0], probs[1])

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
            gbm = unfitted("gbm", full).fit(self.X[fit_rows], self.y[fit_rows])
            losses = staged_log_loss(gbm.booster_, self.X[val_rows], self.y[val_rows])
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
                sizes = lgbm_tree_bytes(last.booster_.model_to_string())
            else:
                sizes = [len(pickle.dumps(last, pickle.HIGHEST_PROTOCOL))]
            self._sizes[key] = np.cumsum(sizes)
        n = n_trees(name, recipe.params)
        return int(self._sizes[key][min(n, len(self._sizes[key])) - 1])

    def _forest_depth_fitted(self, params: dict[str, Any]) -> int:
        forest = self.fitted("forest", Recipe(params))[-1]
        return max(int(e.tree_.max_depth) for e in forest.estimators_)


def walk_forward(ts: TrainingSet, proba: list[np.ndarray]) -> WalkForwardReport:
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


def _trees(k: int) -> str:
    return f"{k} tree" if k == 1 else f"{k} trees"


def _ladder_up(start: int, stop: int) -> list[int]:
    # start, then x1.5 steps, below stop (the current count, which needs no trial)
    out, k = [], max(1, start)
    while k < stop:
        out.append(k)
        k = max(k + 1, math.ceil(k * 1.5))
    return out


def _ladder_down(n: int) -> list[int]:
    return sorted({max(1, n // 2**j) for j in range(1, 5)} - {n})


def _changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {k: [before.get(k), v] for k, v in after.items() if before.get(k) != v}
