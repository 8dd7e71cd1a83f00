"""``--model-url``: backtests and a paper session asking a REAL ``ultrathink serve`` process.

* A backtest through the server equals the local backtest exactly (same trades, metrics,
  equity): the server serves the same version and the probability survives the JSON round
  trip bit for bit; its stats show the server answered every prediction.
* A server down from the start: the backtest completes on the local model of the same
  version, every fallback counted, and the audit trail holds two transition rows (lost,
  breaker open), not one per bar.
* A paper session whose server is SIGKILLed mid-run keeps trading on the local model; a new
  server on the same port is found again by the breaker's probe and answers again.

Readiness signals only: the server's ``ready in`` line, the session's control file, the
server's own request counts and the session's audit rows, each polled with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.integration.serve_fixtures import SPEC, ServeProcess, trained_registry, wait_until

from ultrathink.engine.sessions import CONTROL_FILE_NAME, session_dir

EXE = str(Path(sys.executable).with_name("ultrathink"))
#: what must be equal between a local and a served backtest
SAME = ("n_trades", "n_fills", "final_equity", "total_return", "metrics", "orders",
        "final_positions")  # fmt: skip
#: paper pace: one daily bar per 0.1 s, ~150 s for the whole series (stopped much earlier)
PAPER_SPEED = str(86_400 * 10)
#: the paper test is about losing and finding the server, not its latency: a deadline no
#: loopback answer misses (the test's own GET /v1/models may stall the server a few ms), so
#: the only failures are those of the kill
PAPER_TIMEOUT_MS = "1000"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_registry(tmp_path_factory, n=1)


def backtest(cli: Any, registry: Path, *args: str) -> dict[str, Any]:
    result = cli(
        "backtest", "--strategy", "ml", "--registry", str(registry), "--data", SPEC, "--json",
        *args,
    )  # fmt: skip
    assert result.code == 0, result.err
    return result.json()


def assert_same_run(local: dict[str, Any], served: dict[str, Any]) -> None:
    for key in SAME:
        assert served[key] == local[key], f"{key} differs with --model-url"
    stats = {k: v for k, v in served["strategy_stats"].items() if k != "remote"}
    assert stats == local["strategy_stats"]
    assert local["n_trades"] > 0, "the comparison needs trades"


def served_requests(server: ServeProcess) -> int:
    status, models = server.call("GET", "/v1/models")
    assert status == 200, models
    return sum((m.get("stats") or {}).get("requests", 0) for m in models["models"])


def fallback_rows(db: Path) -> list[str]:
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT detail FROM audit_log WHERE kind = 'decision.fallback' ORDER BY seq"
        ).fetchall()
    except sqlite3.OperationalError:  # the schema is not there yet
        return []
    finally:
        conn.close()
    return [detail for (detail,) in rows]


def test_a_backtest_through_the_server_equals_the_local_one(
    cli: Any, registry: Path, tmp_path: Path
) -> None:
    local = backtest(cli, registry, "--no-store")
    with ServeProcess(tmp_path / "serve-home", "--registry", str(registry)) as server:
        # a deadline no loopback answer misses: the server answers every prediction
        served = backtest(
            cli, registry, "--no-store", "--model-url", server.url, "--model-timeout-ms", "2000"
        )
        n_served = served_requests(server)
        # the default deadline (5 ms): a slow answer falls back to the same local version
        default = backtest(cli, registry, "--no-store", "--model-url", server.url)

    assert_same_run(local, served)
    assert_same_run(local, default)
    n = local["strategy_stats"]["n_predictions"]
    remote = served["strategy_stats"]["remote"]
    assert remote["requests"] == remote["answered"] == n and remote["fallbacks"] == 0
    assert remote["versions_answered"] == {local["strategy_stats"]["model_version"]: n}
    assert remote["startup"].startswith("reachable; primary v0001")
    assert remote["timeout_ms"] == 2000 and remote["connections"] == 2  # start-up + the run
    assert n_served >= n, "the server itself counted the predictions"
    other = default["strategy_stats"]["remote"]
    assert other["timeout_ms"] == 5.0
    assert other["requests"] == other["answered"] + other["fallbacks"] == n


def test_a_server_down_from_the_start_means_the_local_model_and_counted_fallbacks(
    cli: Any, registry: Path, tmp_path: Path
) -> None:
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    db = tmp_path / "u.db"
    local = backtest(cli, registry, "--no-store")

    served = backtest(cli, registry, "--db", str(db), "--model-url", f"http://127.0.0.1:{port}")

    assert_same_run(local, served)
    remote = served["strategy_stats"]["remote"]
    n = local["strategy_stats"]["n_predictions"]
    assert remote["startup"].startswith("unreachable at start")
    assert remote["answered"] == 0 and remote["fallbacks"] == remote["requests"] == n
    assert set(remote["by_reason"]) == {"refused", "breaker_open"}
    assert remote["by_reason"]["refused"] >= 3 and remote["breaker"]["opened"] == 1
    rows = fallback_rows(db)
    assert len(rows) == 2, rows  # transitions only: lost, then the breaker opened
    assert "lost (refused" in rows[0] and "breaker model_server OPEN" in rows[1]


def _paper(registry: Path, db: Path, url: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ULTRATHINK")}
    env["ULTRATHINK_HOME"] = str(db.parent / "home")
    return subprocess.Popen(
        [EXE, "paper", "--strategy", "ml", "--registry", str(registry), "--data", SPEC,
         "--speed", PAPER_SPEED, "--db", str(db), "--json", "--model-url", url,
         "--model-timeout-ms", PAPER_TIMEOUT_MS],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True, cwd=db.parent,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


def _alive(proc: subprocess.Popen[str]) -> bool:
    if proc.poll() is not None:
        assert proc.stderr is not None
        raise AssertionError(f"the session ended early: {proc.stderr.read()[-3000:]}")
    return True


def test_a_paper_session_survives_a_killed_server_and_switches_back_to_a_new_one(
    registry: Path, tmp_path: Path
) -> None:
    db = tmp_path / "u.db"
    first = ServeProcess(tmp_path / "serve-home", "--registry", str(registry))
    first.start()
    second: ServeProcess | None = None
    session = _paper(registry, db, first.url)
    try:
        control = session_dir(db, 1) / CONTROL_FILE_NAME
        wait_until(lambda: _alive(session) and control.exists(), "the session's control file")
        # the session trades on the server's answers
        before = wait_until(
            lambda: _alive(session) and (n := served_requests(first)) >= 20 and n,
            "answers of the first server",
        )  # fmt: skip
        n_rows = len(fallback_rows(db))

        first.stop(signal.SIGKILL)  # the server dies mid-run
        wait_until(
            lambda: _alive(session) and any("OPEN" in r for r in fallback_rows(db)[n_rows:]),
            "the breaker opened",
        )  # fmt: skip
        second = ServeProcess(tmp_path / "serve-home", "--registry", str(registry),
                              port=first.port)  # fmt: skip
        second.start()
        wait_until(
            lambda: _alive(session) and any(" back: " in r for r in fallback_rows(db)[n_rows:]),
            "the session back on the new server", timeout_s=120.0,
        )  # fmt: skip
        after = wait_until(lambda: served_requests(second), "answers of the new server")
    finally:
        if session.poll() is None:  # Ctrl-C: stop at the next bar, everything stored
            os.killpg(session.pid, signal.SIGINT)
        out, err = session.communicate(timeout=120)
        first.stop()
        if second is not None:
            second.stop()

    assert session.returncode == 0, err[-3000:]
    summary = json.loads(out)
    remote = summary["strategy_stats"]["remote"]
    assert remote["answered"] >= before + after, "answers from both servers"
    assert remote["requests"] == remote["answered"] + remote["fallbacks"]
    assert set(remote["by_reason"]) & {"refused", "connection"}, remote["by_reason"]
    assert remote["breaker"]["opened"] >= 1 and remote["outages"] >= 1
    rows = fallback_rows(db)[n_rows:]
    lost = next(i for i, r in enumerate(rows) if " lost (" in r)
    opened = next(i for i, r in enumerate(rows) if "breaker model_server OPEN" in r)
    back = next(i for i, r in enumerate(rows) if " back: " in r)
    assert lost < opened < back, rows
    # transitions are audited (lost, opened, back: at most 3 per outage), not each fallback
    assert len(fallback_rows(db)) <= 3 * remote["outages"] < remote["fallbacks"]
    assert summary["strategy_stats"]["n_predictions"] > remote["answered"], "local decided too"
