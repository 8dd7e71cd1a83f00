"""``kill -9`` at random instants, paced and unpaced: every resumed run equals an uninterrupted one.

For each mode, an uninterrupted paper session is the reference. Then independent trials each
start a fresh session on a fresh store, ``kill -9`` it at a random instant (start-up, the
run, the final flush: wherever it falls), resume it with ``paper --resume`` and kill that at
another random instant (start-up, the replay, going live, trading), then resume it to the
end. After every kill the invariants that hold at any instant are checked on the durable
records; at the end the store and the venue journal must equal the reference exactly:

* the same orders (every column), the same fills, the same equity curve and positions;
* the venue journal holds the same orders and fills as the reference's;
* the audit trail verifies.

So no order or fill is ever lost or duplicated, whatever the instant of the kill. Trials run
a few at a time (each is a chain of processes). Kills use random delays from a seeded RNG;
no delay waits for a start-up: each lands wherever it lands.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ultrathink.engine.sessions import CONTROL_FILE_NAME, session_dir
from ultrathink.persistence import Store
from ultrathink.stress.chaos import (
    PaperCommand,
    finish,
    kill_after,
    kill_trial,
    wait_for_file,
)
from ultrathink.stress.invariants import read_rows, run_state

EXE = str(Path(sys.executable).with_name("ultrathink"))
N_TRIALS = 13  # two kills each: 26 kills per mode, more trials if some kills came too late
KILLS_PER_TRIAL = 2
MIN_KILLS = 26
MAX_EXTRA_TRIALS = 12
MODES = {
    # 2 symbols x 8,000 one-minute bars, as fast as it goes
    "unpaced": ("synthetic:n_bars=8000,seed=5,symbols=AAA+BBB", ("--speed", "max")),
    # 2 symbols x 1,500 one-minute bars at 30,000x: 3 s of bars, a store commit per bar
    "paced": ("synthetic:n_bars=1500,seed=5,symbols=AAA+BBB", ("--speed", "30000")),
}
STRATEGY = ("--strategy", "sma_cross", "--param", "fast=3", "--param", "slow=8")


def _paper(db: Path, data: str, *extra: str, output: bool = False) -> subprocess.Popen[bytes]:
    return PaperCommand(data, STRATEGY).start(db, *extra, output=output)


def _finish(db: Path, data: str, mode_args: tuple[str, ...]) -> None:
    code, err = finish(PaperCommand(data, STRATEGY), db, mode_args)
    assert code == 0, err[-3000:]


def _trial(tmp: Path, mode: str, seed: int, span_s: float) -> tuple[int, dict[str, Any]]:
    data, mode_args = MODES[mode]
    db = tmp / f"{mode}-{seed}" / "u.db"
    trial = kill_trial(PaperCommand(data, STRATEGY), db, mode_args, seed, span_s, KILLS_PER_TRIAL)
    assert not trial.problems, trial.problems  # what must hold right after every kill
    assert trial.returncode == 0, trial.stderr[-3000:]
    return trial.kills, trial.state


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(MODES))
def test_random_kills_leave_exactly_the_uninterrupted_run(tmp_path: Path, mode: str) -> None:
    data, mode_args = MODES[mode]
    ref_db = tmp_path / "ref" / "u.db"
    ref_db.parent.mkdir()
    t0 = time.monotonic()
    _finish(ref_db, data, mode_args)
    span_s = time.monotonic() - t0  # kills land anywhere in a run's life (rarely after)
    expected = run_state(ref_db)
    assert expected["status"] == [("completed",)] and expected["fills"], "it needs trades"

    with ThreadPoolExecutor(max_workers=3) as pool:
        trials = list(pool.map(lambda i: _trial(tmp_path, mode, 1000 + i, span_s), range(N_TRIALS)))
        # a kill drawn after a (faster) run already ended does not land: add seeded trials
        # until MIN_KILLS have landed, within a bound
        extra = 0
        while sum(k for k, _ in trials) < MIN_KILLS and extra < MAX_EXTRA_TRIALS:
            seeds = range(2000 + extra, 2000 + extra + 3)
            trials += list(pool.map(lambda i: _trial(tmp_path, mode, i, span_s), seeds))
            extra += 3

    kills = sum(k for k, _ in trials)
    assert kills >= 25, f"only {kills} kills landed in {len(trials)} trials"
    for i, (_, state) in enumerate(trials):
        for key, value in expected.items():
            assert state[key] == value, f"trial {i}: {key} differs from the uninterrupted run"
    print(f"{mode}: {kills} kills in {len(trials)} trials, reference {span_s:.2f} s")


def test_a_second_resume_of_a_live_run_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    data = "synthetic:n_bars=100000,seed=5"
    live = _paper(db, data, "--speed", "60")
    try:
        wait_for_file(session_dir(db, 1) / CONTROL_FILE_NAME, live)
        run_before = read_rows(db, "SELECT * FROM runs")
        lifecycle = "SELECT seq, kind FROM audit_log WHERE kind GLOB 'run.*'"
        lifecycle_before = read_rows(db, lifecycle)

        second = subprocess.run(
            [EXE, "paper", "--resume", "1", "--db", str(db), "--speed", "max"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

        assert second.returncode == 2
        assert second.stderr.startswith(f"error: run 1 is live in process {live.pid} (lock ")
        assert "Traceback" not in second.stderr
        foreign = (
            "SELECT COUNT(*) FROM audit_log WHERE kind GLOB 'recovery.*' OR kind GLOB "
            "'killswitch.*'"
        )
        assert read_rows(db, foreign) == [(0,)], "the refused process wrote nothing"
        assert read_rows(db, lifecycle) == lifecycle_before
        assert read_rows(db, "SELECT * FROM runs") == run_before
    finally:
        live.send_signal(signal.SIGKILL)
        live.wait()
    # the lock died with the process: the resume is accepted now
    done = _paper(db, "synthetic:n_bars=100000,seed=5", "--speed", "max", "--resume", "1",
                  output=True)  # fmt: skip
    _out, err = done.communicate(timeout=600)
    assert done.returncode == 0, err.decode()[-2000:]
    assert read_rows(db, "SELECT status FROM runs") == [("completed",)]


def test_a_session_halted_before_the_crash_comes_back_halted(tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    data = "synthetic:n_bars=20000,seed=5"
    proc = _paper(db, data, "--speed", "3000")
    control = session_dir(db, 1) / CONTROL_FILE_NAME
    wait_for_file(control, proc)
    halt = subprocess.run(
        [EXE, "ctl", "halt", "--db", str(db), "--run", "1", "--operator", "ops", "--reason", "t"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert halt.returncode == 0, halt.stderr
    assert kill_after(proc, 0.3), "the session ended before the kill"

    final = _paper(db, data, "--speed", "max", "--resume", "1", output=True)
    out, err = final.communicate(timeout=600)

    assert final.returncode == 0, err.decode()[-2000:]
    result = json.loads(out)
    assert result["trading_state"] == "HALTED"
    assert "operator ops" in result["trading_state_reason"]
    assert result["recovery"]["replayed_inputs"] == 1, "the halt was replayed at its bar"
    assert set(result["denial_reasons"]) <= {"TRADING_HALTED"}
    halts = read_rows(db, "SELECT detail FROM audit_log WHERE kind = 'operator.halt'")
    assert len(halts) == 1, "replayed, never written twice"
    with Store(db) as store:
        ts, _equity, _cash = store.load_equity(1)
    assert np.all(np.diff(ts) > 0), "one equity point per timestamp, in order"


def test_commands_refused_before_the_crash_are_refused_again_and_the_resume_goes_on(
    tmp_path: Path,
) -> None:
    # a refused command was written ahead to the input log, then refused: the replay must
    # refuse it again at the same bar and go on (it used to end the resume with the refusal)
    db = tmp_path / "u.db"
    data = "synthetic:n_bars=20000,seed=5"
    proc = _paper(db, data, "--speed", "3000")
    control = session_dir(db, 1) / CONTROL_FILE_NAME
    wait_for_file(control, proc)

    def ctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [EXE, "ctl", *args, "--db", str(db), "--run", "1", "--operator", "ops"],
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip

    too_high = ctl("set-limit", "max_drawdown_pct", "150")
    assert too_high.returncode == 2 and "less than or equal to 100" in too_high.stderr
    not_halted = ctl("resume", "--reason", "nothing to resume")
    assert not_halted.returncode == 2 and "already ACTIVE" in not_halted.stderr
    assert ctl("disable", "SYN", "--reason", "t").returncode == 0
    assert kill_after(proc, 0.3), "the session ended before the kill"

    final = _paper(db, data, "--speed", "max", "--resume", "1", output=True)
    out, err = final.communicate(timeout=600)

    assert final.returncode == 0, err.decode()[-2000:]
    result = json.loads(out)
    assert result["recovery"]["replayed_inputs"] == 3, "both refusals and the disable replayed"
    assert set(result["denial_reasons"]) <= {"SYMBOL_DISABLED", "MAX_POSITION"}
    refused = read_rows(db, "SELECT detail FROM audit_log WHERE kind = 'operator.refused'")
    assert len(refused) == 2, "each refusal is in the audit trail once, never written twice"
    assert read_rows(db, "SELECT status FROM runs") == [("completed",)]
