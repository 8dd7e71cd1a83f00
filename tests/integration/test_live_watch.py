"""The dashboard's live watch against a real paper session (``web/live.py``).

A paced paper session runs in its own process; the watch follows it only through the
session's control API, as the dashboard process does, and its commands go the way
``ultrathink ctl``'s go: validated by the session and audited with the operator's name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ultrathink.engine.sessions import CONTROL_FILE_NAME, session_dir
from ultrathink.persistence import Store
from ultrathink.web.live import LiveHub, LiveWatch

EXE = str(Path(sys.executable).with_name("ultrathink"))
DEADLINE_S = 120.0  # generous: a busy machine is slow, never wrong


def wait_until(check: Callable[[], object], what: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        if proc.poll() is not None:
            raise AssertionError(f"the session exited before {what}: {proc.communicate()[1]}")
        assert time.monotonic() < deadline, f"no {what} within {DEADLINE_S:g} s"
        time.sleep(0.05)


@pytest.fixture
def paper(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    db = tmp_path / "u.db"
    proc = subprocess.Popen(
        [EXE, "paper", "--data", "synthetic:n_bars=200000,seed=3", "--speed", "200", "--db",
         str(db), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        control = session_dir(db, 1) / CONTROL_FILE_NAME
        wait_until(control.exists, "its control file", proc)
        yield db, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=120)


def test_the_watch_follows_the_session_and_its_kill_switch_is_audited_with_the_operator(
    paper: tuple[Path, subprocess.Popen[str]],
) -> None:
    db, proc = paper
    hub = LiveHub(db, interval_s=0.05)
    try:
        assert [s["key"] for s in hub.sessions()] == ["run-1"]
        assert hub.watch("run-9") is None
        watch = hub.watch("run-1")
        assert isinstance(watch, LiveWatch)
        wait_until(lambda: len(watch.series["equity"]) >= 3, "three snapshots", proc)
        # the session publishes on a timer, so on a busy machine its first snapshots may all
        # come before its first bar: wait for the clock to move, never assume it has
        wait_until(
            lambda: watch.series["clock_ns"][-1] > watch.series["clock_ns"][0],
            "the session clock to move",
            proc,
        )
        wait_until(lambda: watch.process.get("rss_mb", 0) > 0, "a process sample", proc)
        first, cursor = watch.frame(None)
        assert first["snapshot"]["run_id"] == 1 and first["snapshot"]["trading_state"] == "ACTIVE"
        clock = first["series"]["clock_ns"]
        assert clock == sorted(clock) and clock[-1] > clock[0], "the session clock moves"
        assert first["process"].get("rss_mb", 0) > 10, "the session process's RSS is read"

        result = watch.command({"action": "halt", "operator": "alice", "reason": "page test"})

        assert result["ok"] and result["after"]["trading_state"] == "HALTED"
        wait_until(lambda: (watch.snapshot or {}).get("trading_state") == "HALTED", "HALTED", proc)
        frame, _ = watch.frame(cursor)
        texts = [a["text"] for a in frame["alerts"]]
        # the poll thread may keep the HALTED snapshot before the command's answer is back,
        # so the two alerts come in either order
        assert any(t.startswith("alice: halt") for t in texts), texts
        assert any("ACTIVE → HALTED" in t for t in texts), texts
    finally:
        hub.close()
    os.killpg(proc.pid, signal.SIGINT)
    proc.communicate(timeout=120)
    with Store(db, readonly=True) as store:
        rows = store.audit_details(1, ("operator.halt",))
    assert len(rows) == 1 and "alice" in rows[0][1] and "page test" in rows[0][1]


def test_the_watch_says_the_session_ended(paper: tuple[Path, subprocess.Popen[str]]) -> None:
    db, proc = paper
    hub = LiveHub(db, interval_s=0.05)
    try:
        watch = hub.watch("run-1")
        assert watch is not None
        wait_until(lambda: watch.snapshot is not None, "a snapshot", proc)
        os.killpg(proc.pid, signal.SIGINT)
        proc.communicate(timeout=120)
        deadline = time.monotonic() + DEADLINE_S
        while not watch.ended:
            assert time.monotonic() < deadline, "the watch never saw the end"
            time.sleep(0.05)
        frame, _ = watch.frame(None)
        assert frame["ended"] and frame["alerts"][-1]["kind"] == "ended"
    finally:
        hub.close()
