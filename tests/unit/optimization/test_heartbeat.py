"""A trial whose process died before its first heartbeat is failed and queued again
(``optimization/heartbeat.py``), on a real SQLite storage with a 1 s grace period.

Optuna's own storage leaves such a trial RUNNING for ever; the test shows both."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest

from ultrathink.optimization import study as studies

DEADLINE_S = 60.0  # a busy machine is slow, never wrong: the loops end as soon as it holds


def _wait(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _orphan(storage: Any, name: str) -> tuple[Any, Any]:
    """A study holding one RUNNING trial that never beat: what a process killed between
    Optuna's ``study.ask`` and the first beat of its heartbeat thread leaves."""
    study = optuna.create_study(storage=storage, study_name=name)
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
    return study, trial


pytestmark = [
    # study.ask on a heartbeat storage warns that heartbeats are for study.optimize: here the
    # test plays the process that died before its heartbeat thread started
    pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning"),
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
]


@pytest.fixture(autouse=True)
def _quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def test_a_trial_that_never_beat_is_failed_and_queued_again(tmp_path: Path) -> None:
    storage = studies.make_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_s=1, grace_s=1)
    study, trial = _orphan(storage, "orphan")
    studies.fail_stale(study)  # first seen: stamped, not failed at once (it may be alive)
    assert study.trials[trial.number].state == optuna.trial.TrialState.RUNNING

    def failed() -> bool:
        studies.fail_stale(study)
        return study.trials[trial.number].state == optuna.trial.TrialState.FAIL

    _wait(failed, "the silent trial to be failed")
    copies = [t for t in study.trials if t.system_attrs.get("failed_trial") == trial.number]
    assert len(copies) == 1 and copies[0].state == optuna.trial.TrialState.WAITING
    assert copies[0].params == study.trials[trial.number].params


def test_a_live_trial_keeps_its_own_heartbeat(tmp_path: Path) -> None:
    storage = studies.make_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_s=1, grace_s=3)
    study, trial = _orphan(storage, "live")
    studies.fail_stale(study)  # stamps it: first seen
    seen = time.monotonic()
    # its owner beats (as Optuna's heartbeat thread does) past two grace periods
    while time.monotonic() - seen < 7.0:
        storage.record_heartbeat(trial._trial_id)
        studies.fail_stale(study)
        assert study.trials[trial.number].state == optuna.trial.TrialState.RUNNING
        time.sleep(0.2)


def test_optunas_own_storage_never_fails_such_a_trial(tmp_path: Path) -> None:
    """Why ``HeartbeatStorage`` exists: if this starts failing, Optuna closed the gap."""
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1, grace_period=1
    )
    study, trial = _orphan(storage, "plain")
    deadline = time.monotonic() + 2.5  # past the grace period: the trial would be stale
    while time.monotonic() < deadline:
        optuna.storages.fail_stale_trials(study)
        time.sleep(0.1)
    assert study.trials[trial.number].state == optuna.trial.TrialState.RUNNING
