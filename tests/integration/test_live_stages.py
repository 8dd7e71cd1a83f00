"""Per-stage latency on the live page's data path: a paced paper session run through the
services seam as ``paper --dashboard`` runs it (``RunRequest.dashboard_port``: the services
give it the live profiler and point its snapshots at the profiler's stages), followed by the
dashboard's ``LiveWatch`` over the real control API.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from ultrathink import services
from ultrathink.engine.sessions import CONTROL_FILE_NAME, session_dir
from ultrathink.web.control_client import read_trusted
from ultrathink.web.live import LiveWatch

DEADLINE_S = 120.0  # generous: a busy machine is slow, never wrong


def test_a_profiled_session_streams_its_stage_latencies_to_the_watch(tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    request = services.RunRequest(
        mode="paper", data="synthetic:n_bars=200000,seed=3", speed=20_000.0, db=str(db),
        control=True, dashboard_port=0,
    )  # fmt: skip
    sessions: list[Any] = []

    def ready(session: Any) -> None:
        sessions.append(session)

    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = services.execute_run(request, on_ready=ready)
        except BaseException as exc:  # reported by the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    control = session_dir(db, 1) / CONTROL_FILE_NAME
    deadline = time.monotonic() + DEADLINE_S
    while not control.exists():
        assert thread.is_alive(), outcome.get("error")
        assert time.monotonic() < deadline, "no control file"
        time.sleep(0.05)
    content = read_trusted(control)
    watch = LiveWatch("run-1", "run 1", content["url"], content["token"], None, {},
                      interval_s=0.05).start()  # fmt: skip
    try:
        while not (watch.snapshot or {}).get("stages", {}).get("decision"):
            assert thread.is_alive(), outcome.get("error")
            assert time.monotonic() < deadline, f"no stage latency: {watch.snapshot}"
            time.sleep(0.05)
        frame, _ = watch.frame(None)
    finally:
        watch.stop()
        if sessions:
            sessions[0].stop.requested = True
        thread.join(DEADLINE_S)
    assert "error" not in outcome, outcome.get("error")
    stages = frame["snapshot"]["stages"]
    assert {"market_data", "features", "decision", "portfolio", "bar"} <= set(stages)
    assert all(0 < s["p50"] <= s["p90"] <= s["p99"] for s in stages.values())
    assert any(v == v for v in frame["stages"]["decision p50"]), "a series point, not only NaN"
