"""``ultrathink sweep`` on a real local Ray cluster (``ray_fixtures.py``), through the real
console script in subprocesses; no mocks.

- the same grid (whole data, and rolling windows) on ``--workers 1``, ``--workers 2`` and
  ``--ray`` stores exactly the same metrics for every point, equal to a standalone
  ``ultrathink backtest`` of the point;
- a Ray worker SIGKILLed while it runs a batch: Ray retries the batch, the sweep finishes
  ``done`` with every point stored once and none failed;
- an address where nothing listens is a one-line ``error:`` (exit 2) and no sweep row.

Readiness is polled against generous deadlines, never assumed after a fixed sleep, and no
assertion is about elapsed time, so a busy machine makes the tests slower, not flaky.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from tests.integration import ray_fixtures
from tests.integration.conftest import console_script
from tests.integration.ray_fixtures import RayCluster, clean_env, proc_cmdline

pytestmark = pytest.mark.slow

#: bound of one subprocess (a sweep, a backtest) on a busy machine
DEADLINE_S = 300.0
POLL_S = 0.05
BATCH_TITLE = "ray::_ray_batch"  # a Ray worker's process title while it runs a batch

# the throwaway cluster's fixtures, registered in this module
ray_cluster = ray_fixtures.ray_cluster
ray_address = ray_fixtures.ray_address

GRID = ("--grid", "fast=5:30:5", "--grid", "slow=40:120:20", "--where", "fast < slow")
WINDOWED = ("--grid", "fast=5:15:5", "--grid", "slow=40:80:40", "--windows", "rolling:8y:4y")
BIG = ("--grid", "fast=2:60:1", "--grid", "slow=80:200:10", "--where", "fast < slow")


def _env(cluster: RayCluster | None, tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    return cluster.env(home) if cluster is not None else clean_env(home)


def _run(argv: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(console_script()), *argv], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=DEADLINE_S, check=False,
    )  # fmt: skip


def _ok(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


def _rows(db: Path, sweep_id: int) -> dict[str, dict[str, Any]]:
    """The sweep's ``sweep_points`` rows by point_id (metrics_json parsed)."""
    with _Reader(db) as conn:
        rows = conn.execute(
            "SELECT point_id, data, window_label, params_json, metrics_json, error "
            "FROM sweep_points WHERE sweep_id = ?",
            (sweep_id,),
        ).fetchall()
    out: dict[str, dict[str, Any]] = {}
    for pid, data, window, params, metrics, error in rows:
        assert pid not in out, f"point {pid} stored twice"
        out[pid] = {"data": data, "window": window, "params": json.loads(params),
                    "metrics": None if metrics is None else json.loads(metrics),
                    "error": error}  # fmt: skip
    return out


class _Reader:
    """``with _Reader(db) as conn``: a connection that only reads (the driver may be writing
    the store meanwhile, WAL), closed at the end (sqlite3's own ``with`` only ends a
    transaction)."""

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(db, timeout=60.0)

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


def _same(a: Any, b: Any) -> bool:
    """Exact equality of JSON values, where NaN equals NaN (a metric may be undefined) and
    an int is not a float."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (a.get(k), b.get(k)) for k in a.keys() | b.keys() if not _same(a.get(k), b.get(k))}


@pytest.mark.parametrize(
    ("grid", "windowed"), [(GRID, False), (WINDOWED, True)], ids=["whole-data", "rolling-windows"]
)
def test_same_metrics_on_every_backend_and_as_a_standalone_backtest(
    ray_cluster: RayCluster, ray_address: str, tmp_path: Path, grid: tuple[str, ...],
    windowed: bool,
) -> None:  # fmt: skip
    env = _env(ray_cluster, tmp_path)
    db = tmp_path / "sweeps.db"
    by_backend: dict[str, dict[str, dict[str, Any]]] = {}
    for backend in (("--workers", "1"), ("--workers", "2"), ("--ray", ray_address)):
        out = _ok(_run(["sweep", *grid, "--data", "sp500", *backend, "--db", str(db),
                        "--json"], env, tmp_path))  # fmt: skip
        label = " ".join(backend)
        assert out["status"] == "done", (label, out)
        assert out["failed"] == 0, (label, out)
        assert out["stored"] == out["points"], (label, out)
        assert out["backend"] == (f"ray:{ray_address}" if backend[0] == "--ray"
                                  else f"local:{backend[1]}")  # fmt: skip
        rows = _rows(db, out["sweep_id"])
        assert len(rows) == out["points"], label
        assert all(r["error"] is None and r["metrics"] for r in rows.values()), label
        by_backend[label] = rows

    reference_label, reference = next(iter(by_backend.items()))
    windows = {r["window"] for r in reference.values()}
    if windowed:
        assert len(windows) >= 3, windows  # rolling 8y windows every 4y over ~20 years
        assert "all" not in windows
    else:
        assert windows == {"all"}
    for label, rows in by_backend.items():
        assert rows.keys() == reference.keys(), f"{label} ran other points than {reference_label}"
        for pid, row in rows.items():
            ref = reference[pid]
            assert (row["data"], row["window"], row["params"]) == (
                ref["data"], ref["window"], ref["params"]
            ), pid  # fmt: skip
            assert _same(row["metrics"], ref["metrics"]), (
                f"point {pid} {row['params']} {row['window']}: {label} differs from "
                f"{reference_label}: {_diff(row['metrics'], ref['metrics'])}"
            )

    # a few points, in every window, against `ultrathink backtest` of the same point
    ordered = sorted(
        reference.items(), key=lambda kv: (kv[1]["window"], sorted(kv[1]["params"].items()))
    )
    picks = [ordered[0], ordered[len(ordered) // 2], ordered[-1]]
    picks += [next(kv for kv in ordered if kv[1]["window"] == w) for w in sorted(windows)]
    seen: set[str] = set()
    for pid, row in picks:
        if pid in seen:
            continue
        seen.add(pid)
        window = []
        if row["window"] != "all":
            start, end = row["window"].split(":")
            window = ["--start", start, "--end", end]
        params = [a for k, v in row["params"].items() for a in ("--param", f"{k}={v}")]
        standalone = _ok(_run(["backtest", "--data", "sp500", *params, *window, "--json",
                               "--no-store"], env, tmp_path))  # fmt: skip
        assert _same(row["metrics"], standalone["metrics"]), (
            f"point {pid} {row['params']} {row['window']}: sweep differs from backtest: "
            f"{_diff(row['metrics'], standalone['metrics'])}"
        )
    assert len(seen) >= 3


def _big_points() -> list[tuple[int, int]]:
    """The (fast, slow) points of ``BIG``."""
    grid = itertools.product(range(2, 61), range(80, 201, 10))
    return sorted((f, s) for f, s in grid if f < s)


def test_a_worker_killed_mid_sweep_is_retried_and_every_point_stored_once(
    ray_cluster: RayCluster, ray_address: str, tmp_path: Path
) -> None:
    env = _env(ray_cluster, tmp_path)
    db = tmp_path / "sweeps.db"
    out_path, err_path = tmp_path / "sweep.out", tmp_path / "sweep.err"
    argv = [str(console_script()), "sweep", *BIG, "--data", "sp500", "--ray", ray_address,
            "--db", str(db), "--json"]  # fmt: skip
    with out_path.open("w") as out, err_path.open("w") as err, subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdout=out, stderr=err, text=True
    ) as proc:  # fmt: skip
        try:
            killed, at_kill = _kill_a_running_batch(ray_cluster, proc, db)
            code = proc.wait(timeout=DEADLINE_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stdout, stderr = out_path.read_text(), err_path.read_text()
    assert code == 0, f"exit {code}\n{stdout}\n{stderr}"

    # the kill hit a batch of this sweep while it ran
    assert at_kill["driver_running"], at_kill
    assert at_kill["status"] == "running", at_kill
    assert at_kill["stored"] < at_kill["n_points"], at_kill
    assert killed not in ray_cluster.processes(), f"worker {killed} survived SIGKILL"

    expected = _big_points()
    n_points = len(expected)
    result = _json_document(stdout)
    assert (result["status"], result["points"], result["stored"], result["failed"]) == (
        "done", n_points, n_points, 0
    ), result  # fmt: skip
    with _Reader(db) as conn:
        sweeps = conn.execute("SELECT sweep_id, status, n_points FROM sweeps").fetchall()
        assert sweeps == [(result["sweep_id"], "done", n_points)], sweeps
        total, distinct, failed, no_metrics = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT point_id), COUNT(error), "
            "SUM(metrics_json IS NULL) FROM sweep_points WHERE sweep_id = ?",
            (result["sweep_id"],),
        ).fetchone()
    assert (total, distinct, failed, no_metrics) == (n_points, n_points, 0, 0)
    rows = _rows(db, result["sweep_id"])
    params = sorted((r["params"]["fast"], r["params"]["slow"]) for r in rows.values())
    assert params == expected


def _json_document(stdout: str) -> Any:
    """The JSON document of ``--json``: stdout holds it alone, even after Ray reported the
    worker it lost and the retry (the sweep sends a backend's chatter to stderr)."""
    return json.loads(stdout)


def _kill_a_running_batch(
    cluster: RayCluster, proc: subprocess.Popen[str], db: Path
) -> tuple[int, dict[str, Any]]:
    """Wait until a worker of the cluster runs a ``_ray_batch``, SIGKILL it; returns its pid
    and the sweep's state at that moment."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended (exit {proc.returncode}) before any batch was seen")
        if time.monotonic() > deadline:
            pytest.fail(f"no {BATCH_TITLE} process within {DEADLINE_S:.0f} s")
        for pid in cluster.worker_pids(BATCH_TITLE):
            # still running a batch right now (not back to ray::IDLE), then killed
            if proc_cmdline(pid).startswith(BATCH_TITLE):
                os.kill(pid, signal.SIGKILL)
                return pid, _state_at_kill(proc, db)
        time.sleep(POLL_S)


def _state_at_kill(proc: subprocess.Popen[str], db: Path) -> dict[str, Any]:
    driver_running = proc.poll() is None
    with _Reader(db) as conn:
        row = conn.execute(
            "SELECT status, n_points, (SELECT COUNT(*) FROM sweep_points p "
            "WHERE p.sweep_id = s.sweep_id) FROM sweeps s"
        ).fetchone()
    assert row is not None, "a batch runs before the sweep row exists"
    return {"driver_running": driver_running, "status": row[0], "n_points": row[1],
            "stored": row[2]}  # fmt: skip


def test_an_unreachable_cluster_is_one_line_and_no_sweep(tmp_path: Path) -> None:
    db = tmp_path / "sweeps.db"
    proc = _run(["sweep", *GRID, "--ray", "127.0.0.1:1", "--db", str(db), "--json"],
                _env(None, tmp_path), tmp_path)  # fmt: skip
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    # the address, or (Ray not installed) how to install it
    assert "127.0.0.1:1" in lines[0] or "needs Ray" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stdout == ""
    if db.exists():
        with _Reader(db) as conn:
            assert conn.execute("SELECT COUNT(*) FROM sweeps").fetchone() == (0,)
            assert conn.execute("SELECT COUNT(*) FROM sweep_points").fetchone() == (0,)
