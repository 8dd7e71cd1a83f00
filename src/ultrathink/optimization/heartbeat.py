"""Optuna's RDB storage with one gap of its heartbeats closed: a trial whose process died
before its first heartbeat.

Optuna creates a trial (``study.ask``: the row is committed RUNNING), then starts the
thread that records the trial's heartbeat. A process killed between the two leaves a
RUNNING trial with no heartbeat row, and Optuna's ``fail_stale_trials`` skips such trials
for ever (it only compares existing heartbeats with the grace period), so the trial stays
RUNNING and is never retried. The Ray worker-kill test caught it: the test kills a worker
just after it ended a trial, i.e. often just as it starts the next one (1 run in 5 beside
two CPU burners).

``HeartbeatStorage`` closes the gap without a clock of its own: whenever it looks for stale
trials, it first records a heartbeat for every RUNNING trial of the study that has none,
dated by the database like any heartbeat. A live owner overwrites it at its own first beat,
milliseconds later (a simultaneous first insert is a unique-key conflict that Optuna's
``record_heartbeat`` ignores, and the owner's next beat updates the row); a dead owner
never does, so the trial goes stale one grace period after it was first seen and is failed
and queued again like any other. The cost is one more query per trial start.

So every process that runs trials on a study must use heartbeats, as ultrathink's do (a
trial run by a storage without heartbeats would be failed one grace period after it is
seen).
"""

from __future__ import annotations

import optuna
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import TrialState
from sqlalchemy import orm


class HeartbeatStorage(optuna.storages.RDBStorage):
    """``RDBStorage`` whose stale-trial scan also covers trials that never beat."""

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        for trial_id in self.silent_trial_ids(study_id):
            self.record_heartbeat(trial_id)  # first seen now, by the database's clock
        return super()._get_stale_trial_ids(study_id)

    def silent_trial_ids(self, study_id: int) -> list[int]:
        """RUNNING trials of the study without a heartbeat row."""
        with _create_scoped_session(self.scoped_session) as session:
            running = (
                session.query(models.TrialModel)
                .options(orm.selectinload(models.TrialModel.heartbeats))
                .filter(models.TrialModel.state == TrialState.RUNNING)
                .filter(models.TrialModel.study_id == study_id)
                .all()
            )
            return [t.trial_id for t in running if not t.heartbeats]
