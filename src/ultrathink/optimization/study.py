"""Studies on Optuna: samplers, pruners, storages, and opening a study safely.

Optuna does the searching; this module maps the CLI's words onto it and guards what Optuna
leaves to the caller:

- the default storage is a SQLite file next to the store (``studies.db``), so a study
  survives Ctrl-C and ``kill -9``: every finished trial is committed before the next starts,
  and running the same command again continues it up to ``--n-trials`` finished trials;
- a study records what it searches (kind, target, data, space, objectives, windows, fixed
  parameters, costs) and refuses to continue with anything else, so trials of different
  questions never mix;
- on a database storage (SQLite, PostgreSQL, …) heartbeats mark a trial whose process died
  as failed (``fail_stale_trials``) instead of leaving it RUNNING, and Optuna's
  ``RetryHeartbeatStaleTrialCallback`` queues it again with the same parameters, so a worker
  killed mid-trial loses no trial (``run_trials`` runs a queued trial even when the study
  has reached ``--n-trials``);
- ``postgresql://`` URLs are opened with psycopg 3 (``postgresql+psycopg://``; SQLAlchemy's
  default driver for a bare ``postgresql://`` is psycopg2, which is not installed), while
  the URL the user gave is what is shown, its password redacted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ultrathink.errors import ConfigError, UltrathinkError
from ultrathink.optimization.space import SearchSpace

SAMPLERS = ("tpe", "gp", "cmaes", "random", "grid", "qmc", "nsga2")
PRUNERS = ("median", "hyperband", "none")
#: a trial's heartbeat; one older than the grace period belongs to a dead process
HEARTBEAT_S = 5
GRACE_S = 20
#: how many times the trial of a dead process is queued again (its retries included): a
#: parameter set that kills its worker every time is given up after that
MAX_RETRY = 3
#: seconds to wait for a database server to accept a connection (libpq waits forever)
CONNECT_TIMEOUT_S = 10
T = TypeVar("T")


class StudyError(UltrathinkError):
    """A study cannot be opened or continued as asked."""


def make_sampler(
    name: str, seed: int | None, space: SearchSpace, n_objectives: int, *, parallel: bool = False
) -> Any:
    """The Optuna sampler called ``name``.

    TPE always uses the constant liar (running trials count as bad, so workers do not all
    sample the same spot), whatever ``parallel`` says: a study is parallel not only with
    ``--n-jobs`` but whenever another process works on the same storage (two terminals, or
    hosts sharing a PostgreSQL study), which no process can know when it samples. Alone on a
    study it changes nothing: no other trial is running when one is sampled, so the trials
    are the same (tests/integration/test_study_postgres.py checks it). ``parallel`` is kept
    for the callers.
    """
    import optuna

    if name not in SAMPLERS:
        raise ConfigError(f"--sampler {name!r}: use one of {', '.join(SAMPLERS)}")
    if n_objectives > 1 and name in ("cmaes", "gp"):
        raise ConfigError(
            f"--sampler {name} optimises one objective; with several use tpe, nsga2, random, "
            "qmc or grid"
        )
    if name == "cmaes" and any(d.kind == "cat" for d in space.dimensions):
        raise ConfigError("--sampler cmaes cannot search categorical parameters; use tpe")
    samplers: dict[str, Callable[[], Any]] = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, constant_liar=True),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "grid": lambda: optuna.samplers.GridSampler(space.grid(), seed=seed),
        "qmc": lambda: optuna.samplers.QMCSampler(seed=seed, scramble=True),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
    }
    if name == "gp":
        try:
            import torch  # noqa: F401  (the GP sampler's dependency)
        except ImportError:
            raise ConfigError(
                "--sampler gp needs PyTorch, which is not installed here "
                "(pip install torch); tpe, cmaes and qmc need nothing more"
            ) from None
    return samplers[name]()


def check_run_options(n_trials: int, timeout_s: float | None, n_jobs: int) -> None:
    """``--n-trials``, ``--timeout`` and ``--n-jobs`` make sense."""
    if n_trials < 1:
        raise ConfigError(f"--n-trials must be at least 1, was {n_trials}")
    if timeout_s is not None and not timeout_s > 0:
        raise ConfigError(f"--timeout must be positive, was {timeout_s}")
    if not 1 <= n_jobs <= 64:
        raise ConfigError(f"--n-jobs must be between 1 and 64, was {n_jobs}")


def with_storage(spec: T) -> T:
    """``spec`` with its storage URL decided: the one given, else ``studies.db`` beside the
    store, or with ``--n-jobs`` > 1 or ``--ray`` the journal file ``studies.journal`` beside
    it (SQLite is not built for several writing processes; across machines, pass
    ``--storage postgresql://…``)."""
    from ultrathink import services

    url = spec.storage  # type: ignore[attr-defined]
    # several processes: --n-jobs, or --ray (whose workers are processes of the cluster)
    parallel = spec.n_jobs > 1 or getattr(spec, "ray", None) is not None  # type: ignore[attr-defined]
    if url is None:
        db = services.resolve_db(spec.db)  # type: ignore[attr-defined]
        if parallel:
            url = f"journal:{(db.parent / 'studies.journal').resolve()}"
        else:
            url = default_storage(db)
    elif parallel and url.startswith("sqlite:"):
        raise ConfigError(
            "--n-jobs > 1 and --ray cannot share a SQLite storage between processes; use "
            "--storage journal:PATH (the default with --n-jobs) or postgresql://…"
        )
    return dataclasses.replace(spec, storage=url)  # type: ignore[type-var]


def make_pruner(name: str, n_steps: int) -> Any:
    """The Optuna pruner called ``name`` (``none`` never prunes)."""
    import optuna

    if name not in PRUNERS:
        raise ConfigError(f"--pruner {name!r}: use one of {', '.join(PRUNERS)}")
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(n_steps, 1))
    return optuna.pruners.NopPruner()


def default_storage(store_path: Path) -> str:
    """``sqlite:///…/studies.db`` beside the store."""
    return f"sqlite:///{(store_path.parent / 'studies.db').resolve()}"


def make_storage(url: str, *, heartbeat_s: int = HEARTBEAT_S, grace_s: int = GRACE_S) -> Any:
    """An Optuna storage for ``url`` (any RDB URL; ``journal:PATH`` for a journal file).

    A database storage records a heartbeat of every running trial; a trial whose heartbeat
    is older than the grace period (its process died) is failed by the next process that
    starts a trial or opens the study, and queued again with the same parameters. A trial
    whose process died before its first heartbeat is covered too (``heartbeat.py``).
    """
    import optuna

    from ultrathink.optimization.heartbeat import HeartbeatStorage

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url.removeprefix("journal:"))
        _writable_parent(path)
        return JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite:///"):
        _writable_parent(Path(url.removeprefix("sqlite:///")))
    try:
        with _no_experimental_warnings():
            storage = HeartbeatStorage(
                sqlalchemy_url(url),
                engine_kwargs=_engine_kwargs(url),
                heartbeat_interval=heartbeat_s,
                grace_period=grace_s,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=MAX_RETRY
                ),
            )
    except ImportError as exc:  # the URL names a driver that is not installed
        why = _first_line(exc.__cause__ or exc)
        raise StudyError(
            f"storage {redact(url)} cannot be opened: {why} (its driver is not installed; "
            "postgresql://… uses psycopg 3, which is)"
        ) from None
    except Exception as exc:  # SQLAlchemy raises many kinds; all mean "not reachable"
        raise StudyError(f"storage {redact(url)} cannot be opened: {_first_line(exc)}") from None
    if url.startswith("sqlite:"):
        _sqlite_wal(storage)
    return storage


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep else ""


def sqlalchemy_url(url: str) -> str:
    """The URL SQLAlchemy opens for ``url``: ``postgresql://`` and ``postgres://`` through
    psycopg 3 (``postgresql+psycopg://``); any other URL, an explicit driver included, as
    given."""
    if _scheme(url) in ("postgresql", "postgres"):
        return "postgresql+psycopg://" + url.partition("://")[2]
    return url


def _engine_kwargs(url: str) -> dict[str, Any]:
    """A PostgreSQL connection gives up after ``CONNECT_TIMEOUT_S`` (unless the URL sets
    ``connect_timeout``), so an unreachable server is an error, not a hang."""
    if sqlalchemy_url(url).startswith("postgresql+psycopg://") and "connect_timeout=" not in url:
        return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return {}


def _sqlite_wal(storage: Any) -> None:
    """WAL with ``synchronous=NORMAL`` on a SQLite study: a commit survives the process
    being killed (only an OS crash may lose the last ones), at a third less time per trial
    than the default rollback journal with a sync per commit (docs/optimization.md)."""
    from sqlalchemy import event

    def on_connect(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # the connection made while creating the tables had neither


def _writable_parent(path: Path) -> None:
    parent = path.expanduser().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudyError(f"cannot create {parent}: {exc.strerror}") from None


def redact(url: str) -> str:
    """``url`` without its password (``user:***@host``; a ``password=`` query value too)."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        creds, _, host = rest.rpartition("@")
        if ":" in creds:
            rest = f"{creds.split(':', 1)[0]}:***@{host}"
    url = f"{scheme}{sep}{rest}"
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)


def without_password(url: str) -> str:
    """``url`` with no password at all, to print as a command someone can run (the driver
    takes the password from ``PGPASSWORD`` or ``~/.pgpass`` instead)."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        creds, _, host = rest.rpartition("@")
        rest = f"{creds.split(':', 1)[0]}@{host}"
    url = f"{scheme}{sep}{rest}"
    url = re.sub(r"(?i)([?&])password=[^&]*&?", r"\1", url)
    return url.rstrip("?&")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def open_study(
    storage: Any,
    name: str,
    directions: Sequence[str],
    sampler: Any,
    pruner: Any,
    identity: Mapping[str, Any],
) -> tuple[Any, bool]:
    """Create the study ``name`` or load it; returns ``(study, existed)``.

    ``identity`` is what the study searches; an existing study with another identity is
    refused, naming the first difference.
    """
    import json

    import optuna

    identity = json.loads(json.dumps(identity))  # as stored: tuples are lists
    with _quiet_optuna():
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=name,
                directions=list(directions),  # type: ignore[arg-type]
                sampler=sampler,
                pruner=pruner,
                load_if_exists=True,
            )
        except ValueError as exc:  # directions differ from the stored study's
            raise StudyError(f"study {name!r} exists with other objectives: {exc}") from None
        except Exception as exc:
            raise StudyError(f"study {name!r} cannot be opened: {_first_line(exc)}") from None
    stored = study.user_attrs.get("identity")
    if stored is None:
        study.set_user_attr("identity", dict(identity))
        return study, bool(study.trials)
    for key in sorted(set(stored) | set(identity)):
        if stored.get(key) != identity.get(key):
            raise StudyError(
                f"study {name!r} exists with another {key}: it has {stored.get(key)!r}, "
                f"this command asks for {identity.get(key)!r}; choose another --study name"
            )
    return study, True


def fail_stale(study: Any) -> int:
    """Mark the trials of dead processes failed (and, on a database storage, queue them
    again: ``make_storage``); returns how many."""
    import optuna

    try:
        before = sum(t.state == optuna.trial.TrialState.RUNNING for t in study.trials)
        with _no_experimental_warnings():
            optuna.storages.fail_stale_trials(study)
        after = sum(t.state == optuna.trial.TrialState.RUNNING for t in study.trials)
    except Exception:  # the journal storage has no heartbeats
        return 0
    return int(before - after)


def trial_kind(trial: Any) -> str:
    """complete, pruned, rejected (failed with a reason: it counts as a trial), interrupted
    (failed without one: its process was stopped or died), running or waiting."""
    name = str(trial.state.name).lower()
    if name == "fail":
        return "rejected" if "fail_reason" in trial.user_attrs else "interrupted"
    return name


def trial_counts(study: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        kind = trial_kind(trial)
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def waiting(study: Any) -> int:
    """Queued trials (a dead process's trial queued again, or one enqueued by hand): they
    are run even when the study has reached its ``--n-trials``, so none is lost."""
    import optuna

    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))


def finished(study: Any) -> int:
    """Trials that count towards ``--n-trials``: complete, pruned or rejected. A trial
    interrupted by Ctrl-C or a crash does not count, so it is run again."""
    return finished_in(trial_counts(study))


def finished_in(counts: Mapping[str, int]) -> int:
    """``finished`` from ``trial_counts``."""
    return sum(counts.get(k, 0) for k in ("complete", "pruned", "rejected"))


@contextlib.contextmanager
def _no_experimental_warnings() -> Iterator[None]:
    """Heartbeats are "experimental" in Optuna 5; the feature is what we rely on, the
    warning tells the user nothing."""
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    logger = logging.getLogger("optuna")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def silence_optuna() -> None:
    """Optuna logs every trial at INFO; the CLI shows its own progress instead."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)


def finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def load_existing(url: str, name: str) -> Any:
    """The stored study ``name`` (a clear error naming the studies there when it is not)."""
    import optuna

    storage = make_storage(url)
    with _quiet_optuna():
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        if name not in names:
            there = ", ".join(sorted(names)) or "none"
            raise StudyError(f"no study {name!r} in {redact(url)} (studies there: {there})")
        return optuna.load_study(study_name=name, storage=storage)


def study_winner(url: str, name: str) -> dict[str, Any]:
    """What ``backtest --params-from NAME`` reruns: the strategy and its winning params."""
    study = load_existing(url, name)
    winner = study.user_attrs.get("winner")
    if not winner:
        kind = (study.user_attrs.get("identity") or {}).get("kind", "?")
        why = (
            "it is a model study; its winner is a registry version"
            if kind == "model"
            else "it has no single winner (no completed trial, or a Pareto front)"
        )
        raise StudyError(f"study {name!r} has no strategy parameters to rerun: {why}")
    return dict(winner)
