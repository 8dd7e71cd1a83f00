"""``ultrathink optimize … --ray ADDRESS --storage postgresql://…``: study workers as tasks on
a real local Ray cluster, sharing one Optuna study on a real PostgreSQL server.

A worker killed mid-trial is tested with plain processes on PostgreSQL
(``test_study_postgres.py``); the same test on Ray failed 1 run in 5 beside two CPU burners
(cause not found yet) and is kept out of the suite until it is understood."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from tests.integration import pg_fixtures, ray_fixtures

from ultrathink.optimization import study as studies

pytestmark = pytest.mark.slow

postgres_cluster = pg_fixtures.postgres_cluster
postgres_database = pg_fixtures.postgres_database
ray_cluster = ray_fixtures.ray_cluster

CLI = str(Path(sys.executable).parent / "ultrathink")
# a slower backtest (~0.3 s) than sp500's, so the Ray workers start while trials remain
DATA = "synthetic:n_bars=150000,seed=3"


def _command(address: str, url: str, study: str, n_trials: int, n_jobs: int) -> list[str]:
    return [
        CLI, "optimize", "strategy", "--space", "fast=int:5:30", "--space", "slow=int:40:120",
        "--data", DATA, "--min-trades", "1", "--pruner", "none", "--seed", "1",
        "--n-trials", str(n_trials), "--n-jobs", str(n_jobs), "--ray", address,
        "--storage", url, "--study", study, "--json",
    ]  # fmt: skip


def _trials(url: str, study: str) -> list[Any]:
    """The study's trials as stored now (``[]`` before it exists)."""
    storage = optuna.storages.RDBStorage(studies.sqlalchemy_url(url))
    try:
        return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    except KeyError:  # not created yet
        return []
    finally:
        storage.remove_session()
        storage.engine.dispose()


def _workers(trials: list[Any]) -> set[str]:
    return {t.user_attrs["result"]["worker"] for t in trials if "result" in t.user_attrs
            and "worker" in t.user_attrs["result"]}  # fmt: skip


def test_a_study_runs_on_ray_workers_sharing_postgresql(
    ray_cluster: Any, postgres_database: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        _command(ray_cluster.address, postgres_database, "ray", 12, 3),
        env=ray_cluster.env(tmp_path), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)  # stdout holds the result alone
    trials = _trials(postgres_database, "ray")
    states = [t.state for t in trials]
    assert optuna.trial.TrialState.RUNNING not in states
    ended = [t for t in trials if t.state.is_finished()]
    assert len(ended) >= 12 and out["new_trials"] == len(ended)
    # the trials ran in more than one process: the command's own and Ray workers'
    workers = _workers(ended)
    assert len(workers) >= 2, workers
