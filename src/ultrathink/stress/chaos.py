"""``kill -9`` of ``ultrathink paper`` sessions at random instants, and their resumes.

A trial starts a session on a fresh store, kills it after a random delay (start-up, the run,
the final flush: wherever it lands), resumes it with ``paper --resume`` and kills that too,
then resumes it to the end; after every kill the records must satisfy
``invariants.check_any_instant``. Delays come from a seeded RNG and never wait for a start-up
on purpose: each kill lands wherever it lands. Shared by ``tests/integration/
test_crash_restart.py`` and the chaos scenario.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ultrathink.stress.invariants import check_any_instant, read_rows, run_state

#: Degraded mode reacts to this machine's load (decision latency, CPU), which a comparison
#: with an uninterrupted run cannot: its thresholds are out of reach here. (A restart replays
#: degraded-mode transitions from the session's input log; test_engine_inputs covers that.)
DETERMINISTIC = """
[hardening.degraded]
latency_enter_ms = 600000.0
latency_exit_ms = 1.0
cpu_enter_pct = 100000.0
"""
#: How long a resume to the end may take before it is an error.
FINISH_TIMEOUT_S = 600.0


def ultrathink_command() -> list[str]:
    """The ``ultrathink`` console script beside this interpreter (``python -m`` without it)."""
    script = Path(sys.executable).with_name("ultrathink")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ultrathink.cli"]


@dataclass(frozen=True)
class PaperCommand:
    """``ultrathink paper --data DATA ARGS... --db DB --json`` with a config file written
    next to the store (``DETERMINISTIC`` by default; a resume keeps the stored config)."""

    data: str
    args: tuple[str, ...] = ()
    config_text: str = DETERMINISTIC
    env: dict[str, str] = field(default_factory=dict)

    def start(
        self, db: Path, *extra: str, output: bool = False, prefix: Sequence[str] = ()
    ) -> subprocess.Popen[bytes]:
        """Start it (``prefix``: a wrapper command, e.g. one setting an rlimit)."""
        pipe = subprocess.PIPE if output else subprocess.DEVNULL
        config = db.parent / "session.toml"
        if not config.exists():
            config.write_text(self.config_text)
        if "--resume" not in extra:
            extra = (*extra, "--config", str(config))
        argv = [
            *prefix,
            *ultrathink_command(),
            "paper",
            "--data",
            self.data,
            *self.args,
            "--db",
            str(db),
            "--json",
            *extra,
        ]
        return subprocess.Popen(
            argv, stdout=pipe, stderr=pipe, env={**os.environ, "COLUMNS": "200", **self.env}
        )


def kill_after(proc: subprocess.Popen[bytes], delay_s: float) -> bool:
    """SIGKILL ``proc`` after ``delay_s`` unless it ended first; True if it was killed."""
    try:
        proc.wait(timeout=delay_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True
    return False


def wait_for_file(path: Path, proc: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    """Wait for ``path`` to appear (a readiness signal, e.g. the control file); raise
    ``RuntimeError`` if the process ends first or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"the session ended (exit {proc.returncode}) before {path}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} never appeared within {timeout_s:g} s")
        time.sleep(0.02)


def finish(cmd: PaperCommand, db: Path, mode_args: Sequence[str]) -> tuple[int, str]:
    """Run the session to its end: start it if no kill left a run, else resume run 1;
    ``(exit code, stderr)`` (0 and "" when the last attempt already completed)."""
    status = read_rows(db, "SELECT status FROM runs")
    if status == [("completed",)]:  # the last attempt was not killed: it ran to the end
        return 0, ""
    resume = ("--resume", "1") if status else ()
    proc = cmd.start(db, *mode_args, *resume, output=True)
    _out, err = proc.communicate(timeout=FINISH_TIMEOUT_S)
    return proc.returncode, err.decode(errors="replace")


@dataclass
class Trial:
    """One trial: kills that landed, problems seen after a kill, the final exit and state."""

    db: Path
    kills: int
    problems: list[str]
    returncode: int
    stderr: str
    state: dict[str, Any]


def kill_trial(
    cmd: PaperCommand, db: Path, mode_args: Sequence[str], seed: int, span_s: float, kills: int
) -> Trial:
    """Start, kill at random (``kills`` times, each within ``span_s``), resume to the end."""
    rng = random.Random(seed)
    db.parent.mkdir(parents=True, exist_ok=True)
    landed, problems = 0, []
    for _ in range(kills):
        resume = ("--resume", "1") if read_rows(db, "SELECT 1 FROM runs") else ()
        proc = cmd.start(db, *mode_args, *resume)
        if kill_after(proc, rng.uniform(0.0, span_s)):
            landed += 1
            problems += check_any_instant(db)
    code, err = finish(cmd, db, mode_args)
    return Trial(db, landed, problems, code, err, run_state(db) if code == 0 else {})
