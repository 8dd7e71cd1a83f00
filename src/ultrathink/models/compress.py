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

Sizes are ``len(pickle.dumps(model))``: the bytes ``ModelRegistry.save`` writes. The search
ranks candidates by an estimated size and evaluates tree counts as prefixes of one fit per
fold, with exactly the predictions of a fit at that count (``compress_search``).

The test folds both guard the levers and report the result, so the reported AUC of a model
chosen among several is slightly optimistic; the choices that have a validation criterion
(the best iteration) take it from the training rows.

This module holds the entry points, ``compress`` and ``register``, and re-exports the rest of
the public API; the work is in ``compress_recipe`` (recipes, member fits, distillation),
``compress_search`` (the levers on the purged folds) and ``compress_report`` (the report
rows, speed, budget and the final fit).
"""

from __future__ import annotations

import json
from typing import Any

from ultrathink.errors import ConfigError
from ultrathink.models.compress_recipe import Recipe, fit_recipe, version_of
from ultrathink.models.compress_report import (
    Compression,
    LeverRow,
    assemble,
    json_default,
    measure_speed,
)
from ultrathink.models.compress_search import Search
from ultrathink.models.pipeline import TrainingSet, oos_files

__all__ = [
    "Compression",
    "LeverRow",
    "Recipe",
    "compress",
    "fit_recipe",
    "measure_speed",
    "register",
]

_LINEAGE_BUDGET = ("bytes_before", "bytes_after", "smaller_pct", "auc_before", "auc_after",
                   "auc_loss_pct")  # fmt: skip


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
    search = Search(ts, float(max_auc_loss_pct))
    outcomes = search.run()
    if not any(o.status == "applied" for o in outcomes):
        statuses = ", ".join(f"{o.lever} {o.status}" for o in outcomes)
        raise ConfigError(
            f"no lever shrinks {version_of(ts)} within {max_auc_loss_pct:g} % of its "
            f"out-of-sample AUC {search.baseline.auc:.4f} ({statuses}); nothing registered. "
            "Allow more loss with --max-auc-loss-pct if levers were rejected"
        )
    return assemble(search, outcomes, speed)


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
            extra=json.loads(json.dumps(extra, default=json_default)),
            files=oos_files(result.report),  # the compressed model's own predictions
        )
    )
