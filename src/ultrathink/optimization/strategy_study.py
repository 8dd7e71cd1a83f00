"""``ultrathink optimize strategy``: tune a strategy's ``Params`` on walk-forward windows.

Each trial is one parameter set and one backtest over the whole data, with the costs and
limits of a paper session unless the options say otherwise (``services.engine_config``). Its
windows (``walkforward.py``) give an in-sample and an out-of-sample value of every metric.
The sampler sees only the in-sample value (the mean over windows); the out-of-sample values
are recorded with the trial and reported beside it, never optimised. From the same trials
x windows table the report also gives a true walk-forward: in each window the trial best
in sample is chosen, and its out-of-sample value that window is what that choice earned.

Every study ends with the overfitting statistics of its completed trials
(``overfitting.py``): the Deflated Sharpe Ratio of the winner and the PBO by CSCV over the
trials' returns.

Pruning: a trial reports its running in-sample mean after each window, so the pruner can
stop it; one backtest serves every window here, so pruning saves the study's attention
rather than compute (a model study, whose folds each train, is where it saves time).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ultrathink.errors import ConfigError, UltrathinkError
from ultrathink.optimization import study as studies
from ultrathink.optimization.ray_workers import worker_id
from ultrathink.optimization.space import SearchSpace
from ultrathink.optimization.trials import (
    ProgressHook,
    StudyOutcome,
    TrialRejected,
    measured,
    pack_returns,
    run_trials,
    summarize,
)
from ultrathink.optimization.walkforward import (
    OBJECTIVES,
    Scheme,
    bucketed_returns,
    make_windows,
    window_scores,
)


@dataclass(frozen=True)
class StrategyStudySpec:
    """What ``optimize strategy`` was asked."""

    strategy: str
    space: SearchSpace
    fixed: dict[str, str] = field(default_factory=dict)
    data: str = "sp500"
    start: str | None = None
    end: str | None = None
    config_path: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    objectives: tuple[str, ...] = ("sharpe",)
    min_trades: int = 5
    n_windows: int = 4
    scheme: Scheme = "anchored"
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


@dataclass
class _Prepared:
    study: Any
    objective: Any
    url: str
    resumed: bool
    n_windows: int


def run_strategy_study(
    spec: StrategyStudySpec, on_trial: ProgressHook | None = None
) -> StudyOutcome:
    """Run (or continue) the study ``spec`` describes up to ``spec.n_trials`` finished trials."""
    studies.check_run_options(spec.n_trials, spec.timeout_s, spec.n_jobs)
    if spec.min_trades < 0:
        raise ConfigError(f"--min-trades must be 0 or more, was {spec.min_trades}")
    spec = studies.with_storage(spec)
    prepared = _prepare(spec)
    study = prepared.study
    done = studies.finished(study)
    t0 = time.perf_counter()
    run_trials(
        study, prepared.objective, n_total=spec.n_trials, timeout_s=spec.timeout_s,
        on_trial=on_trial, n_jobs=spec.n_jobs, prepare=prepare_worker, spec=spec,
        ray_address=spec.ray,
    )  # fmt: skip
    outcome = summarize(study, list(spec.objectives), windows_count=prepared.n_windows)
    outcome.storage = studies.redact(prepared.url)
    outcome.storage_url = prepared.url
    outcome.new_trials = studies.finished(study) - done
    outcome.resumed = prepared.resumed
    outcome.elapsed_s = time.perf_counter() - t0
    outcome.reproducible = spec.n_jobs == 1 and spec.ray is None and spec.seed is not None
    outcome.n_jobs = spec.n_jobs
    winner = outcome.best[0] if len(outcome.best) == 1 else None
    if winner is not None:  # what `backtest --params-from STUDY` reruns
        study.set_user_attr(
            "winner",
            {"strategy": spec.strategy, "trial": winner["trial"],
             "params": {**spec.fixed, **winner["params"]}},
        )  # fmt: skip
    return outcome


def prepare_worker(spec: StrategyStudySpec) -> tuple[Any, Any]:
    """The study and objective of ``spec`` (for a worker process of a parallel study)."""
    prepared = _prepare(spec)
    return prepared.study, prepared.objective


def _prepare(spec: StrategyStudySpec) -> _Prepared:
    from ultrathink import services
    from ultrathink.decision.loader import resolve_strategy

    cls = resolve_strategy(spec.strategy)
    spec.space.check_against(cls.Params.model_fields, spec.fixed, f"strategy {cls.name!r}")
    cls(**spec.fixed)  # the fixed parameters alone must be valid (clear error now, not later)
    config = services.engine_config(
        realistic=True,
        config_path=spec.config_path,
        overrides=spec.overrides,
        other_tables=("space",),
    )
    data = services.slice_data(services.load(spec.data), spec.start, spec.end)
    stamps = np.unique(data.ts_ns)
    windows = make_windows(len(stamps), spec.n_windows, spec.scheme)
    is_cut_ns = int(stamps[windows[-1].is_stop])  # round trips closed before it are in sample
    directions = [OBJECTIVES[o] for o in spec.objectives]
    assert spec.storage is not None
    storage = studies.make_storage(spec.storage)
    name = spec.study_name or f"{cls.name}-{data.name}"
    identity = {
        "kind": "strategy",
        "strategy": spec.strategy,
        "data": data.name,
        "data_sha256": data.sha256(),
        "space": spec.space.canonical(),
        "fixed": dict(sorted(spec.fixed.items())),
        "objectives": list(spec.objectives),
        "windows": f"{spec.scheme}:{spec.n_windows}",
        "min_trades": spec.min_trades,
        "config": config.model_dump(mode="json"),
    }
    studies.silence_optuna()
    sampler = studies.make_sampler(
        spec.sampler,
        spec.seed,
        spec.space,
        len(directions),
        parallel=spec.n_jobs > 1 or spec.ray is not None,
    )
    pruner = studies.make_pruner(spec.pruner, len(windows))
    study, resumed = studies.open_study(storage, name, directions, sampler, pruner, identity)
    studies.fail_stale(study)

    prune = spec.pruner != "none" and len(directions) == 1

    def scored(
        trial: Any, params: dict[str, Any], out: dict[str, Any]
    ) -> float | tuple[float, ...]:
        import optuna

        try:
            strategy = cls(**params)
        except UltrathinkError as exc:
            trial.set_user_attr("fail_reason", f"rejected: {exc}")
            raise TrialRejected(str(exc)) from None
        result = services.run_strategy(strategy, data, config)
        scores = window_scores(result, windows)
        is_trades = sum(1 for t in result.trades if t.exit_ns < is_cut_ns)
        out["windows"] = scores
        out["returns"] = pack_returns(bucketed_returns(result.equity))
        out["n_trades"] = len(result.trades)
        out["worker"] = worker_id()
        if is_trades < spec.min_trades:
            reason = f"rejected: {is_trades} in-sample trades < --min-trades {spec.min_trades}"
            trial.set_user_attr("fail_reason", reason)
            raise TrialRejected(reason)
        is_values = [_mean(scores, "is", o) for o in spec.objectives]
        out["oos"] = {o: _mean(scores, "oos", o) for o in spec.objectives}
        if prune:
            for i in range(len(scores)):
                trial.report(_mean(scores[: i + 1], "is", spec.objectives[0]), i)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        return is_values[0] if len(is_values) == 1 else tuple(is_values)

    objective = measured(lambda trial: {**spec.fixed, **spec.space.suggest(trial)}, scored)
    return _Prepared(study, objective, spec.storage, resumed, len(windows))


def _mean(scores: list[dict[str, dict[str, float]]], part: str, metric: str) -> float:
    return float(np.mean([s[part][metric] for s in scores]))
