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

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ultrathink.errors import ConfigError, UltrathinkError
from ultrathink.optimization import overfitting
from ultrathink.optimization import study as studies
from ultrathink.optimization.space import SearchSpace
from ultrathink.optimization.walkforward import (
    OBJECTIVES,
    Scheme,
    bucketed_returns,
    make_windows,
    window_scores,
)


class TrialRejected(UltrathinkError):
    """A trial whose parameters cannot be scored (too few trades, invalid combination)."""


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


@dataclass
class StudyOutcome:
    """A finished (or stopped) study, ready to print or serialise."""

    study_name: str
    storage: str
    directions: list[str]
    objectives: list[str]
    counts: dict[str, int]
    new_trials: int
    resumed: bool
    elapsed_s: float
    best: list[dict[str, Any]]  # the winner, or the Pareto front
    walk_forward: list[dict[str, Any]]
    dsr: dict[str, Any] | None
    pbo: dict[str, Any] | None
    warnings: list[str]
    reproducible: bool
    pbo_detail: Any = None

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out.pop("pbo_detail")
        return out


ProgressHook = Callable[[Any, Any], None]


def run_strategy_study(
    spec: StrategyStudySpec, on_trial: ProgressHook | None = None
) -> StudyOutcome:
    """Run (or continue) the study ``spec`` describes up to ``spec.n_trials`` finished trials."""
    from ultrathink import services
    from ultrathink.decision.loader import resolve_strategy

    if spec.n_trials < 1:
        raise ConfigError(f"--n-trials must be at least 1, was {spec.n_trials}")
    if spec.min_trades < 0:
        raise ConfigError(f"--min-trades must be 0 or more, was {spec.min_trades}")
    if spec.timeout_s is not None and not spec.timeout_s > 0:
        raise ConfigError(f"--timeout must be positive, was {spec.timeout_s}")
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

    db = services.resolve_db(spec.db)
    url = spec.storage or studies.default_storage(db)
    storage = studies.make_storage(url)
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
    sampler = studies.make_sampler(spec.sampler, spec.seed, spec.space, len(directions))
    pruner = studies.make_pruner(spec.pruner, len(windows))
    study, resumed = studies.open_study(storage, name, directions, sampler, pruner, identity)
    studies.fail_stale(study)

    def objective(trial: Any) -> float | tuple[float, ...]:
        import optuna

        params = {**spec.fixed, **spec.space.suggest(trial)}
        try:
            strategy = cls(**params)
        except UltrathinkError as exc:
            trial.set_user_attr("fail_reason", f"rejected: {exc}")
            raise TrialRejected(str(exc)) from None
        result = services.run_strategy(strategy, data, config)
        scores = window_scores(result, windows)
        is_trades = sum(1 for t in result.trades if t.exit_ns < is_cut_ns)
        trial.set_user_attr("windows", scores)
        trial.set_user_attr("returns", bucketed_returns(result.equity).tolist())
        trial.set_user_attr("n_trades", len(result.trades))
        if is_trades < spec.min_trades:
            reason = f"rejected: {is_trades} in-sample trades < --min-trades {spec.min_trades}"
            trial.set_user_attr("fail_reason", reason)
            raise TrialRejected(reason)
        is_values = [_mean(scores, "is", o) for o in spec.objectives]
        trial.set_user_attr("oos", {o: _mean(scores, "oos", o) for o in spec.objectives})
        if len(directions) == 1:
            for i in range(len(scores)):
                trial.report(_mean(scores[: i + 1], "is", spec.objectives[0]), i)
                if trial.should_prune():
                    raise optuna.TrialPruned()
            return is_values[0]
        return tuple(is_values)

    done = studies.finished(study)
    remaining = max(spec.n_trials - done, 0)
    t0 = time.perf_counter()
    if remaining:
        callbacks = [lambda st, tr: on_trial(st, tr)] if on_trial is not None else []
        study.optimize(
            objective,
            n_trials=remaining,
            timeout=spec.timeout_s,
            catch=(TrialRejected, UltrathinkError, ValueError, ArithmeticError),
            callbacks=callbacks,
        )
    outcome = summarize(study, list(spec.objectives), windows_count=len(windows))
    outcome.storage = studies._redact(url)
    outcome.new_trials = studies.finished(study) - done
    outcome.resumed = resumed
    outcome.elapsed_s = time.perf_counter() - t0
    return outcome


def _mean(scores: list[dict[str, dict[str, float]]], part: str, metric: str) -> float:
    return float(np.mean([s[part][metric] for s in scores]))


def summarize(study: Any, objectives: list[str], windows_count: int) -> StudyOutcome:
    """The outcome of ``study``: winner or Pareto front, walk-forward, DSR and PBO."""
    import optuna

    state = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == state.COMPLETE]
    counts = studies.trial_counts(study)
    directions = [d.name.lower() for d in study.directions]
    best = [_trial_row(t, objectives) for t in _best_trials(study, complete)]
    walk = _walk_forward(complete, objectives[0], directions[0], windows_count)
    dsr = pbo = None
    warnings: list[str] = []
    winner = _best_trials(study, complete)
    if len(complete) >= 2 and winner:
        matrix = np.column_stack([t.user_attrs["returns"] for t in complete])
        col = complete.index(winner[0])
        dsr = overfitting.deflated_sharpe_of_trials(matrix, col)
        blocks = min(16, 2 * ((matrix.shape[0] // 4) // 2))
        pbo = overfitting.probability_of_backtest_overfitting(matrix, n_blocks=max(blocks, 2))
        warnings = overfitting.overfitting_warnings(dsr, pbo)
    elif complete:
        warnings = ["one completed trial: the DSR and PBO need two or more"]
    else:
        warnings = ["no completed trial: nothing to choose"]
    return StudyOutcome(
        study_name=study.study_name,
        storage="",
        directions=directions,
        objectives=objectives,
        counts=counts,
        new_trials=0,
        resumed=False,
        elapsed_s=0.0,
        best=best,
        walk_forward=walk,
        dsr=dsr.to_dict() if dsr else None,
        pbo=pbo.to_dict() if pbo else None,
        warnings=warnings,
        reproducible=True,
        pbo_detail=pbo,
    )


def _best_trials(study: Any, complete: list[Any]) -> list[Any]:
    if not complete:
        return []
    if len(study.directions) == 1:
        return [study.best_trial]
    return sorted(study.best_trials, key=lambda t: t.number)


def _trial_row(trial: Any, objectives: list[str]) -> dict[str, Any]:
    values = trial.values or []
    return {
        "trial": trial.number,
        "params": dict(trial.params),
        "in_sample": {o: _clean(v) for o, v in zip(objectives, values, strict=False)},
        "out_of_sample": {o: _clean(v) for o, v in trial.user_attrs.get("oos", {}).items()},
        "n_trades": trial.user_attrs.get("n_trades"),
        "windows": trial.user_attrs.get("windows", []),
    }


def _walk_forward(
    complete: list[Any], metric: str, direction: str, n_windows: int
) -> list[dict[str, Any]]:
    """Per window: the trial best in sample, and what it earned out of sample."""
    sign = 1.0 if direction == "maximize" else -1.0
    out = []
    for i in range(n_windows):
        scored = [(t, t.user_attrs["windows"][i]) for t in complete if "windows" in t.user_attrs]
        if not scored:
            break
        trial, window = max(scored, key=lambda tw: (sign * tw[1]["is"][metric], -tw[0].number))
        out.append(
            {
                "window": i + 1,
                "trial": trial.number,
                "params": dict(trial.params),
                "in_sample": _clean(window["is"][metric]),
                "out_of_sample": _clean(window["oos"][metric]),
            }
        )
    return out


def _clean(value: float) -> float:
    return float(value) if math.isfinite(value) else 0.0
