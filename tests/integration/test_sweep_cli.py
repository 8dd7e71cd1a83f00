"""``ultrathink sweep`` on the local process pool, end to end through the CLI (real processes,
real SQLite store): results equal standalone backtests, failures are recorded while the sweep
goes on, bad input gets one line, and a driver killed or interrupted resumes exactly once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).parent / "ultrathink")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ULTRATHINK")}
    env["ULTRATHINK_HOME"] = str(home)
    return env


def _sweep(home: Path, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "sweep", *argv], env=_env(home), capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def _rows(home: Path, sweep_id: int) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(home / "ultrathink.db") as conn:
        rows = conn.execute(
            "SELECT point_id, params_json, window_label, metrics_json, error, run_id "
            "FROM sweep_points WHERE sweep_id = ?", (sweep_id,),
        ).fetchall()  # fmt: skip
    return {r[0]: {"params": json.loads(r[1]), "window": r[2],
                   "metrics": None if r[3] is None else json.loads(r[3]), "error": r[4],
                   "run_id": r[5]} for r in rows}  # fmt: skip


def _sweep_row(home: Path, sweep_id: int) -> tuple[Any, ...]:
    with sqlite3.connect(home / "ultrathink.db") as conn:
        return conn.execute(
            "SELECT n_points, status, backend FROM sweeps WHERE sweep_id = ?", (sweep_id,)
        ).fetchone()


def _standalone(params: dict[str, Any], window: str) -> dict[str, Any]:
    # what `ultrathink backtest --param … [--start … --end …] --no-store` runs and prints
    from ultrathink import services

    start = end = None
    if window != "all":
        start, end = window.split(":")
    request = services.RunRequest(
        mode="backtest", strategy="sma_cross", params={k: str(v) for k, v in params.items()},
        data="sp500", start=start, end=end, store=False,
    )  # fmt: skip
    return json.loads(json.dumps(services.execute_run(request).metrics.to_dict()))


def test_every_point_equals_a_standalone_backtest(tmp_path: Path) -> None:
    done = _sweep(tmp_path, "--grid", "fast=5:15:5", "--grid", "slow=30:50:20",
                  "--where", "fast < slow", "--windows", "rolling:10y:6y", "--workers", "2",
                  "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    rows = _rows(tmp_path, out["sweep_id"])
    windows = {r["window"] for r in rows.values()}
    assert len(windows) >= 2 and "all" not in windows
    assert out["points"] == len(rows) == 6 * len(windows)
    assert out["failed"] == 0 and out["status"] == "done"
    for row in rows.values():
        assert row["metrics"] == _standalone(row["params"], row["window"]), row
    # the best point is the one with the highest sharpe, ties by enumeration order
    best = max(rows.values(), key=lambda r: r["metrics"]["sharpe"])
    assert out["best"][0]["value"] == best["metrics"]["sharpe"]


def test_a_failing_point_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    done = _sweep(tmp_path, "--grid", "fast=10,30", "--grid", "slow=20", "--workers", "1",
                  "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["points"] == out["stored"] == 2 and out["failed"] == 1
    rows = _rows(tmp_path, out["sweep_id"])
    bad = [r for r in rows.values() if r["error"] is not None]
    assert [r["params"] for r in bad] == [{"fast": 30, "slow": 20}]
    assert "fast must be < slow" in bad[0]["error"] and bad[0]["metrics"] is None
    assert out["failures"][0]["params"] == {"fast": 30, "slow": 20}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--grid", "fast=5:10:5", "--grid", "slow=20", "--where", "fast > slow"],
            "empty after --where",
        ),
        (
            ["--grid", "fast=1:400:1", "--grid", "slow=20:200:1", "--max-points", "1000"],
            "more than --max-points",
        ),
        (["--grid", "nope=1:3:1"], "has no parameter 'nope'"),
        (["--grid", "fast=5:1:1"], "needs LO <= HI"),
        (["--grid", "fast=5", "--where", "open('x')"], "is not allowed"),
        (["--grid", "fast=5", "--windows", "rolling:50y:1y"], "shorter than one window"),
        (["--grid", "fast=5", "--data", "no-such-file.csv"], "no-such-file.csv"),
        (["--grid", "fast=5", "--workers", "0"], "--workers must be at least 1"),
        (["--resume", "99"], "sweep 99 does not exist"),
        (["--show", "99"], "does not exist"),
    ],
)
def test_bad_input_gets_one_line_and_stores_nothing(tmp_path: Path, argv: list[str],
                                                    message: str) -> None:  # fmt: skip
    done = _sweep(tmp_path, *argv, timeout=120)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert "Traceback" not in done.stderr
    db = tmp_path / "ultrathink.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if "sweeps" in tables:
                assert conn.execute("SELECT COUNT(*) FROM sweeps").fetchone()[0] == 0


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait(probe: Any, what: str, timeout_s: float = 300.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _stored(home: Path) -> int:
    try:
        with sqlite3.connect(home / "ultrathink.db", timeout=10) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM sweep_points").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


BIG = ["--grid", "fast=2:40:1", "--grid", "slow=60:200:10", "--where", "fast < slow",
       "--workers", "2"]  # fmt: skip


@pytest.mark.parametrize("how", ["kill -9", "ctrl-c"])
def test_a_stopped_driver_resumes_and_stores_every_point_once(tmp_path: Path, how: str) -> None:
    # a background child may inherit SIGINT ignored (a non-interactive shell's `&`), and a
    # process started so keeps ignoring it: restore the default, as a terminal has it
    proc = subprocess.Popen(
        [CLI, "sweep", *BIG, "--json"], env=_env(tmp_path), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        _wait(lambda: _stored(tmp_path) >= 20, "the first points to be stored")
        workers = _children(proc.pid)
        assert proc.poll() is None, "the sweep ended before it could be stopped"
        if how == "kill -9":
            proc.kill()
            proc.wait(timeout=60)
            # its pool workers die with it (PR_SET_PDEATHSIG), none is left orphaned
            _wait(lambda: not any(_alive(w) for w in workers), "the workers to exit", 60)
        else:
            os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the group
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 130, err
            assert "interrupted" in err and "ultrathink sweep --resume 1" in err, err
            assert _sweep_row(tmp_path, 1)[1] == "interrupted"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    before = _stored(tmp_path)
    n_points = _sweep_row(tmp_path, 1)[0]
    assert 0 < before < n_points
    done = _sweep(tmp_path, "--resume", "1", "--workers", "2", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["skipped"] == before and out["ran"] == n_points - before
    rows = _rows(tmp_path, 1)
    assert len(rows) == n_points == out["stored"] and out["failed"] == 0
    assert _sweep_row(tmp_path, 1)[1] == "done"
    # a point stored before the stop and one after are both what a standalone run gives
    some = sorted(rows.values(), key=lambda r: (r["params"]["fast"], r["params"]["slow"]))
    for row in (some[0], some[-1]):
        assert row["metrics"] == _standalone(row["params"], row["window"])


def test_keep_runs_report_show_and_list(tmp_path: Path) -> None:
    report = tmp_path / "out" / "sweep.html"
    done = _sweep(tmp_path, "--grid", "fast=5:10:5", "--grid", "slow=30:40:10",
                  "--keep-runs", "--report", str(report), "--workers", "2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "sweep 1 (done): 4 of 4 points stored, 0 failed, on local:2" in done.stdout
    rows = _rows(tmp_path, 1)
    with sqlite3.connect(tmp_path / "ultrathink.db") as conn:
        runs = {r[0] for r in conn.execute("SELECT run_id FROM runs")}
    assert {r["run_id"] for r in rows.values()} == runs and len(runs) == 4
    text = report.read_text()
    assert "Plotly.newPlot" in text and "sharpe over fast x slow" in text
    assert "neighbours mean" in text and "<script src" not in text  # opens offline
    shown = _sweep(tmp_path, "--show", "1", "--metric", "total_return", "--json")
    assert shown.returncode == 0, shown.stderr
    best = json.loads(shown.stdout)["best"]
    assert best[0]["value"] == max(r["metrics"]["total_return"] for r in rows.values())
    listed = _sweep(tmp_path, "--list", "--json")
    assert [s["sweep_id"] for s in json.loads(listed.stdout)] == [1]
    wrong = _sweep(tmp_path, "--show", "1", "--metric", "nope")
    assert wrong.returncode == 2 and "is not a metric of a run" in wrong.stderr
