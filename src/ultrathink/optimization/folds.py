"""Fitting one trial's walk-forward folds, in turn or all at once (``--parallel-folds N``).

A model trial fits the ensemble once per purged fold. In turn, the trial reports its running
mean after each fold and the pruner may stop it before the next fit: that is what pruning
saves. With ``--parallel-folds N`` every fold's fit is submitted at once, to a local process
pool of N workers or, when the study runs on Ray, as Ray tasks that read the rows from the
object store (put once per process); the trial then takes the predictions **in fold
order** and reports them exactly as the in-turn path does, so the pruner sees the same
sequence and prunes at the same fold. The trade-off: a pruned trial has already paid for
all its folds (the ones still queued are cancelled, the running ones finish), so parallel
folds suit studies that prune little (``--pruner none``) on a machine with idle cores; a
study with many trials and few cores gains as much from ``--n-jobs``, which spreads trials.

Results are bit-identical either way: both paths call ``fit_predict`` (the members are
seeded and single-threaded, ``EnsembleClassifier`` ``n_jobs=1``), on the same rows with the
same parameters, and everything after the predictions (scores, returns, reports) runs in
the trial's own process, in fold order (``tests/integration/test_study_parallel_folds.py``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Generator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Protocol

import numpy as np

from ultrathink.errors import ConfigError

#: times Ray runs a fold task again after its worker died
MAX_TASK_RETRIES = 3
Split = tuple[np.ndarray, np.ndarray]


def fit_predict(
    params: dict[str, Any], X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray
) -> np.ndarray:
    """The ensemble fitted on ``train``'s rows, its P(up) on ``test``'s: one fold's work."""
    from ultrathink.models.ensemble import EnsembleClassifier

    model = EnsembleClassifier(**params).fit(X[train], y[train])
    return np.asarray(model.predict_proba(X[test])[:, 1])


class FoldRunner(Protocol):
    def predictions(
        self, params: dict[str, Any], splits: Sequence[Split]
    ) -> Generator[np.ndarray, None, None]:
        """Each fold's predictions, in fold order; closing the iterator early (a pruned
        trial) cancels what has not started."""
        ...

    def close(self) -> None: ...


def check_parallel_folds(n: int, n_jobs: int, ray: str | None) -> None:
    """``--parallel-folds`` makes sense with the other options."""
    if not 1 <= n <= 64:
        raise ConfigError(f"--parallel-folds must be between 1 and 64, was {n}")
    if n > 1 and n_jobs > 1 and ray is None:
        raise ConfigError(
            "--parallel-folds and --n-jobs both spread work over this machine's cores; use "
            "one (--n-jobs spreads trials, --parallel-folds one trial's folds), or --ray"
        )


def make_runner(n: int, X: np.ndarray, y: np.ndarray) -> FoldRunner:
    """In turn for ``n`` <= 1; Ray tasks when this process is connected to Ray (the command
    with ``--ray``, or a study worker running as a Ray task); else a local pool of ``n``."""
    if n <= 1:
        return InTurn(X, y)
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return OnRay(ray, X, y)
    return LocalPool(n, X, y)


class InTurn:
    """Each fold fitted when the trial asks for it: a pruned trial fits no more folds."""

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        self.X, self.y = X, y

    def predictions(
        self, params: dict[str, Any], splits: Sequence[Split]
    ) -> Generator[np.ndarray, None, None]:
        for train, test in splits:
            yield fit_predict(params, self.X, self.y, train, test)

    def close(self) -> None:
        pass


# --- a local process pool ----------------------------------------------------------------------
_ROWS: dict[str, np.ndarray] = {}


def _init_worker(X: np.ndarray, y: np.ndarray) -> None:
    """A pool worker: holds the rows (sent once, at start), dies with its parent, leaves
    Ctrl-C to the parent."""
    import signal

    with contextlib.suppress(Exception):  # Linux only; elsewhere the pool's own shutdown
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _ROWS.update(X=X, y=y)


def _pool_fold(params: dict[str, Any], train: np.ndarray, test: np.ndarray) -> np.ndarray:
    return fit_predict(params, _ROWS["X"], _ROWS["y"], train, test)


class LocalPool:
    """``n`` spawned worker processes (not forked: the trial's process holds database
    connections and Optuna's heartbeat thread), each given the rows once."""

    def __init__(self, n: int, X: np.ndarray, y: np.ndarray) -> None:
        import multiprocessing

        self.pool = ProcessPoolExecutor(
            max_workers=n, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker, initargs=(X, y),
        )  # fmt: skip

    def predictions(
        self, params: dict[str, Any], splits: Sequence[Split]
    ) -> Generator[np.ndarray, None, None]:
        futures: list[Future[np.ndarray]] = [
            self.pool.submit(_pool_fold, params, train, test) for train, test in splits
        ]
        try:
            for fut in futures:
                yield fut.result()
        finally:
            for fut in futures:
                fut.cancel()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


# --- Ray -----------------------------------------------------------------------------------------
def _ray_fold(
    params: dict[str, Any], X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray
) -> np.ndarray:
    # Ray resolves the top-level ObjectRefs: X and y are zero-copy views of the object store
    return fit_predict(params, X, y, train, test)


class OnRay:
    """Each fold a Ray task (1 CPU, retried when its worker dies); the rows are put into
    the object store once and passed by reference."""

    def __init__(self, ray: Any, X: np.ndarray, y: np.ndarray) -> None:
        self.ray = ray
        self.refs = (ray.put(X), ray.put(y))
        self.remote = ray.remote(num_cpus=1, max_retries=MAX_TASK_RETRIES)(_ray_fold)

    def predictions(
        self, params: dict[str, Any], splits: Sequence[Split]
    ) -> Generator[np.ndarray, None, None]:
        refs = [self.remote.remote(params, *self.refs, train, test) for train, test in splits]
        taken = 0
        try:
            for ref in refs:
                fold = np.asarray(self.ray.get(ref))
                taken += 1
                yield fold
        finally:
            self._cancel_unfinished(refs[taken:])

    def _cancel_unfinished(self, refs: list[Any]) -> None:
        # a pruned trial's folds not taken yet, and only those not finished: cancelling a
        # task whose result is already in the object store races with its completion in
        # Ray's task manager, which can abort the whole driver ("Check failed: it !=
        # submissible_tasks_.end() Tried to complete task that was not pending", seen with
        # Ray 2.60 when every finished fold was cancelled after a trial)
        if not refs:
            return
        with contextlib.suppress(Exception):  # Ray shut down meanwhile
            _, refs = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in refs:
            with contextlib.suppress(Exception):  # finished meanwhile, or Ray shut down
                self.ray.cancel(ref)

    def close(self) -> None:
        pass  # the object store frees the rows when the references go
