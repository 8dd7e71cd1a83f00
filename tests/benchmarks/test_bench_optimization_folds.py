"""``optimize model --parallel-folds 2`` against folds in turn, in one job (issue #14).

The same seeded model study on sp500 (5 purged folds, no pruning, the default ensemble) is
run with its folds in turn and with its folds fitted at once on 2 local processes,
alternately, so the machine's load weighs on both; the pool's start-up (spawning 2
processes that import the models) is inside the parallel run's time, as it is in a real
study. Every trial must be bit-identical between the two. Reported: each run's wall time,
the medians and the ratio parallel / in turn.

``.venv/bin/python -m pytest -q -m bench tests/benchmarks/test_bench_optimization_folds.py \
-p no:randomly -s``
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

ROUNDS = 3
TRIALS = 4


def _study(tmp_path: Path, name: str, parallel_folds: int) -> tuple[float, list[Any]]:
    import optuna

    from ultrathink.optimization.model_study import ModelStudySpec, run_model_study

    url = f"sqlite:///{tmp_path / name}.db"
    spec = ModelStudySpec(
        data="sp500", n_trials=TRIALS, seed=1, pruner="none", register=False, storage=url,
        study_name=name, registry=str(tmp_path / "models"), parallel_folds=parallel_folds,
    )  # fmt: skip
    t0 = time.perf_counter()
    run_model_study(spec)
    wall = time.perf_counter() - t0
    trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    compared = []
    for t in trials:
        result = {k: v for k, v in t.user_attrs["result"].items() if k not in ("objective_s",
                  "worker")}  # fmt: skip
        compared.append((t.number, t.state, t.params, t.values, result))
    return wall, compared


@pytest.mark.bench
def test_parallel_folds_against_folds_in_turn(record: Any, tmp_path: Path) -> None:
    turn_s, once_s = [], []
    reference = None
    load0 = os.getloadavg()
    for i in range(ROUNDS):
        wall, turn = _study(tmp_path, f"turn{i}", 1)
        turn_s.append(wall)
        wall, once = _study(tmp_path, f"once{i}", 2)
        once_s.append(wall)
        assert once == turn  # bit-identical, trial for trial
        reference = reference or turn
        assert turn == reference  # and the seeded study repeats
    load1 = os.getloadavg()
    ratio = statistics.median(once_s) / statistics.median(turn_s)
    record(
        "optimize_parallel_folds",
        {
            "trials": TRIALS,
            "folds": 5,
            "in_turn_s": [round(x, 2) for x in turn_s],
            "parallel_2_s": [round(x, 2) for x in once_s],
            "in_turn_s_p50": round(statistics.median(turn_s), 2),
            "parallel_2_s_p50": round(statistics.median(once_s), 2),
            "ratio_parallel_over_in_turn": round(ratio, 3),
            "pairwise_ratios": [round(o / t, 3) for o, t in zip(once_s, turn_s, strict=True)],
            "load_before": load0,
            "load_after": load1,
            "cpus": os.cpu_count(),
        },
    )
    assert ratio < 1.0, "two processes did not beat one"
