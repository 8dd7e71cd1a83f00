"""``ultrathink paper``: the backtest's components behind a live-clock pacer."""

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

import numpy as np
import pytest

from ultrathink.config import realistic_defaults
from ultrathink.persistence import Store

DATA = "synthetic:n_bars=2000,seed=1"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def write_toml(path: Path, sections: dict[str, dict[str, Any]], **top: Any) -> Path:
    """A config file; None values are left out (TOML has no null: they keep the default)."""
    lines = [f"{k} = {toml_value(v)}" for k, v in top.items()]
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items() if v is not None]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def comparable(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("fills", "final_equity", "n_trades", "orders", "denial_reasons", "final_positions",
            "metrics", "n_bars", "data_hash")  # fmt: skip
    return {k: summary[k] for k in keys}


def run_json(cli, *argv: str) -> dict[str, Any]:
    result = cli(*argv, "--json")
    assert result.code == 0, result.err
    return result.json()


def test_paper_at_max_speed_equals_backtest_with_the_realistic_config(cli, tmp_path: Path) -> None:
    config = write_toml(tmp_path / "realistic.toml", realistic_defaults())

    paper = run_json(
        cli, "paper", "--speed", "max", "--no-store", "--data", DATA, "--quantity", "50"
    )
    backtest = run_json(
        cli, "backtest", "--no-store", "--data", DATA, "--quantity", "50", "--config", str(config)
    )

    assert paper["mode"] == "paper"
    assert backtest["mode"] == "backtest"
    assert paper["fills"], "the comparison needs trades"
    assert any(f["fee"] > 0 for f in paper["fills"]), "paper uses realistic costs by default"
    assert comparable(paper) == comparable(backtest)


def test_paper_and_backtest_with_explicit_zero_costs_are_identical(cli, tmp_path: Path) -> None:
    # what the flags cannot express goes in the file; both runs get the same file and flags
    config = write_toml(
        tmp_path / "zero.toml",
        {"broker": {"slippage_vol_mult": 0.0}, "risk": {"fee_estimate_bps": 0.0}},
    )
    flags = (
        "--data", DATA, "--config", str(config), "--commission-bps", "0", "--slippage-bps", "0",
        "--fee-per-order", "0", "--latency-ms", "0", "--max-volume-pct", "100",
        "--max-drawdown-pct", "100", "--max-daily-loss-pct", "100",
    )  # fmt: skip
    db = tmp_path / "both.db"

    paper = run_json(cli, "paper", "--speed", "max", "--db", str(db), *flags)
    backtest = run_json(cli, "backtest", "--db", str(db), *flags)

    assert paper["fills"]
    assert all(f["fee"] == 0.0 for f in paper["fills"])
    assert comparable(paper) == comparable(backtest)
    with Store(db) as store:
        assert store.get_run(paper["run_id"]).kind == "paper"
        curves = [store.load_equity(r["run_id"]) for r in (paper, backtest)]
        assert store.load_fills(paper["run_id"]) == store.load_fills(backtest["run_id"])
    for a, b in zip(*curves, strict=True):
        np.testing.assert_array_equal(a, b, strict=True)


def test_paper_defaults_to_realistic_costs_and_limits(cli, tmp_path: Path) -> None:
    db = tmp_path / "p.db"

    summary = run_json(cli, "paper", "--speed", "max", "--db", str(db), "--data", DATA)
    shown = run_json(cli, "runs", "show", str(summary["run_id"]), "--db", str(db))

    expected = realistic_defaults()
    assert shown["run"]["kind"] == "paper"
    assert shown["run"]["config"]["broker"] == expected["broker"]
    assert shown["run"]["config"]["risk"] == expected["risk"]
    assert shown["run"]["config"]["speed"] is None


def test_paper_pacing_takes_at_least_the_data_span_over_speed(cli) -> None:
    speed = 1_000_000.0
    n_bars = 2000  # one-minute bars: the replay spans (n_bars - 1) minutes of market time
    spec = f"synthetic:n_bars={n_bars},seed=3"
    min_s = (n_bars - 1) * 60.0 / speed

    t0 = time.perf_counter()
    paced = run_json(cli, "paper", "--speed", str(int(speed)), "--no-store", "--data", spec)
    wall_s = time.perf_counter() - t0
    unpaced = run_json(cli, "paper", "--speed", "max", "--no-store", "--data", spec)

    assert wall_s >= min_s
    assert paced["elapsed_s"] >= min_s * (1 - 1e-6)
    assert comparable(paced) == comparable(unpaced), "pacing never changes what happens"


@pytest.mark.parametrize("speed", ["0", "-5", "fast", "nan"])
def test_bad_speed_is_a_clean_error(cli, speed: str) -> None:
    result = cli("paper", "--no-store", "--data", DATA, "--speed", speed)

    assert result.code == 2
    assert result.err.startswith("error: ")
    assert "speed" in result.err
    assert "Traceback" not in result.err


def test_default_paper_session_trades(cli) -> None:
    """All-in sizing leaves room for the fee allowance, so a flat account's entry passes.

    Later buys can still be denied while a volume-capped sell of the previous position is
    working (its proceeds are not cash yet): that is the buying-power check doing its job.
    """
    summary = run_json(cli, "paper", "--speed", "max", "--no-store", "--data", DATA)

    buys = [f for f in summary["fills"] if f["side"] == "BUY"]
    assert buys, "the first entry of a flat account must not be denied"
    assert summary["orders"].get("FILLED", 0) > summary["n_denied"]


def test_paper_in_a_real_subprocess(cli_subprocess) -> None:
    result = cli_subprocess("paper", "--speed", "max", "--no-store", "--json", "--data", DATA)

    assert result.code == 0, result.err
    assert result.json()["mode"] == "paper"


def _wait_for_bars(db: Path, proc: subprocess.Popen[str], n: int, timeout_s: float = 120) -> None:
    # readiness: the session's control file, then n equity points committed (one per bar)
    from ultrathink.engine.sessions import CONTROL_FILE_NAME, session_dir

    control = session_dir(db, 1) / CONTROL_FILE_NAME
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the session never got going"
        if control.exists():
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                (points,) = conn.execute("SELECT COALESCE(SUM(n_rows), 0) FROM equity_chunks")
                if points[0] >= n:
                    return
        time.sleep(0.05)


def test_ctrl_c_to_the_process_group_ends_the_run_interrupted(tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches the whole process group, store writer included."""
    db = tmp_path / "u.db"
    script = Path(sys.executable).with_name("ultrathink")
    proc = subprocess.Popen(
        [str(script), "paper", "--speed", "86400", "--db", str(db), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group, as a shell job: killpg reaches only it
        # a background child may inherit SIGINT ignored: restore the default for the test
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        _wait_for_bars(db, proc, 3)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    assert proc.returncode == 0, err
    assert "Traceback" not in err
    summary = json.loads(out)
    assert summary["n_bars"] >= 3
    with Store(db) as store:
        [run] = store.list_runs()
        ts, _equity, _cash = store.load_equity(run.run_id)
    assert run.status == "interrupted"
    assert run.summary is not None and run.summary["n_bars"] == summary["n_bars"]
    assert len(ts) == summary["n_bars"], "one close-marked point per processed bar, no extra"
    resumed = subprocess.run(
        [str(script), "paper", "--resume", str(run.run_id), "--speed", "max", "--db", str(db),
         "--json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["n_bars"] == 5031, "an interrupted run resumes to the end"
