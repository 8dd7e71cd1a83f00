"""A ``MemoryError`` in a decision stops the session (``Guards.guard_decision``).

It is not a failed decision to hold and try again at the next bar: the session stops with
one clear error, the run is stored failed, and the store never leads the venue. The
``MemoryError`` is a real one: an allocation of 2**60 bytes, which no machine grants.
Paper sessions with their real SQLite store and venue journal, in this process and as an
``ultrathink paper`` child process.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ultrathink.core.events import Bar
from ultrathink.data import load_data
from ultrathink.errors import StrategyError
from ultrathink.stress.chaos import PaperCommand, ultrathink_command
from ultrathink.stress.inproc import paper_config, paper_run
from ultrathink.stress.invariants import TRACEBACK, check_any_instant, read_rows
from ultrathink.stress.strategies import Flipper

OOM_AT = 60  # the decision (bar) that cannot allocate

STRATEGY_FILE = f"""
from ultrathink.stress.strategies import Flipper

class Hungry(Flipper):
    name = "hungry"

    def on_bar(self, bar):
        self.n = getattr(self, "n", 0) + 1
        if self.n == {OOM_AT}:
            bytearray(1 << 60)  # MemoryError: no machine grants 2**60 bytes
        super().on_bar(bar)
"""


class Hungry(Flipper):
    """A ``Flipper`` whose ``OOM_AT``-th decision asks for more memory than exists."""

    name = "hungry"

    def on_bar(self, bar: Bar) -> None:
        self.n = getattr(self, "n", 0) + 1
        if self.n == OOM_AT:
            bytearray(1 << 60)
        super().on_bar(bar)


def test_a_memory_error_in_a_decision_stops_the_session_instead_of_holding(
    tmp_path: Path,
) -> None:
    data = load_data("synthetic:n_bars=200,seed=4")
    db = tmp_path / "oom.db"

    run = paper_run(Hungry(every=2, qty=5.0), data, paper_config({}), db)

    assert isinstance(run.error, StrategyError), f"the session went on: {run.error!r}"
    message = str(run.error)
    assert message.startswith(
        "out of memory: strategy 'hungry' could not allocate in on_bar (MemoryError at SYN"
    )
    assert "--resume" in message
    assert read_rows(db, "SELECT status FROM runs") == [("failed",)]
    holds = read_rows(db, "SELECT COUNT(*) FROM audit_log WHERE kind LIKE 'decision.%'")
    assert holds == [(0,)], "no decision.error / hold rows: it was never taken for a failure"
    assert check_any_instant(db) == [], "the store never leads the venue"


def test_the_cli_prints_one_error_line_and_exits_2(tmp_path: Path) -> None:
    strategy = tmp_path / "hungry.py"
    strategy.write_text(STRATEGY_FILE)
    db = tmp_path / "oom.db"
    cmd = PaperCommand("synthetic:n_bars=200,seed=4", ("--strategy", f"{strategy}:Hungry"))

    proc = cmd.start(db, "--speed", "max", output=True)
    _out, err = proc.communicate(timeout=300)
    stderr = err.decode()

    assert proc.returncode == 2, stderr
    assert TRACEBACK not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith("error: out of memory: strategy 'hungry'")
    assert read_rows(db, "SELECT status FROM runs") == [("failed",)]
    assert check_any_instant(db) == []
    verify = [*ultrathink_command(), "audit", "verify", "--db", str(db)]
    assert subprocess.run(verify, capture_output=True, check=False).returncode == 0
