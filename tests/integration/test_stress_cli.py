"""``ultrathink stress`` through the real CLI: the quick suite, a breached threshold, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ultrathink.stress.scenario import shipped_scenarios

SUITE = set(shipped_scenarios())  # every shipped scenario is in the suite today


@pytest.mark.slow
def test_the_quick_suite_holds_every_threshold_and_writes_its_reports(
    cli_subprocess, tmp_path: Path
) -> None:
    result = cli_subprocess("stress", "suite", "--quick", "--json", timeout_s=900)

    assert result.code == 0, result.err[-3000:]
    assert "Traceback" not in result.err
    doc = result.json()
    assert doc["ok"] is True and doc["quick"] is True and doc["breached"] == []
    assert {s["name"] for s in doc["scenarios"]} == SUITE
    for scenario in doc["scenarios"]:
        assert scenario["ok"], scenario["name"]
        assert scenario["cases"] and scenario["invariants"]["failed"] == 0
        assert scenario["invariants"]["checked"] >= len(scenario["cases"])
        for t in scenario["thresholds"]:
            assert t["status"] in ("ok", "not measured"), t
            assert t["status"] == "ok" or t["note"], "a metric not measured says why"
    # the load-shaped scenarios keep their per-second rows and their resource samples, on
    # one wall clock, for reading after the run
    for scenario in (s for s in doc["scenarios"] if s["kind"] == "load"):
        rows, samples = scenario["series"]["per_second"], scenario["series"]["samples"]
        assert rows and samples, scenario["name"]
        assert {"unix_s", "cpu_pct", "rss_mb", "runq_wait_pct"} <= set(samples[0])
        assert rows[0][0] - 60 <= samples[0]["unix_s"] <= rows[-1][0] + 60
    # the default report directory: .ultrathink/stress next to the store
    reports = tmp_path / "home" / "stress"
    assert json.loads((reports / "suite.json").read_text())["scenarios"] == doc["scenarios"]
    page = (reports / "suite.html").read_text()
    assert page.startswith("<!doctype html>") and "every threshold held" in page
    for name in SUITE:
        assert f"{name}: " in page
        assert (reports / "work" / name).is_dir()
    # load, spike and endurance trade one model, trained once for the suite
    assert len(list((reports / "work" / ".shared").glob("models-*.ok"))) == 1
    assert result.err.count("trained earlier") == 2, "spike and endurance reuse load's"


def test_an_impossible_threshold_exits_1_naming_it(cli_subprocess, tmp_path: Path) -> None:
    thresholds = tmp_path / "impossible.toml"
    thresholds.write_text('broker = ["lost_orders < 0", "uncounted_fallbacks == 0"]\n')
    out = tmp_path / "reports"

    result = cli_subprocess(
        "stress",
        "run",
        "broker",
        "--quick",
        "--thresholds",
        str(thresholds),
        "--report",
        str(out),
        timeout_s=600,
    )

    assert result.code == 1, result.err[-3000:]
    assert "threshold breached: lost_orders < 0 (measured 0)" in result.err.splitlines()
    assert "Traceback" not in result.err
    assert "breached     lost_orders < 0" in result.out
    assert "ok           uncounted_fallbacks == 0" in result.out
    doc = json.loads((out / "broker.json").read_text())
    assert doc["ok"] is False and doc["breached"] == [
        "threshold breached: lost_orders < 0 (measured 0)"
    ]
    assert (out / "broker.html").is_file()


@pytest.mark.parametrize(
    ("argv", "files", "message"),
    [
        (("run", "nope"), {}, "error: unknown scenario nope; known: broker, broker-duplicates"),
        (
            ("run", "crash", "--thresholds", "t.toml"),
            {"t.toml": "crash = ["},
            "error: --thresholds file t.toml is not valid TOML",
        ),
        (
            ("run", "crash", "--thresholds", "t.toml"),
            {"t.toml": 'crash = ["lost == 0"]'},
            "error: --thresholds file t.toml, scenario crash: threshold 'lost == 0': unknown",
        ),
        (
            ("run", "crash", "--thresholds", "t.toml"),
            {"t.toml": 'crash = ["import os"]'},
            "error: --thresholds file t.toml, scenario crash: threshold 'import os' is not METRIC",
        ),
        (
            ("run", "crash", "--thresholds", "t.toml"),
            {"t.toml": 'nope = ["a < 1"]'},
            "error: --thresholds file t.toml: unknown scenario 'nope'",
        ),
        (
            ("run", "crash", "--thresholds", "missing.toml"),
            {},
            "error: --thresholds file missing.toml not found",
        ),
        (("run", "crash", "--duration", "5"), {}, "error: --duration does not apply to scenario"),
        (("suite", "--quick", "--seed", "-3"), {}, "error: --seed must be in [0, 2**63 - 1]"),
        (
            ("run", "s.toml"),
            {"s.toml": "kind = 'crash'\nseed = 1\ndescription = 'x'\nbad = 1"},
            "error: scenario s (s.toml): bad is not a key here",
        ),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(
    cli, tmp_path: Path, argv: tuple[str, ...], files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)

    result = cli("stress", *argv)

    assert result.code == 2
    assert result.err.startswith(message), result.err
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert not (tmp_path / "home" / "stress").exists(), "nothing ran, nothing was written"


def test_list_names_every_scenario_with_its_thresholds(cli) -> None:
    text = cli("stress", "list")
    data = cli("stress", "list", "--json")

    assert text.code == data.code == 0
    for name in shipped_scenarios():
        assert name in text.out
    listed = {s["name"]: s for s in data.json()}
    assert set(listed) == set(shipped_scenarios())
    assert "max_halt_lag_bars <= 1" in listed["crash"]["thresholds"]
    assert all(s["in_suite"] for s in listed.values())
    assert "unaccounted_events" in listed["load"]["metrics"]
    assert "lost_orders" in listed["broker"]["metrics"]
