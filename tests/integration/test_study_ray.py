"""``ultrathink optimize … --ray ADDRESS --storage postgresql://…``: study workers as tasks on
a real local Ray cluster, sharing one Optuna study on a real PostgreSQL server; a Ray worker
killed while it runs trials loses no trial.

The kill test failed 1 run in 5 beside two CPU burners. Two causes: on a loaded machine the
command sometimes ended the study before a Ray worker had ended a trial (seen: 1 run in 6 at
load 8; the run is now repeated on a fresh study), and a worker killed just after it ended a
trial, as here, may die after creating its next trial but before that trial's first
heartbeat, which Optuna then never fails (reproduced in
``tests/unit/optimization/test_heartbeat.py``, fixed in ``optimization/heartbeat.py``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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


#: a Ray worker must end a trial before the command ends the study; on a busy machine the
#: command can run them all while the workers still start (1 run in 6 at load 8), so a run
#: that never gave the chance is repeated on a fresh study (Ray's idle workers are warm then)
ATTEMPTS = 4
TARGET = 16


def _kill_a_working_ray_worker(
    proc: subprocess.Popen[str], cluster: Any, url: str, study: str
) -> int | None:
    """SIGKILL a Ray study worker (``ray::_worker``, of this cluster only) once it has
    ended a trial: it starts the next one at once, so the kill lands at the start of a
    trial or inside one (between two, nothing is lost either). None when the command ended
    first."""
    while proc.poll() is None:
        ended_by = _workers(_trials(url, study))
        for pid in cluster.worker_pids("ray::_worker"):
            if any(w.endswith(f":{pid}") for w in ended_by):
                os.kill(pid, signal.SIGKILL)
                return int(pid)
        time.sleep(0.05)
    return None


def _explain(trials: list[Any]) -> str:
    return ", ".join(f"{t.number} {t.state.name} {t.system_attrs.get('failed_trial', '')}"
                     for t in trials)  # fmt: skip


def test_a_ray_worker_killed_while_working_loses_no_trial(
    ray_cluster: Any, postgres_database: str, tmp_path: Path
) -> None:
    killed = None
    for attempt in range(1, ATTEMPTS + 1):
        study = f"kill-{attempt}"
        proc = subprocess.Popen(
            _command(ray_cluster.address, postgres_database, study, TARGET, 3),
            env=ray_cluster.env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            killed = _kill_a_working_ray_worker(proc, ray_cluster, postgres_database, study)
            out, err = proc.communicate(timeout=900)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err
        trials = _trials(postgres_database, study)
        why = _explain(trials)
        assert optuna.trial.TrialState.RUNNING not in [t.state for t in trials], why
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
        # a trial the killed worker held failed on its stale heartbeat (or, if it never beat,
        # one grace period after it was first seen) and was run again: every failed trial
        # has a retry, and the study still reached its target
        assert len(complete) >= TARGET, why
        assert len(_workers(complete)) >= 2
        for f in failed:
            retried = [t for t in trials if t.system_attrs.get("failed_trial") == f.number]
            assert retried, f"failed trial {f.number} was not retried: {why}"
        assert json.loads(out)["new_trials"] >= TARGET
        if killed is not None:
            break
    assert killed is not None, f"in {ATTEMPTS} runs the command ended before a Ray worker"
