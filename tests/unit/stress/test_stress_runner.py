"""Running scenarios: the same seed gives the same faults and results; reports; breaches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ultrathink.stress import report
from ultrathink.stress.runner import RunOptions, ScenarioReport, run_scenarios
from ultrathink.stress.scenario import load_scenario
from ultrathink.stress.thresholds import Threshold

BROKER = """
kind = "broker"
description = "two broker faults on a few bars"
seed = 21
thresholds = ["lost_orders == 0", "uncounted_fallbacks == 0", "invariant_failures == 0"]
[params]
n_bars = 80
[params.engine.hardening.execution]
failure_threshold = 2
window_s = 600.0
recovery_timeout_s = 300.0
[[faults]]
name = "timeouts"
timeout = 0.3
[[faults]]
name = "mixed"
timeout = 0.1
lost_ack = 0.2
reject = 0.1
"""
CRASH = """
kind = "crash"
description = "one drop on synthetic bars"
seed = 7
thresholds = ["max_halt_lag_bars <= 1", "invariant_failures == 0"]
[params]
datasets = ["synthetic"]
synthetic_bars = 80
at_bar = 50
[[faults]]
kind = "crash"
name = "drop30"
pct = 30.0
n_bars = 3
"""


def run(
    tmp_path: Path, text: str, label: str, seed: int | None = None, **overrides: Any
) -> ScenarioReport:
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    config = load_scenario(str(path), seed=seed)
    [done] = run_scenarios([config], tmp_path / label, overrides, lambda _: None)
    return done


def figures(done: ScenarioReport) -> list[dict[str, Any]]:
    return [c.figures | {"invariants": c.invariants} for c in done.outcome.cases]


def without_latency(metrics: dict[str, float | None]) -> dict[str, float | None]:
    return {k: v for k, v in metrics.items() if not k.endswith("_us")}


def test_the_same_seed_gives_the_same_faults_and_results(tmp_path: Path) -> None:
    first, second = run(tmp_path, BROKER, "a"), run(tmp_path, BROKER, "b")
    other = run(tmp_path, BROKER, "c", seed=22)

    assert first.ok and second.ok and other.ok
    assert figures(first) == figures(second)
    assert without_latency(first.metrics) == without_latency(second.metrics)
    assert first.metrics["injected_faults"] > 10
    assert [c.figures["digest"] for c in other.outcome.cases] != [
        c.figures["digest"] for c in first.outcome.cases
    ], "another seed: other data, other faults"


def test_a_crash_run_repeats_exactly(tmp_path: Path) -> None:
    first, second = run(tmp_path, CRASH, "a"), run(tmp_path, CRASH, "b")

    assert first.ok and second.ok
    [case] = first.outcome.cases
    assert case.figures["halt_lag_bars"] == 0 and case.figures["flat_at_end"] is True
    assert figures(first) == figures(second)


def test_an_override_breaches_and_the_reports_say_so(tmp_path: Path) -> None:
    impossible = {"scenario": [Threshold("lost_orders", "<", 0.0)]}
    done = run(tmp_path, BROKER.replace("n_bars = 80", "n_bars = 40"), "x", **impossible)
    options = RunOptions(quick=False)

    doc, json_path, html_path = report.write(tmp_path / "x", "scenario", [done], options)

    assert not done.ok and doc["ok"] is False
    assert doc["breached"] == ["threshold breached: lost_orders < 0 (measured 0)"]
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(doc))
    [scenario] = doc["scenarios"]
    assert {t["threshold"]: t["status"] for t in scenario["thresholds"]} == {
        "uncounted_fallbacks == 0": "ok",
        "invariant_failures == 0": "ok",
        "lost_orders < 0": "breached",
    }
    assert scenario["invariants"]["failed"] == 0 and scenario["invariants"]["checked"] == 12
    assert doc["machine"]["cpus"] and doc["version"] == 1
    # read as the scenario started (the code that ran), the load at its start and end
    assert doc["machine"] == done.machine and doc["machine"]["code"]
    load = scenario["load_avg_1m"]
    assert load["start"] == done.machine["load_avg_1m"] and load["end"] >= 0
    page = html_path.read_text()
    assert page.startswith("<!doctype html>") and "lost_orders &lt; 0" in page
    assert "plotly" in page and "broker faults per case" in page


@pytest.mark.parametrize("name", ["broker", "crash"])
def test_the_work_files_stay_for_inspection(tmp_path: Path, name: str) -> None:
    done = run(tmp_path, BROKER if name == "broker" else CRASH, "w")

    stores = sorted(done.work_dir.rglob("stress.db"))
    assert stores and all((s.parent / "stress.db.sessions" / "run-1").is_dir() for s in stores)
