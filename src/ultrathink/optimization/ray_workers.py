"""The workers of a study on a Ray cluster (``optimize … --ray ADDRESS``).

Ray only places the workers; the study's storage coordinates them, as Optuna intends for
distributed optimisation: each Ray task rebuilds the study and the objective from the spec
(``prepare(spec)``, the same function a spawned ``--n-jobs`` worker runs) and calls
``study.optimize`` until the study holds ``--n-trials`` ended trials, whoever ran them. The
storage must therefore be one every node reaches: PostgreSQL for a cluster of machines (a
SQLite or journal file works only when every worker sees the same file, e.g. a one-machine
cluster).

A worker that dies mid-trial leaves its trial RUNNING only until its heartbeat is stale: the
next worker to start a trial fails it and queues it again with the same parameters
(``study.make_storage``), and Ray runs the lost task again (``max_retries``), so the study
still reaches its target and loses no trial.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ultrathink.errors import UltrathinkError

#: times Ray runs a worker task again after its process died
MAX_TASK_RETRIES = 3


class RayWorkers:
    """``n`` study workers running as Ray tasks; ``join`` waits for them and shuts Ray down."""

    def __init__(self, ray: Any, refs: list[Any]) -> None:
        self._ray = ray
        self._refs = refs

    def join(self) -> None:
        ray = self._ray
        failed = []
        try:
            for ref in self._refs:
                try:
                    ray.get(ref)
                except ray.exceptions.RayError as exc:
                    failed.append(" ".join(str(exc).split())[:300])
        finally:
            ray.shutdown()
        if failed:
            raise UltrathinkError(
                f"{len(failed)} of {len(self._refs)} Ray workers failed; first: {failed[0]}"
            )


def start(
    address: str,
    run: Callable[..., None],
    prepare: Callable[[Any], tuple[Any, Any]],
    spec: Any,
    n_total: int,
    timeout_s: float | None,
    n_workers: int | None,
) -> RayWorkers:
    """Start ``n_workers`` Ray tasks of ``run(prepare, worker_spec, n_total, timeout_s)``
    (default: one per CPU of the cluster, less the driver's own); worker ``i``'s sampler is
    seeded ``seed + i``."""
    from ultrathink.sweep.run import ray_init

    ray = ray_init(address, None)
    if n_workers is None:
        n_workers = max(1, int(ray.cluster_resources().get("CPU", 1)) - 1)
    remote = ray.remote(num_cpus=1, max_retries=MAX_TASK_RETRIES)(run)
    refs = []
    for i in range(1, n_workers + 1):
        seed = None if spec.seed is None else spec.seed + i
        worker_spec = dataclasses.replace(spec, seed=seed, n_jobs=1, ray=None)
        refs.append(remote.remote(prepare, worker_spec, n_total, timeout_s))
    return RayWorkers(ray, refs)


def settle(study: Any, objective: Callable[[Any], Any], callbacks: list[Any]) -> None:
    """After every worker has stopped: a trial still RUNNING belongs to a worker that died
    (the others reached the target before its heartbeat went stale). Wait out its grace
    period, fail it (which queues a copy with its parameters) and run the copies here, so
    the study ends with no trial lost and none RUNNING. Storages without heartbeats (the
    journal file) keep such a trial for the next run."""
    import time

    import optuna

    from ultrathink.optimization import study as studies
    from ultrathink.optimization.trials import CATCH

    running = optuna.trial.TrialState.RUNNING
    if not any(t.state == running for t in study.get_trials(deepcopy=False)):
        return
    if studies.fail_stale(study) == 0 and not hasattr(study._storage, "get_heartbeat_interval"):
        return  # no heartbeats: nothing can tell a dead worker's trial from a live one
    deadline = time.monotonic() + studies.HEARTBEAT_S + studies.GRACE_S + 10
    while time.monotonic() < deadline:
        studies.fail_stale(study)
        if not any(t.state == running for t in study.get_trials(deepcopy=False)):
            break
        time.sleep(1.0)
    queued = studies.waiting(study)
    if queued:
        study.optimize(objective, n_trials=queued, catch=CATCH, callbacks=callbacks[1:])


def worker_id() -> str:
    """``host:pid`` of this process: recorded with each trial's result, it says which worker
    (this machine's process, a spawned one or a Ray task on another node) ran the trial."""
    import os
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"
