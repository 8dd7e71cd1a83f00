"""``ultrathink optimize … --ray ADDRESS --storage postgresql://…``: study workers as tasks on
a real local Ray cluster, sharing one Optuna study on a real PostgreSQL server; a Ray worker
killed while it runs trials loses no trial."""

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


def _ray_study_worker() -> int | None:
    # a Ray worker process whose title names the study task (`ray::_worker`)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith("ray::_worker"):
            return int(entry.name)
    return None


def test_a_ray_worker_killed_while_working_loses_no_trial(
    ray_cluster: Any, postgres_database: str, tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        _command(ray_cluster.address, postgres_database, "kill", 16, 3),
        env=ray_cluster.env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    killed = None
    try:
        deadline = time.monotonic() + 300
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            pid = _ray_study_worker()
            # once the Ray worker has ended a trial it is working: it starts the next one
            # at once, so the kill most likely lands inside a trial (when it lands between
            # two, nothing is lost either; test_study_postgres.py pins the retry itself)
            if pid is not None and any(
                w.endswith(f":{pid}") for w in _workers(_trials(postgres_database, "kill"))
            ):
                os.kill(pid, signal.SIGKILL)
                killed = pid
            else:
                time.sleep(0.1)
        assert killed is not None, "no Ray study worker was caught working"
        out, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    trials = _trials(postgres_database, "kill")
    states = [t.state for t in trials]
    assert optuna.trial.TrialState.RUNNING not in states
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    # a trial the killed worker held failed on its stale heartbeat and was run again: every
    # failed trial has a retry, and the study still reached its target; Ray workers other
    # than the killed one ran trials too (Ray ran the lost task again, or the other worker)
    assert len(complete) >= 16
    assert len(_workers(complete)) >= 2
    for f in failed:
        retried = [t for t in trials if t.system_attrs.get("failed_trial") == f.number]
        assert retried, f"failed trial {f.number} was not retried"
    assert json.loads(out)["new_trials"] >= 16
