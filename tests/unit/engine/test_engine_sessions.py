"""Session directories and the run lock (``engine/sessions.py``), with real processes.

The lock is an OS ``flock``: a second process is refused and told who holds it, and the
kernel releases it when the holder dies however it dies — ``kill -9`` included. Holders run
as subprocesses; the test waits for the holder's own "locked" line before it looks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ultrathink.engine.sessions import (
    CONTROL_FILE_NAME,
    LOCK_NAME,
    RunLock,
    is_live,
    live_sessions,
    session_dir,
    sessions_root,
)
from ultrathink.errors import ConfigError

# acquires the lock of the directory argv[1] (run 5), says so, and holds it until killed
# (or until its stdin closes)
HOLDER = """
import sys
from pathlib import Path
from ultrathink.engine.sessions import RunLock
lock = RunLock(Path(sys.argv[1]), 5).acquire()
print("locked", flush=True)
sys.stdin.read()
"""
# tries once to acquire the lock of argv[1] (run 5): prints "acquired" or the refusal
TRY = """
import sys
from pathlib import Path
from ultrathink.engine.sessions import RunLock
from ultrathink.errors import ConfigError
try:
    RunLock(Path(sys.argv[1]), 5).acquire()
except ConfigError as exc:
    print(exc)
    sys.exit(3)
print("acquired")
"""


@contextmanager
def holder(directory: Path) -> Iterator[subprocess.Popen[str]]:
    """A process that holds the run lock of ``directory``, once it has said so."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(directory)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the readiness signal (EOF if it died first)
        if line != "locked\n":
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"the lock holder did not start: {line!r} {err}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def try_lock(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", TRY, str(directory)], capture_output=True, text=True, check=False
    )


def test_a_second_process_is_refused_and_told_which_process_holds_the_run(
    tmp_path: Path,
) -> None:
    directory = session_dir(tmp_path / "store.db", 5)
    with RunLock(directory, 5) as lock:
        assert lock.path == directory / LOCK_NAME and is_live(directory)

        other = try_lock(directory)

        assert other.returncode == 3, other.stderr
        assert f"run 5 is live in process {os.getpid()}" in other.stdout
        assert "one process per run" in other.stdout
    assert not is_live(directory)
    assert try_lock(directory).stdout.strip() == "acquired", "free once released"


def test_the_lock_is_released_when_its_holder_is_killed(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    directory = session_dir(db, 5)

    with holder(directory) as proc:
        (directory / CONTROL_FILE_NAME).write_text(json.dumps({"url": "http://x"}))
        assert is_live(directory)
        assert [s.run_id for s in live_sessions(db)] == [5]
        with pytest.raises(ConfigError, match=rf"run 5 is live in process {proc.pid} "):
            RunLock(directory, 5).acquire()

        proc.kill()  # SIGKILL: no cleanup code runs in the holder
        assert proc.wait() == -9

        assert not is_live(directory)
        assert live_sessions(db) == [], "a dead session's control file is ignored"
        with RunLock(directory, 5):  # resumable at once
            assert is_live(directory)


def test_a_lock_can_be_taken_again_after_release_and_release_is_idempotent(
    tmp_path: Path,
) -> None:
    lock = RunLock(tmp_path / "run-1", 1)

    lock.acquire()
    lock.release()
    lock.release()

    assert not is_live(tmp_path / "run-1")
    with lock:
        assert (tmp_path / "run-1" / LOCK_NAME).read_text() == f"{os.getpid()}\n"


def test_an_unlocked_or_missing_directory_is_not_live(tmp_path: Path) -> None:
    assert not is_live(tmp_path / "nowhere")
    (tmp_path / "run-1").mkdir()
    (tmp_path / "run-1" / LOCK_NAME).write_text("12345\n")  # left by a dead process
    assert not is_live(tmp_path / "run-1")


def test_live_sessions_lists_only_held_sessions_with_a_control_file(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    root = sessions_root(db)
    assert root == tmp_path / "store.db.sessions" and live_sessions(db) == []

    def make(name: str, *, held: bool, control: str | None) -> RunLock | None:
        directory = root / name
        directory.mkdir(parents=True)
        (directory / LOCK_NAME).write_text("")
        if control is not None:
            (directory / CONTROL_FILE_NAME).write_text(control)
        return RunLock(directory, None).acquire() if held else None

    good = json.dumps({"url": "http://127.0.0.1:1", "token": "t"})
    held = [
        make("run-10", held=True, control=good),
        make("run-2", held=True, control=good),
        make("nostore-77", held=True, control=good),  # a session without a store
        make("run-3", held=True, control=None),  # live, but its endpoint is not serving
        make("run-4", held=True, control="{not json"),  # a control file being written
        make("run-5", held=True, control="[1, 2]"),  # not an object
        make("other", held=True, control=good),  # not a session directory
        make("run-x", held=True, control=good),
    ]
    make("run-6", held=False, control=good)  # the process is gone
    try:
        sessions = live_sessions(db)
    finally:
        for lock in held:
            assert lock is not None
            lock.release()

    assert [(s.run_id, s.directory.name) for s in sessions] == [
        (2, "run-2"), (10, "run-10"), (None, "nostore-77"),
    ]  # fmt: skip
    assert sessions[0].content == {"url": "http://127.0.0.1:1", "token": "t"}
    assert sessions[0].control_file == root / "run-2" / CONTROL_FILE_NAME
    assert live_sessions(db) == [], "every lock released"


def test_archive_stale_moves_journals_with_their_sqlite_sidecars(tmp_path: Path) -> None:
    from ultrathink.engine.sessions import archive_stale

    run = tmp_path / "run-1"
    run.mkdir()
    for name in ("venue.sqlite", "venue.sqlite-wal", "venue.sqlite-shm", "inputs.jsonl",
                 "feed.ndjson", LOCK_NAME):  # fmt: skip
        (run / name).write_text(name)
    assert archive_stale(tmp_path / "empty", "T") is None

    first = archive_stale(run, "20261206T000000Z")
    assert first == run / "stale-20261206T000000Z"
    assert sorted(p.name for p in first.iterdir()) == [
        "feed.ndjson",
        "inputs.jsonl",
        "venue.sqlite",
        "venue.sqlite-shm",
        "venue.sqlite-wal",
    ]
    assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME, first.name], "the lock stays"
    (run / "venue.sqlite").write_text("again")  # a second deleted store, the same second
    second = archive_stale(run, "20261206T000000Z")
    assert second == run / "stale-20261206T000000Z-2"
    assert (second / "venue.sqlite").read_text() == "again"
