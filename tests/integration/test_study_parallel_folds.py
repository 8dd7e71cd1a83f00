"""``optimize model --parallel-folds N``: a trial's folds fitted at once on a real process
pool give the same study, trial for trial and bit for bit, as the folds fitted in turn, the
pruner's decisions included (it sees the fold scores in the same order); folds as Ray tasks
on a real local Ray cluster give the same predictions as folds fitted in turn."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from tests.integration import ray_fixtures
from tests.integration.conftest import CliRunner

from ultrathink.optimization.folds import InTurn, LocalPool

DATA = "synthetic:n_bars=1500,seed=3"
FAST = (
    "--data", DATA, "--folds", "3", "--param", "gbm_n_estimators=20", "--param",
    "forest_n_estimators=20", "--no-register", "--seed", "1", "--json",
)  # fmt: skip


def _study(cli: CliRunner, tmp_path: Path, name: str, *extra: str) -> list[Any]:
    url = f"sqlite:///{tmp_path / name}.db"
    result = cli("optimize", "model", *FAST, "--storage", url, "--study", name, *extra)
    assert result.code == 0, result.err
    assert json.loads(result.out)["new_trials"] == 9
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


def _as_compared(trial: Any) -> tuple[Any, ...]:
    result = dict(trial.user_attrs.get("result", {}))
    for varying in ("objective_s", "worker"):  # a duration and a pid
        result.pop(varying, None)
    return (trial.number, trial.state, trial.params, trial.values, trial.intermediate_values,
            result)  # fmt: skip


@pytest.mark.slow
def test_parallel_folds_give_the_same_study_as_folds_in_turn(
    cli: CliRunner, tmp_path: Path
) -> None:
    in_turn = _study(cli, tmp_path, "turn", "--n-trials", "9")
    at_once = _study(cli, tmp_path, "once", "--n-trials", "9", "--parallel-folds", "2")
    # the median pruner (5 start-up trials) prunes some of these: the comparison covers it
    assert any(t.state == optuna.trial.TrialState.PRUNED for t in in_turn)
    assert any(t.state == optuna.trial.TrialState.COMPLETE for t in in_turn)
    assert [_as_compared(t) for t in at_once] == [_as_compared(t) for t in in_turn]


def test_the_pool_returns_each_folds_predictions_in_fold_order_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(600, 5))
    y = (X[:, 0] + rng.normal(scale=0.5, size=600) > 0).astype(np.int64)
    splits = [(np.arange(0, 200 + 100 * k), np.arange(200 + 100 * k, 300 + 100 * k))
              for k in range(4)]  # fmt: skip
    params = {"gbm_n_estimators": 10, "forest_n_estimators": 10}
    expected = list(InTurn(X, y).predictions(params, splits))
    pool = LocalPool(2, X, y)
    try:
        got = list(pool.predictions(params, splits))
        early = pool.predictions(params, splits)  # a pruned trial stops after its first fold
        first = next(early)
        early.close()
        again = list(pool.predictions(params, splits))  # the pool still serves the next trial
    finally:
        pool.close()
    assert [p.tobytes() for p in got] == [p.tobytes() for p in expected]
    assert first.tobytes() == expected[0].tobytes()
    assert [p.tobytes() for p in again] == [p.tobytes() for p in expected]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--parallel-folds", "0"), "error: --parallel-folds must be between 1 and 64, was 0"),
        (("--parallel-folds", "2", "--n-jobs", "2"), "error: --parallel-folds and --n-jobs"),
    ],
)
def test_bad_parallel_folds_are_one_line(
    cli: CliRunner, tmp_path: Path, extra: tuple[str, ...], message: str
) -> None:
    result = cli("optimize", "model", *FAST, "--db", str(tmp_path / "u.db"), *extra)
    assert result.code == 2
    assert result.err.strip().startswith(message) and len(result.err.strip().splitlines()) == 1


# -- on a real Ray cluster -----------------------------------------------------------------------
ray_cluster = ray_fixtures.ray_cluster

_ON_RAY = """
import json, sys
import numpy as np
import ray
from ultrathink.optimization.folds import InTurn, OnRay

ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
rng = np.random.default_rng(7)
X = rng.normal(size=(600, 5))
y = (X[:, 0] + rng.normal(scale=0.5, size=600) > 0).astype(np.int64)
splits = [(np.arange(0, 200 + 100 * k), np.arange(200 + 100 * k, 300 + 100 * k)) for k in range(4)]
params = {"gbm_n_estimators": 10, "forest_n_estimators": 10}
expected = [p.tobytes().hex() for p in InTurn(X, y).predictions(params, splits)]
pool = OnRay(ray, X, y)
got = [p.tobytes().hex() for p in pool.predictions(params, splits)]
early = pool.predictions(params, splits)  # a pruned trial stops after its first fold
first = next(early).tobytes().hex()
early.close()  # the folds not taken and not finished are cancelled
again = [p.tobytes().hex() for p in pool.predictions(params, splits)]
print(json.dumps({"expected": expected, "got": got, "first": first, "again": again}))
"""


@pytest.mark.slow
def test_folds_as_ray_tasks_equal_folds_in_turn_bit_for_bit(
    ray_cluster: Any, tmp_path: Path
) -> None:
    # in a child: importing Ray in the test process would slow every other test
    done = subprocess.run(
        [sys.executable, "-c", _ON_RAY, ray_cluster.address], env=ray_cluster.env(tmp_path),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(out["got"]) == 4 and out["got"] == out["expected"]
    assert out["first"] == out["expected"][0] and out["again"] == out["expected"]


@pytest.mark.slow
def test_a_model_study_with_parallel_folds_runs_on_ray(ray_cluster: Any, tmp_path: Path) -> None:
    cli = str(Path(sys.executable).parent / "ultrathink")
    done = subprocess.run(
        [cli, "optimize", "model", *FAST, "--n-trials", "4", "--pruner", "none", "--ray",
         ray_cluster.address, "--parallel-folds", "2", "--db", str(tmp_path / "u.db")],
        env=ray_cluster.env(tmp_path), capture_output=True, text=True, timeout=900,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["counts"].get("complete", 0) >= 4 and "running" not in out["counts"]
