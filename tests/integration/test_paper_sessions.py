"""Two real paper sessions on one store: each has its own control file, ``ctl`` reaches both."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ultrathink.engine.sessions import CONTROL_FILE_NAME, session_dir
from ultrathink.persistence import Store

EXE = str(Path(sys.executable).with_name("ultrathink"))


def _start(db: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [EXE, "paper", "--data", "synthetic:n_bars=200000,seed=3", "--speed", "30", "--db",
         str(db), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s  # readiness: the endpoint wrote its control file
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def _ctl(db: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXE, "ctl", *argv, "--db", str(db), "--operator", "ops"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_two_sessions_on_one_store_are_both_reachable_and_halt_all_stops_both(
    tmp_path: Path,
) -> None:
    db = tmp_path / "u.db"
    first = _start(db)
    _wait_for(session_dir(db, 1) / CONTROL_FILE_NAME, first)
    second = _start(db)
    procs = [first, second]
    try:
        _wait_for(session_dir(db, 2) / CONTROL_FILE_NAME, second)

        listed = _ctl(db, "sessions")
        ambiguous = _ctl(db, "status")
        status_2 = _ctl(db, "status", "--run", "2", "--json")
        halted = _ctl(db, "halt", "--all", "--reason", "exchange outage")

        assert listed.returncode == 0, listed.stderr
        assert [line.split(":")[0] for line in listed.stdout.splitlines()] == ["run 1", "run 2"]
        assert ambiguous.returncode == 2 and "pick one with --run" in ambiguous.stderr
        assert status_2.returncode == 0, status_2.stderr
        assert json.loads(status_2.stdout)["after"]["run_id"] == 2
        assert halted.returncode == 0, halted.stderr
        assert halted.stdout.count("trading_state ACTIVE → HALTED") == 2
    finally:
        for proc in procs:  # Ctrl-C to each session's process group, as a terminal would
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        outs = [proc.communicate(timeout=120) for proc in procs]
    for proc, (out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
        assert json.loads(out)["trading_state"] == "HALTED"
    with Store(db) as store:
        assert sorted(r.status for r in store.list_runs()) == ["interrupted", "interrupted"]
    assert not (session_dir(db, 1) / CONTROL_FILE_NAME).exists(), "removed when it stopped"


def test_a_deleted_stores_session_files_are_moved_aside_not_replayed(tmp_path: Path) -> None:
    # a store deleted without its .sessions directory: the next store's run 1 must not
    # find the old run 1's venue journal (it refused to start before, with a fill-id error)
    db = tmp_path / "u.db"
    argv = [EXE, "paper", "--data", "synthetic:n_bars=400,seed=3", "--speed", "max", "--db",
            str(db), "--json"]  # fmt: skip
    first = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stderr
    old_journal = (session_dir(db, 1) / "venue.sqlite").read_bytes()
    for path in tmp_path.glob("u.db*"):
        if path.is_file():
            path.unlink()

    again = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)

    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["run_id"] == 1
    notes = [line for line in again.stderr.splitlines() if line.startswith("note: run 1 is new")]
    assert len(notes) == 1, again.stderr
    (stale,) = session_dir(db, 1).glob("stale-*")
    assert notes[0].endswith(f"moved them to {stale}")
    assert (stale / "venue.sqlite").read_bytes() == old_journal, "kept, not deleted"
    assert json.loads(again.stdout)["fills"] == json.loads(first.stdout)["fills"]
