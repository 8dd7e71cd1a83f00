"""Budgets of the optimization room (issue #10):

- the framework's overhead per trial (Optuna's sampling and storage, our bookkeeping and the
  end-of-study DSR/PBO) as a share of the objective's own time: at most 5 % for a model
  study. A strategy study on sp500 is recorded beside it without a budget: its objective is
  one ~40 ms backtest, and Optuna's TPE sampler alone, in memory with an empty objective,
  costs ~2.5 ms a trial here (measured in the same job as `tpe_floor`), which is already
  above 5 % of it before any storage write;
- a 100-trial TPE model study with pruning on sp500: at most 5 minutes on this 2-core machine,
  with one `ultrathink train` measured in the same job as the reference.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

OVERHEAD_BUDGET = 0.05
STUDY_BUDGET_S = 300.0


def _overhead(spec: Any, prepare: Any) -> dict[str, Any]:
    from ultrathink.optimization import study as studies
    from ultrathink.optimization.trials import attrs, run_trials, summarize

    spec = studies.with_storage(spec)
    prepared = prepare(spec)
    t0 = time.perf_counter()
    run_trials(prepared.study, prepared.objective, n_total=spec.n_trials, timeout_s=None)
    summarize(prepared.study, list(spec.objectives), windows_count=4)
    wall = time.perf_counter() - t0
    own = sum(attrs(t)["objective_s"] for t in prepared.study.trials)
    n = len(prepared.study.trials)
    return {
        "trials": n,
        "storage": spec.storage.split(":", 1)[0],
        "wall_s": round(wall, 3),
        "objective_s": round(own, 3),
        "objective_ms_per_trial": round(own / n * 1000, 2),
        "overhead_ms_per_trial": round((wall - own) / n * 1000, 2),
        "overhead_share": round((wall - own) / own, 4),
    }


@pytest.mark.bench
def test_framework_overhead_per_trial(record, tmp_path: Path) -> None:
    import dataclasses

    from ultrathink.optimization import model_study, strategy_study
    from ultrathink.optimization.space import SearchSpace

    model = model_study.ModelStudySpec(
        n_trials=20, seed=1, pruner="none", db=str(tmp_path / "m" / "u.db"), register=False,
        registry=str(tmp_path / "models"),
    )  # fmt: skip
    model_row = _overhead(model, model_study._prepare)
    space = SearchSpace.parse(["fast=int:5:50", "slow=int:20:200"])
    strategy = strategy_study.StrategyStudySpec(
        strategy="sma_cross", space=space, n_trials=40, seed=1, pruner="none",
        db=str(tmp_path / "s" / "u.db"),
    )  # fmt: skip
    strategy_sqlite = _overhead(strategy, strategy_study._prepare)
    journal = dataclasses.replace(
        strategy, storage=f"journal:{tmp_path / 'j' / 'studies.journal'}", db=None
    )
    strategy_journal = _overhead(journal, strategy_study._prepare)
    floor_ms = _tpe_floor_ms(40)
    record(
        "optimize.overhead_per_trial",
        {
            "model_study_sp500": model_row,
            "strategy_study_sp500_sqlite": strategy_sqlite,
            "strategy_study_sp500_journal": strategy_journal,
            "tpe_floor": {
                "ms_per_trial": round(floor_ms, 2),
                "share_of_backtest": round(
                    floor_ms / strategy_journal["objective_ms_per_trial"], 4
                ),
            },
            "budget_share_model_study": OVERHEAD_BUDGET,
        },
    )
    assert model_row["overhead_share"] <= OVERHEAD_BUDGET


def _tpe_floor_ms(n_trials: int) -> float:
    """Optuna's own cost per trial with nothing else: TPE, in-memory storage, an objective
    that only asks for the two sma_cross parameters."""
    import optuna

    def objective(trial: Any) -> float:
        trial.suggest_int("fast", 5, 50)
        trial.suggest_int("slow", 20, 200)
        return 0.0

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1))
    t0 = time.perf_counter()
    study.optimize(objective, n_trials=n_trials)
    return (time.perf_counter() - t0) / n_trials * 1000


def _wall(argv: list[str], cwd: Path) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ULTRATHINK")}
    t0 = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr
    return wall, done.stdout


@pytest.mark.bench
def test_100_trial_tpe_model_study_with_pruning_on_sp500(record, tmp_path: Path) -> None:
    exe = str(Path(sys.executable).parent / "ultrathink")
    trains = [
        _wall([exe, "train", "--registry", str(tmp_path / f"r{i}"), "--json"], tmp_path)[0]
        for i in range(3)
    ]
    wall, out = _wall(
        [exe, "optimize", "model", "--n-trials", "100", "--seed", "1", "--sampler", "tpe",
         "--pruner", "median", "--db", str(tmp_path / "u.db"), "--registry",
         str(tmp_path / "models"), "--json"],
        tmp_path,
    )  # fmt: skip
    outcome = json.loads(out)
    train_s = statistics.median(trains)
    record(
        "optimize.model_study_100_tpe_sp500",
        {
            "wall_s": round(wall, 1),
            "counts": outcome["counts"],
            "best_logloss": outcome["best"][0]["in_sample"]["logloss"],
            "dsr": round(outcome["dsr"]["dsr"], 4),
            "pbo": round(outcome["pbo"]["pbo"], 4),
            "train_median_s": round(train_s, 2),
            "ratio_to_one_train": round(wall / train_s, 1),
            "budget_s": STUDY_BUDGET_S,
        },
    )
    assert sum(outcome["counts"].values()) == 100
    assert wall <= STUDY_BUDGET_S
