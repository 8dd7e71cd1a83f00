"""``ultrathink optimize model``: tune the ensemble on the purged walk-forward folds of ``train``.

A trial is one set of ensemble hyperparameters: each member's main knobs, the three voting
weights and, when the Sharpe ratio is an objective, the decision threshold. It is fitted
fold by fold on the same purged walk-forward splits ``ultrathink train`` uses, and scored on
each fold's test rows (log loss by default; AUC, accuracy or the threshold strategy's Sharpe
on request). The running mean is reported after every fold, so a pruner stops a poor trial
after its first folds and the study saves the fits it would have wasted. With
``--parallel-folds N`` a trial's folds are fitted at once and reported in the same order
(``folds.py``): the same results, but a pruned trial has paid for all its folds.

Fold scores are out of sample for each fit, but choosing the best of many trials on them is
itself a fit. The report therefore also gives:

- a nested walk-forward: for fold k, the trial best on folds 1..k-1 is chosen and its score
  on fold k is what the choice earned;
- the Deflated Sharpe Ratio of the winner and the PBO of all completed trials, on the
  returns of the threshold strategy over the out-of-sample rows, one every ``horizon`` rows
  so that they do not overlap.

The winner is trained on the full range by ``pipeline.train`` and registered as a new
version with its lineage (study, trial, parameters, parent version, data hash). It is not
promoted.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ultrathink.errors import ConfigError, UltrathinkError
from ultrathink.optimization import study as studies
from ultrathink.optimization.folds import FoldRunner, check_parallel_folds, make_runner
from ultrathink.optimization.ray_workers import worker_id
from ultrathink.optimization.space import SearchSpace, dimension_from_spec, parse_dimension
from ultrathink.optimization.trials import (
    ProgressHook,
    StudyOutcome,
    TrialRejected,
    measured,
    pack_returns,
    run_trials,
    summarize,
)

#: objective -> (direction, FoldMetrics attribute)
MODEL_OBJECTIVES: dict[str, tuple[str, str]] = {
    "logloss": ("minimize", "log_loss"),
    "auc": ("maximize", "auc"),
    "accuracy": ("maximize", "accuracy"),
    "sharpe": ("maximize", "sharpe"),
}

#: the default space per member; a member that does not vote is not searched
MEMBER_SPACE: dict[str, dict[str, str]] = {
    "gbm": {
        "gbm_n_estimators": "int:25:400:log",
        "gbm_learning_rate": "float:0.01:0.3:log",
        "gbm_num_leaves": "int:4:64:log",
        "gbm_min_child_samples": "int:10:300:log",
    },
    "forest": {
        "forest_n_estimators": "int:25:300:log",
        "forest_max_depth": "int:2:12",
        "forest_min_samples_leaf": "int:10:300:log",
    },
    "linear": {"logit_C": "float:0.001:10:log"},
}
WEIGHT_SPEC = "float:0:1"
THRESHOLD_SPEC = "float:0.5:0.7"
MEMBERS = ("gbm", "forest", "linear")


@dataclass(frozen=True)
class ModelStudySpec:
    """What ``optimize model`` was asked."""

    data: str | None = None  # None: the parent's recorded source, else sp500
    symbol: str | None = None
    start: str | None = None
    end: str | None = None
    horizon: int = 5
    dead_zone_bps: float = 0.0
    n_folds: int = 5
    embargo: int = 0
    features: tuple[str, ...] | None = None
    members: tuple[str, ...] = MEMBERS
    space_items: tuple[str, ...] = ()
    fixed: dict[str, str] = field(default_factory=dict)
    objectives: tuple[str, ...] = ("logloss",)
    long_threshold: float = 0.55
    parent: str | None = None
    registry: str | None = None
    register: bool = True
    sampler: str = "tpe"
    pruner: str = "median"
    n_trials: int = 50
    timeout_s: float | None = None
    seed: int | None = None
    study_name: str | None = None
    storage: str | None = None
    db: str | None = None
    n_jobs: int = 1
    ray: str | None = None  # a Ray cluster's address: workers run there
    parallel_folds: int = 1  # > 1: a trial's folds fitted at once (folds.py)


def parse_model_objectives(text: str) -> tuple[str, ...]:
    """``logloss`` or ``logloss,sharpe`` → a tuple of known, distinct objectives."""
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    if not names:
        raise ConfigError(f"--objective is empty; use {', '.join(MODEL_OBJECTIVES)}")
    for name in names:
        if name not in MODEL_OBJECTIVES:
            raise ConfigError(
                f"--objective {name!r}: a model study scores {', '.join(MODEL_OBJECTIVES)}"
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"--objective {text!r} names a metric twice")
    return names


def model_space(spec: ModelStudySpec) -> tuple[SearchSpace, dict[str, Any]]:
    """(the searched space, the fixed values): the default for the voting members, with
    ``--space`` replacing or adding dimensions and ``--param`` fixing them."""
    from ultrathink.models.ensemble import EnsembleClassifier

    unknown = [m for m in spec.members if m not in MEMBERS]
    if unknown or not spec.members:
        raise ConfigError(
            f"--members must be a non-empty subset of {','.join(MEMBERS)}, had {unknown}"
        )
    known = set(EnsembleClassifier().get_params()) - {"weights"}
    known |= {f"weight_{m}" for m in MEMBERS} | {"long_threshold"}
    dims = {}
    for member in spec.members:
        for name, text in MEMBER_SPACE[member].items():
            dims[name] = dimension_from_spec(name, text)
        if len(spec.members) > 1:
            dims[f"weight_{member}"] = dimension_from_spec(f"weight_{member}", WEIGHT_SPEC)
    if "sharpe" in spec.objectives:
        dims["long_threshold"] = dimension_from_spec("long_threshold", THRESHOLD_SPEC)
    for item in spec.space_items:
        dim = parse_dimension(item)
        dims[dim.name] = dim
    fixed = {key: _typed(value) for key, value in spec.fixed.items()}
    for name in [*dims, *fixed]:
        if name not in known:
            raise ConfigError(
                f"{name}: the ensemble has no parameter {name!r} (searchable: "
                f"{', '.join(sorted(known))})"
            )
    for name in fixed:
        if any(item.partition("=")[0].strip() == name for item in spec.space_items):
            raise ConfigError(f"{name} is both searched (--space) and fixed (--param)")
        dims.pop(name, None)
    if not dims:
        raise ConfigError("the search space is empty: every parameter is fixed by --param")
    return SearchSpace(tuple(dims.values())), fixed


def _typed(text: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return tuple(value) if isinstance(value, list) else value


def split_params(
    values: dict[str, Any], members: tuple[str, ...], default_threshold: float
) -> tuple[dict[str, Any], float]:
    """A trial's values → (``EnsembleClassifier`` parameters with ``weights``, threshold)."""
    params = dict(values)
    threshold = float(params.pop("long_threshold", default_threshold))
    weights = tuple(float(params.pop(f"weight_{m}", 1.0 if m in members else 0.0)) for m in MEMBERS)
    if not any(w > 0 for w in weights):
        raise TrialRejected("rejected: every voting weight is 0")
    params["weights"] = weights
    return params, threshold


@dataclass
class _Prepared:
    study: Any
    objective: Any
    resumed: bool
    n_folds: int
    data: Any
    config: Any
    fixed: dict[str, Any]
    parent: str | None
    registry: Path
    close: Callable[[], None]  # stops the fold workers (folds.py)


def run_model_study(spec: ModelStudySpec, on_trial: ProgressHook | None = None) -> StudyOutcome:
    """Run (or continue) the model study ``spec`` describes; register its winner."""
    studies.check_run_options(spec.n_trials, spec.timeout_s, spec.n_jobs)
    check_parallel_folds(spec.parallel_folds, spec.n_jobs, spec.ray)
    spec = _with_source(studies.with_storage(spec))
    prepared = _prepare(spec)
    study = prepared.study
    done = studies.finished(study)
    t0 = time.perf_counter()
    try:
        run_trials(
            study, prepared.objective, n_total=spec.n_trials, timeout_s=spec.timeout_s,
            on_trial=on_trial, n_jobs=spec.n_jobs, prepare=prepare_worker, spec=spec,
            ray_address=spec.ray,
        )  # fmt: skip
    finally:
        prepared.close()
    outcome = summarize(study, list(spec.objectives), windows_count=prepared.n_folds - 1)
    outcome.kind = "model"
    assert spec.storage is not None
    outcome.storage = studies.redact(spec.storage)
    outcome.storage_url = spec.storage
    outcome.new_trials = studies.finished(study) - done
    outcome.resumed = prepared.resumed
    outcome.elapsed_s = time.perf_counter() - t0
    outcome.reproducible = spec.n_jobs == 1 and spec.ray is None and spec.seed is not None
    outcome.n_jobs = spec.n_jobs
    if spec.register and outcome.best:
        outcome.registered = _register_winner(study, spec, prepared, outcome)
    return outcome


def _with_source(spec: ModelStudySpec) -> ModelStudySpec:
    """Without --data, the study tunes on the rows its parent was trained on (the source
    the parent recorded), else on sp500."""
    import dataclasses

    from ultrathink import services

    if spec.data is not None:
        return spec
    parent = _parent(services.registry_root(spec.registry), spec.parent)
    source: dict[str, Any] = {}
    if parent is not None:
        info = services.model_registry(services.registry_root(spec.registry)).show(parent)
        source = dict((info.extra or {}).get("source") or {})
    return dataclasses.replace(
        spec,
        data=source.get("data") or "sp500",
        start=spec.start or source.get("start"),
        end=spec.end or source.get("end"),
        symbol=spec.symbol or source.get("symbol"),
    )


def prepare_worker(spec: ModelStudySpec) -> tuple[Any, Any]:
    """The study and objective of ``spec`` (for a worker process of a parallel study)."""
    prepared = _prepare(spec)
    return prepared.study, prepared.objective


def _prepare(spec: ModelStudySpec) -> _Prepared:
    from ultrathink import services
    from ultrathink.features.validation import purged_walk_forward
    from ultrathink.models.ensemble import EnsembleClassifier
    from ultrathink.models.metrics import StrategyRule, score_predictions
    from ultrathink.models.pipeline import TrainConfig, training_rows

    space, fixed = model_space(spec)
    registry = services.registry_root(spec.registry)
    parent = _parent(registry, spec.parent)
    config = _train_config(spec)
    data = services.load_source(spec.data or "sp500", spec.start, spec.end, spec.symbol)
    X, y, fwd, _, _ = training_rows(data, TrainConfig(**config))
    splits = purged_walk_forward(len(X), spec.n_folds, spec.horizon, spec.embargo)
    ppy = _periods_per_year(data)
    directions = [MODEL_OBJECTIVES[o][0] for o in spec.objectives]
    attrs = [MODEL_OBJECTIVES[o][1] for o in spec.objectives]
    assert spec.storage is not None
    storage = studies.make_storage(spec.storage)
    name = spec.study_name or f"model-{data.name}"
    identity = {
        "kind": "model",
        "data": data.name,
        "data_sha256": data.sha256(),
        "symbol": data.symbols[0],
        "space": space.canonical(),
        "fixed": {k: repr(v) for k, v in sorted(fixed.items())},
        "objectives": list(spec.objectives),
        "folds": f"purged:{spec.n_folds}:horizon={spec.horizon}:embargo={spec.embargo}",
        "train": {k: v for k, v in config.items() if k != "model_params"},
    }
    studies.silence_optuna()
    sampler = studies.make_sampler(
        spec.sampler,
        spec.seed,
        space,
        len(directions),
        parallel=spec.n_jobs > 1 or spec.ray is not None,
    )
    pruner = studies.make_pruner(spec.pruner, len(splits))
    study, resumed = studies.open_study(storage, name, directions, sampler, pruner, identity)
    studies.fail_stale(study)
    every = np.arange(0, len(X), spec.horizon)  # rows whose forward returns do not overlap
    keep = np.zeros(len(X), dtype=bool)
    keep[every] = True

    prune = spec.pruner != "none" and len(directions) == 1
    # made at the first trial: with --ray, the command connects to Ray after preparing
    runners: list[FoldRunner] = []

    def scored(
        trial: Any, values: dict[str, Any], out: dict[str, Any]
    ) -> float | tuple[float, ...]:
        import optuna

        try:
            params, threshold = split_params(values, spec.members, spec.long_threshold)
            EnsembleClassifier(**params)._check_params()
        except UltrathinkError as exc:
            trial.set_user_attr("fail_reason", f"rejected: {exc}")
            raise TrialRejected(str(exc)) from None
        rule = StrategyRule(threshold, None, ppy, spec.horizon)
        folds: list[dict[str, float]] = []
        returns: list[np.ndarray] = []
        if not runners:
            runners.append(make_runner(spec.parallel_folds, X, y))
        predictions = runners[0].predictions(params, splits)
        try:  # in fold order whatever the runner, so the pruner sees the same sequence
            for k, ((train, test), proba) in enumerate(zip(splits, predictions, strict=True)):
                base = np.full(test.size, float(np.mean(y[train])))
                scored = score_predictions(f"fold {k + 1}", train.size, y[test], proba, base,
                                           fwd[test], rule)  # fmt: skip
                pairs = zip(spec.objectives, attrs, strict=True)
                folds.append({o: float(getattr(scored, a)) for o, a in pairs})
                sel = keep[test]
                returns.append(rule.positions(proba[sel]) * fwd[test][sel])
                if prune:
                    trial.report(float(np.mean([f[spec.objectives[0]] for f in folds])), k)
                    if trial.should_prune():
                        raise optuna.TrialPruned()
        finally:
            predictions.close()  # a pruned or failed trial cancels its queued folds
        means = []
        for o in spec.objectives:
            scores = np.array([f[o] for f in folds])
            if not np.all(np.isfinite(scores)):
                reason = f"rejected: {o} is undefined on a fold (one class only)"
                trial.set_user_attr("fail_reason", reason)
                raise TrialRejected(reason)
            means.append(float(scores.mean()))
        out["folds"] = folds
        out["worker"] = worker_id()
        out["windows"] = _nested(folds, spec.objectives)
        out["returns"] = pack_returns(np.concatenate(returns))
        out["fold_se"] = {
            o: float(np.std([f[o] for f in folds], ddof=1) / math.sqrt(len(folds)))
            for o in spec.objectives
        }
        return means[0] if len(means) == 1 else tuple(means)

    def close() -> None:
        while runners:
            runners.pop().close()

    objective = measured(lambda trial: {**fixed, **space.suggest(trial)}, scored)
    return _Prepared(
        study, objective, resumed, len(splits), data, config, fixed, parent, registry, close
    )


def _nested(folds: list[dict[str, float]], objectives: tuple[str, ...]) -> list[dict[str, Any]]:
    """Fold k (from 2): "in sample" is the mean of folds 1..k-1, "out of sample" fold k."""
    out = []
    for k in range(1, len(folds)):
        out.append(
            {
                "label": k + 1,
                "is": {o: float(np.mean([f[o] for f in folds[:k]])) for o in objectives},
                "oos": {o: folds[k][o] for o in objectives},
            }
        )
    return out


def _train_config(spec: ModelStudySpec) -> dict[str, Any]:
    from pydantic import ValidationError

    from ultrathink.models.pipeline import TrainConfig

    config: dict[str, Any] = {
        "horizon": spec.horizon,
        "dead_zone_bps": spec.dead_zone_bps,
        "n_folds": spec.n_folds,
        "embargo": spec.embargo,
        "members": spec.members,
        "long_threshold": spec.long_threshold,
    }
    if spec.features:
        config["features"] = spec.features
    try:
        TrainConfig(**config)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{key}: {err['msg'].lower()}, was {err.get('input')!r}") from None
    return config


def _parent(registry: Path, version: str | None) -> str | None:
    """The parent version, verified (default: the production version, if any)."""
    from ultrathink import services

    reg = services.model_registry(registry)
    chosen = version
    if chosen is None or chosen == "production":
        chosen = reg.production()
        if chosen is None:
            if version == "production":
                raise ConfigError("--parent production: no version is in production")
            return None
    reg.verify(chosen)  # a missing version or a hash mismatch is a clear error
    return str(chosen)


def _periods_per_year(data: Any) -> float:
    years = float(data.ts_ns[-1] - data.ts_ns[0]) / (365.25 * 86_400e9)
    return (len(data) - 1) / years if years > 0 else 252.0


def _register_winner(
    study: Any, spec: ModelStudySpec, prepared: _Prepared, outcome: StudyOutcome
) -> dict[str, Any]:
    """Train the winner on every row and register it, once per winning trial."""
    from ultrathink.models.pipeline import TrainConfig, train, write_reports
    from ultrathink.models.registry import ModelRegistry

    row = outcome.best[0]  # a Pareto front registers its first member, in trial order
    done = dict(study.user_attrs.get("registered", {}))
    registry = ModelRegistry(prepared.registry)
    known = {info.version for info in registry.list()}
    key = str(row["trial"])
    if done.get(key) in known:
        return {"version": done[key], "trial": row["trial"], "new": False}
    trial = study.trials[row["trial"]]
    values = {**prepared.fixed, **trial.params}
    params, threshold = split_params(values, spec.members, spec.long_threshold)
    config = dict(prepared.config, model_params=params, long_threshold=threshold)
    lineage = {
        "kind": "study",
        "study": study.study_name,
        "storage": outcome.storage,
        "trial": row["trial"],
        "params": dict(trial.params),
        "objective": dict(zip(spec.objectives, trial.values, strict=False)),
        "parent": prepared.parent,
        "data_sha256": prepared.data.sha256(),
    }
    source = {"data": spec.data, "start": spec.start, "end": spec.end, "symbol": spec.symbol}
    extra: dict[str, Any] = {"lineage": lineage, "source": source}
    if "long_threshold" in trial.params:
        extra["decision"] = {"entry_threshold": threshold}
    result = train(prepared.data, TrainConfig(**config), registry, extra=extra)
    write_reports(result, prepared.registry / "reports")
    done[key] = result.version
    study.set_user_attr("registered", done)
    return {"version": result.version, "trial": row["trial"], "new": True}
