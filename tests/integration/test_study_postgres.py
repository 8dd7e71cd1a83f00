"""``ultrathink optimize`` on a real PostgreSQL server (the throwaway cluster of
``pg_fixtures.py``), through the real console script in subprocesses.

A study completes and resumes on PostgreSQL; two workers share one study and one is killed
with SIGKILL in the middle of a trial: its trial is failed by the heartbeat, run again with
the same parameters, and the study still reaches its target; a wrong URL is one line.
Readiness is polled against generous deadlines, never assumed after a fixed sleep, and no
assertion is about elapsed time, so a busy machine makes the tests slower, not flaky.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from tests.integration import pg_fixtures
from tests.integration.conftest import console_script
from tests.integration.pg_fixtures import PgCluster

from ultrathink.optimization import study as studies
from ultrathink.optimization.space import SearchSpace
from ultrathink.optimization.trials import dashboard_command

SPACE = ("--strategy", "sma_cross", "--space", "fast=int:5:30", "--space", "slow=int:40:120")
#: a slower backtest than sp500's, so a worker spends most of its time inside a trial
SLOW_DATA = "synthetic:n_bars=20000,seed=3"
DEADLINE_S = 600.0
POLL_S = 0.05

# the throwaway cluster's fixtures, registered in this module
postgres_cluster = pg_fixtures.postgres_cluster
postgres_database = pg_fixtures.postgres_database


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ULTRATHINK")}
    return {**env, "ULTRATHINK_HOME": str(home), "COLUMNS": "200"}


def _optimize(url: str, study: str, n_trials: int, *extra: str) -> list[str]:
    return [
        str(console_script()), "optimize", "strategy", *SPACE, "--n-trials", str(n_trials),
        "--storage", url, "--study", study, *extra,
    ]  # fmt: skip


def _run(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=tmp_path, env=_env(tmp_path / "home"), capture_output=True, text=True,
        timeout=DEADLINE_S, check=False,
    )  # fmt: skip


@pytest.fixture
def reader(postgres_database: str) -> Iterator[Callable[[str], list[Any]]]:
    """``read(study)``: the study's trials as stored now (``[]`` before it exists)."""
    storage = optuna.storages.RDBStorage(studies.sqlalchemy_url(postgres_database))

    def read(name: str) -> list[Any]:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:  # not created yet
            return []
        return study.get_trials(deepcopy=False)

    yield read
    storage.remove_session()
    storage.engine.dispose()


def _state(trial: Any) -> str:
    return str(trial.state.name)


def _wait(
    condition: Callable[[], bool],
    what: str,
    timeout_s: float = DEADLINE_S,
    explain: Callable[[], str] = lambda: "",
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} {explain()}")
        time.sleep(POLL_S)


def _stopped(pid: int) -> bool:
    """The process is stopped (SIGSTOP delivered): state T in /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rpartition(")")[2].split()[0] in ("T", "t")


# -- without a server ----------------------------------------------------------------------


def test_postgresql_urls_use_psycopg3_and_never_show_a_password() -> None:
    assert studies.sqlalchemy_url("postgresql://u:pw@h:5432/db") == (
        "postgresql+psycopg://u:pw@h:5432/db"
    )
    assert studies.sqlalchemy_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    for url in ("postgresql+psycopg2://u@h/db", "sqlite:////tmp/s.db", "journal:/tmp/j"):
        assert studies.sqlalchemy_url(url) == url  # an explicit driver is the user's choice
    assert studies.redact("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert studies.redact("postgresql://u@h/db") == "postgresql://u@h/db"
    assert studies.redact("postgresql://u@h/db?sslmode=require&password=pw") == (
        "postgresql://u@h/db?sslmode=require&password=***"
    )
    # the dashboard command runs as printed: psycopg 3, the password left to PGPASSWORD
    assert dashboard_command("postgresql://u:pw@h/db?password=pw") == (
        "optuna-dashboard postgresql+psycopg://u@h/db"
    )
    assert dashboard_command("sqlite:////tmp/s.db") == "optuna-dashboard sqlite:////tmp/s.db"


def test_a_database_storage_has_heartbeats_and_retries_a_dead_workers_trial(
    tmp_path: Path,
) -> None:
    storage = studies.make_storage(f"sqlite:///{tmp_path / 'studies.db'}")
    try:
        assert storage.heartbeat_interval == studies.HEARTBEAT_S
        assert storage.grace_period == studies.GRACE_S
        callback = storage.heartbeat_stale_trial_callback
        assert isinstance(callback, optuna.storages.RetryHeartbeatStaleTrialCallback)
    finally:
        storage.engine.dispose()


def test_a_server_that_never_answers_is_an_error_not_a_hang() -> None:
    """libpq alone would wait forever for a server that accepts and never answers."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever replies
        port = silent.getsockname()[1]
        with pytest.raises(studies.StudyError, match=r"cannot be opened: .*timeout"):
            studies.make_storage(f"postgresql://u:secret@127.0.0.1:{port}/x")


def test_tpe_lies_about_running_trials_and_alone_samples_the_same_trials() -> None:
    """The constant liar is on in every TPE study (another process may share the storage);
    with no other trial running it changes nothing, so a seeded study still repeats."""
    space = SearchSpace.parse(["x=float:-5:5", "n=int:1:50"])
    sampler = studies.make_sampler("tpe", 3, space, 1, parallel=False)
    assert sampler._constant_liar  # the callers pass parallel=False for one process

    def run(sampler: Any) -> list[dict[str, Any]]:
        study = optuna.create_study(sampler=sampler)
        study.optimize(lambda t: (t.suggest_float("x", -5, 5) - 1) ** 2 + t.suggest_int("n", 1, 50),
                       n_trials=30)  # fmt: skip
        return [t.params for t in study.trials]

    studies.silence_optuna()
    lying = run(sampler)
    honest = run(optuna.samplers.TPESampler(seed=3, constant_liar=False))
    assert lying == honest


# -- on the throwaway cluster --------------------------------------------------------------


def test_a_strategy_study_completes_on_postgresql_and_a_second_run_resumes_it(
    postgres_database: str, reader: Callable[[str], list[Any]], tmp_path: Path
) -> None:
    first = _run(_optimize(postgres_database, "pg", 6, "--seed", "1", "--json"), tmp_path)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert out["storage"] == postgres_database  # as given: no driver, no password to hide
    assert not out["resumed"] and out["new_trials"] == 6
    before = [(t.number, _state(t), t.params, t.values) for t in reader("pg")]
    assert len(before) == 6 and all(state != "RUNNING" for _, state, _, _ in before)

    again = _run(_optimize(postgres_database, "pg", 9, "--seed", "1"), tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"study pg (continued; {postgres_database}): " in again.stdout
    assert "3 new in" in again.stdout
    assert f"optuna-dashboard {studies.sqlalchemy_url(postgres_database)}" in again.stdout
    after = [(t.number, _state(t), t.params, t.values) for t in reader("pg")]
    assert after[:6] == before and len(after) == 9  # nothing finished was lost or redone
    assert all(state in ("COMPLETE", "PRUNED", "FAIL") for _, state, _, _ in after)


def test_a_worker_killed_mid_trial_loses_no_trial(
    postgres_cluster: PgCluster,
    postgres_database: str,
    reader: Callable[[str], list[Any]],
    tmp_path: Path,
) -> None:
    target = 16  # enough trials that the study cannot end while the victim is looked for
    common = ("--data", SLOW_DATA, "--min-trades", "1", "--pruner", "none", "--json")
    argv = _optimize(postgres_database, "shared", target, *common)
    env = _env(tmp_path / "home")
    logs = {name: (tmp_path / f"{name}.out", tmp_path / f"{name}.err") for name in "ab"}
    procs = {}
    for name, seed in (("a", "1"), ("b", "2")):
        out_path, err_path = logs[name]
        with out_path.open("w") as out, err_path.open("w") as err:
            procs[name] = subprocess.Popen(
                [*argv, "--seed", seed], cwd=tmp_path, env=env, stdout=out, stderr=err
            )
    victim, survivor = procs["a"], procs["b"]
    try:
        orphan = _kill_in_a_trial(victim, survivor, reader, postgres_cluster)
        assert survivor.wait(timeout=DEADLINE_S) == 0, logs["b"][1].read_text()
        # the heartbeat of the orphan stopped with its process; once it is older than the
        # grace period, the next process that opens the study fails it and queues it again
        # (the survivor did already if it was still running trials by then)
        _wait(lambda: time.monotonic() > orphan["killed_at"] + studies.GRACE_S + 1,
              "the grace period of the killed trial's heartbeat")  # fmt: skip
        rerun = _run([*argv, "--seed", "3"], tmp_path)
        assert rerun.returncode == 0, rerun.stderr
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=60)

    trials = reader("shared")
    by_number = {t.number: t for t in trials}
    assert not [t.number for t in trials if _state(t) in ("RUNNING", "WAITING")]
    killed = by_number[orphan["number"]]
    assert _state(killed) == "FAIL" and "fail_reason" not in killed.user_attrs
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1, [(t.number, _state(t), t.system_attrs) for t in trials]
    assert _state(retries[0]) == "COMPLETE" and retries[0].params == killed.params
    assert sum(_state(t) == "COMPLETE" for t in trials) >= target
    assert json.loads(rerun.stdout)["counts"].get("interrupted") == 1


def _kill_in_a_trial(
    victim: subprocess.Popen[bytes],
    survivor: subprocess.Popen[bytes],
    reader: Callable[[str], list[Any]],
    cluster: PgCluster,
) -> dict[str, Any]:
    """SIGKILL ``victim`` while it holds a RUNNING trial; returns that trial's number.

    Trials do not say which process runs them, so the victim is frozen (SIGSTOP) and the
    survivor let run: a process runs one trial at a time, so once the survivor has ended two
    more trials (or exited), a trial that was RUNNING at the freeze and is neither finished
    nor failed with a reason is the victim's. If the victim was between trials, or inside
    one whose parameters were not sampled yet, or inside a transaction that holds a lock the
    survivor waits for (Optuna locks the study row to number a new trial), it is thawed and
    frozen again once a trial has ended.
    """

    def explain() -> str:
        trials = [(t.number, _state(t), t.params) for t in reader("shared")]
        sessions = cluster.execute(
            "SELECT pid, state, wait_event_type, wait_event, left(query, 80) "
            "FROM pg_stat_activity WHERE backend_type = 'client backend'"
        )
        return (
            f"victim {victim.poll()} survivor {survivor.poll()} trials {trials} sessions {sessions}"
        )

    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        _wait(
            lambda: (
                victim.poll() is not None or any(_state(t) == "RUNNING" for t in reader("shared"))
            ),
            "a running trial",
            explain=explain,
        )
        assert victim.poll() is None, f"the worker to kill ended first: {explain()}"
        victim.send_signal(signal.SIGSTOP)
        _wait(lambda: _stopped(victim.pid), "the worker to stop", timeout_s=60)
        frozen = {t.number for t in reader("shared") if _state(t) == "RUNNING"}
        base = studies.finished_in(_counts(reader("shared")))

        def moved_on(base: int = base) -> bool:
            ended = studies.finished_in(_counts(reader("shared")))
            return survivor.poll() is not None or ended >= base + 2

        _wait(
            lambda: moved_on() or _lock_waits(cluster),
            "the survivor to end two trials",
            explain=explain,
        )
        held = moved_on() and [  # frozen inside the objective, its parameters stored
            t.number
            for t in reader("shared")
            if t.number in frozen
            and (_state(t) == "RUNNING" or studies.trial_kind(t) == "interrupted")
            and set(t.params) == {"fast", "slow"}
        ]
        if held:
            victim.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            victim.wait(timeout=60)
            return {"number": held[0], "killed_at": killed_at}
        # between trials, sampling, or blocking the survivor: thaw it, and freeze it again
        # only once a trial has ended since, so that it is caught at another point
        ended = studies.finished_in(_counts(reader("shared")))
        victim.send_signal(signal.SIGCONT)

        def another_ended(ended: int = ended) -> bool:
            now = studies.finished_in(_counts(reader("shared")))
            return victim.poll() is not None or now > ended

        _wait(another_ended, "a trial to end", explain=explain)
    raise AssertionError("never caught the worker inside a trial")


def _lock_waits(cluster: PgCluster) -> bool:
    """Some session waits for a lock (the frozen worker's open transaction holds it)."""
    return bool(cluster.execute("SELECT 1 FROM pg_locks WHERE NOT granted LIMIT 1"))


def _counts(trials: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in trials:
        kind = studies.trial_kind(trial)
        counts[kind] = counts.get(kind, 0) + 1
    return counts


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u:secret@127.0.0.1:1/ultrathink", "Connection refused"),
        ("{server}/no_such_db", 'database "no_such_db" does not exist'),
        ("postgresql://nobody:secret@{host}/ultrathink", 'role "nobody" does not exist'),
        ("postgresql+psycopg2://u:secret@{host}/ultrathink", "No module named 'psycopg2'"),
    ],
)
def test_a_wrong_postgresql_url_is_one_line(
    postgres_cluster: PgCluster, tmp_path: Path, url: str, message: str
) -> None:
    """(tests/integration/test_optimize_cli.py covers an unreachable port in process; here
    the console script meets a real server that refuses the database or the role.)"""
    server = postgres_cluster.url.rpartition("/")[0]
    url = url.format(server=server, host=f"127.0.0.1:{postgres_cluster.port}")
    result = _run(_optimize(url, "s", 1), tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: storage ") and "cannot be opened" in result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr and "secret" not in result.stderr
    assert result.stdout == ""
