"""Running a study's trials and summarising them, for every kind of study.

``run_trials`` runs trials until the study holds ``--n-trials`` ended ones: in this process
(a seeded study repeats exactly), or with ``--n-jobs N`` in this process and N - 1 spawned
workers that share a storage (Optuna's JournalStorage file by default). Parallel trials finish
in an order the scheduler decides, so a parallel study is not reproducible, and says so.
Other processes may work on the same study too (several commands on one PostgreSQL
storage): every process stops once the study holds ``--n-trials`` ended trials, whoever ran
them, and a queued trial (a dead worker's, queued again) is run even past that target.

``summarize`` turns the completed trials into the report: the winner or the Pareto front,
the walk-forward table (each window's in-sample best, scored out of sample), the Deflated
Sharpe Ratio of the winner and the PBO of the trials' returns (``overfitting.py``).
"""

from __future__ import annotations

import base64
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ultrathink.errors import UltrathinkError
from ultrathink.optimization import overfitting
from ultrathink.optimization import study as studies

ProgressHook = Callable[[Any, Any], None]


class TrialRejected(UltrathinkError):
    """A trial whose parameters cannot be scored (too few trades, invalid combination)."""


#: the user attribute holding everything a trial measured (one storage write per trial)
RESULT = "result"


def attrs(trial: Any) -> dict[str, Any]:
    """What a trial measured (windows, returns, trades, …) and its other user attributes."""
    return {**trial.user_attrs.get(RESULT, {}), **trial.user_attrs}


def pack_returns(returns: np.ndarray) -> str:
    """A trial's returns for storage: base64 of little-endian float64 (exact, and a quarter
    of the time per trial of a JSON list of 5,000 numbers in a SQLite study)."""
    return base64.b64encode(np.ascontiguousarray(returns, dtype="<f8").tobytes()).decode()


def trial_returns(trial: Any) -> np.ndarray | None:
    """The returns a completed trial stored (None when it stored none)."""
    packed = attrs(trial).get("returns")
    if packed is None:
        return None
    if isinstance(packed, list):
        return np.asarray(packed, dtype=np.float64)
    return np.frombuffer(base64.b64decode(packed), dtype="<f8").astype(np.float64)


def measured(
    suggest: Callable[[Any], dict[str, Any]],
    scored: Callable[[Any, dict[str, Any], dict[str, Any]], Any],
) -> Callable[[Any], Any]:
    """The objective of a study: ``scored(trial, suggest(trial), out)`` timed, with all it
    put in ``out`` stored in one write (``RESULT``); ``objective_s`` feeds the overhead
    benchmark."""

    def objective(trial: Any) -> Any:
        values = suggest(trial)
        t0 = time.perf_counter()
        result: dict[str, Any] = {}
        try:
            return scored(trial, values, result)
        finally:
            result["objective_s"] = time.perf_counter() - t0
            trial.set_user_attr(RESULT, result)

    return objective


#: what a trial may raise and still leave the study going (recorded as a failed trial)
CATCH = (TrialRejected, UltrathinkError, ValueError, ArithmeticError)


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
    kind: str = "strategy"
    n_jobs: int = 1
    registered: dict[str, Any] | None = None
    pbo_detail: Any = None
    storage_url: str = ""  # unredacted, for reopening; never printed

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out.pop("pbo_detail")
        out.pop("storage_url")
        return out


def stop_at(n_total: int) -> Callable[[Any, Any], None]:
    """A callback that stops the study once it holds ``n_total`` ended trials and no queued
    one (counting the trials of every process that shares it)."""

    def callback(study: Any, trial: Any) -> None:
        counts = studies.trial_counts(study)  # one read of the storage
        if studies.finished_in(counts) >= n_total and not counts.get("waiting"):
            study.stop()

    return callback


def run_trials(
    study: Any,
    objective: Callable[[Any], Any],
    *,
    n_total: int,
    timeout_s: float | None,
    on_trial: ProgressHook | None = None,
    n_jobs: int = 1,
    prepare: Callable[[Any], tuple[Any, Any]] | None = None,
    spec: Any = None,
    ray_address: str | None = None,
) -> None:
    """Run trials until the study holds ``n_total`` ended ones (or ``timeout_s`` passes).

    With ``n_jobs > 1``, ``prepare(spec)`` (a module-level function, so a spawned process
    can import it) rebuilds the study and the objective in each of ``n_jobs - 1`` workers;
    each worker's sampler is seeded ``seed + i`` when a seed is given. With ``ray_address``
    those workers are Ray tasks (``ray_workers``; ``n_jobs`` 1: one per cluster CPU).
    """
    # a queued trial runs even past the target: its parameters were chosen and never scored
    remaining = max(n_total - studies.finished(study), studies.waiting(study))
    if remaining <= 0:
        return
    callbacks = [stop_at(n_total)]  # other processes may share the study and run trials
    if on_trial is not None:
        callbacks.append(on_trial)
    if ray_address is not None:
        from ultrathink.optimization import ray_workers

        if prepare is None or spec is None:
            raise UltrathinkError("ray_address needs prepare and spec")
        on_ray = ray_workers.start(ray_address, _worker, prepare, spec, n_total, timeout_s,
                                   n_jobs - 1 if n_jobs > 1 else None)  # fmt: skip
        try:
            study.optimize(
                objective, n_trials=remaining, timeout=timeout_s, catch=CATCH, callbacks=callbacks
            )
        finally:
            on_ray.join()
        ray_workers.settle(study, objective, callbacks)
        return
    if n_jobs <= 1:  # alone on the study, n_trials=remaining ends it exactly
        study.optimize(
            objective, n_trials=remaining, timeout=timeout_s, catch=CATCH, callbacks=callbacks
        )
        return
    import multiprocessing

    if prepare is None or spec is None:
        raise UltrathinkError("n_jobs > 1 needs prepare and spec")
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding SQLite handles
    workers = []
    for i in range(1, n_jobs):
        seed = None if spec.seed is None else spec.seed + i
        worker_spec = dataclasses.replace(spec, seed=seed, n_jobs=1)
        proc = ctx.Process(
            target=_worker, args=(prepare, worker_spec, n_total, timeout_s), daemon=True
        )
        proc.start()
        workers.append(proc)
    try:
        study.optimize(
            objective, n_trials=remaining, timeout=timeout_s, catch=CATCH, callbacks=callbacks
        )
    finally:
        for proc in workers:
            proc.join()
    failed = [p.exitcode for p in workers if p.exitcode]
    if failed:
        raise UltrathinkError(f"{len(failed)} of {n_jobs - 1} worker processes failed")


def _worker(
    prepare: Callable[[Any], tuple[Any, Any]], spec: Any, n_total: int, timeout_s: float | None
) -> None:
    """One spawned worker of a parallel study."""
    try:
        study, objective = prepare(spec)
        study.optimize(
            objective, n_trials=n_total, timeout=timeout_s, catch=CATCH,
            callbacks=[stop_at(n_total)],
        )  # fmt: skip
    except KeyboardInterrupt:
        pass  # Ctrl-C reaches the whole process group; the parent reports it


def summarize(study: Any, objectives: list[str], windows_count: int) -> StudyOutcome:
    """The outcome of ``study``: winner or Pareto front, walk-forward, DSR and PBO."""
    import optuna

    state = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == state.COMPLETE]
    counts = studies.trial_counts(study)
    directions = [d.name.lower() for d in study.directions]
    winner = best_trials(study, complete)
    best = [trial_row(t, objectives) for t in winner]
    walk = _walk_forward(complete, objectives[0], directions[0], windows_count)
    dsr = pbo = None
    warnings: list[str] = []
    if len(complete) >= 2 and winner:
        series = [trial_returns(t) for t in complete]
        matrix = np.column_stack([r if r is not None else np.zeros(0) for r in series])
        col = complete.index(winner[0])
        tried = counts.get("complete", 0) + counts.get("pruned", 0)
        dsr = overfitting.deflated_sharpe_of_trials(matrix, col, n_trials=tried)
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


def best_trials(study: Any, complete: list[Any]) -> list[Any]:
    """The best trial, or the Pareto front in trial order (empty without a completed trial)."""
    if not complete:
        return []
    if len(study.directions) == 1:
        return [study.best_trial]
    return sorted(study.best_trials, key=lambda t: t.number)


def trial_row(trial: Any, objectives: list[str]) -> dict[str, Any]:
    values = trial.values or []
    measured = attrs(trial)
    return {
        "trial": trial.number,
        "params": dict(trial.params),
        "in_sample": {o: clean(v) for o, v in zip(objectives, values, strict=False)},
        "out_of_sample": {o: clean(v) for o, v in measured.get("oos", {}).items()},
        "n_trades": measured.get("n_trades"),
        "fold_se": measured.get("fold_se"),
        "windows": measured.get("windows", []),
    }


def _walk_forward(
    complete: list[Any], metric: str, direction: str, n_windows: int
) -> list[dict[str, Any]]:
    """Per window: the trial best in sample, and what it earned out of sample."""
    sign = 1.0 if direction == "maximize" else -1.0
    out = []
    for i in range(n_windows):
        scored = [
            (t, attrs(t)["windows"][i]) for t in complete if len(attrs(t).get("windows", ())) > i
        ]
        if not scored:
            break
        trial, window = max(scored, key=lambda tw: (sign * tw[1]["is"][metric], -tw[0].number))
        out.append(
            {
                "window": window.get("label", i + 1),
                "trial": trial.number,
                "params": dict(trial.params),
                "in_sample": clean(window["is"][metric]),
                "out_of_sample": clean(window["oos"][metric]),
            }
        )
    return out


def clean(value: float) -> float:
    return float(value) if math.isfinite(value) else 0.0


def outcome_of(study: Any, storage: str) -> StudyOutcome:
    """The outcome of a stored study, as the run that made it reported it."""
    identity = study.user_attrs.get("identity") or {}
    objectives = list(identity.get("objectives") or [])
    if not objectives:
        raise UltrathinkError(f"study {study.study_name!r} was not made by ultrathink optimize")
    windows = max((len(attrs(t).get("windows", ())) for t in study.trials), default=0)
    outcome = summarize(study, objectives, windows_count=windows)
    outcome.kind = str(identity.get("kind", "strategy"))
    outcome.storage = studies.redact(storage)
    outcome.storage_url = storage
    outcome.reproducible = False  # unknown after the fact: the report does not claim it
    registered = study.user_attrs.get("registered") or {}
    if outcome.best and str(outcome.best[0]["trial"]) in registered:
        version = registered[str(outcome.best[0]["trial"])]
        outcome.registered = {"version": version, "trial": outcome.best[0]["trial"], "new": False}
    return outcome


def dashboard_command(storage: str) -> str:
    """The ``optuna-dashboard`` command line that opens a study's storage: with the driver
    this project uses (``postgresql+psycopg://``) and never a password (the driver reads
    ``PGPASSWORD`` or ``~/.pgpass``)."""
    if storage.startswith("journal:"):
        return f"optuna-dashboard {storage.removeprefix('journal:')}"
    return f"optuna-dashboard {studies.sqlalchemy_url(studies.without_password(storage))}"
