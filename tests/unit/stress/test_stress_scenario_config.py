"""Scenario files: every shipped one loads, and bad files are one clear ConfigError line."""

from __future__ import annotations

from pathlib import Path

import pytest

from ultrathink.errors import ConfigError
from ultrathink.stress.base import COMMON_METRICS
from ultrathink.stress.runner import RunOptions, load_overrides, resolve, suite_names
from ultrathink.stress.scenario import load_scenario, shipped_scenarios
from ultrathink.stress.scenarios import kinds
from ultrathink.stress.thresholds import Threshold

SHIPPED = shipped_scenarios()
MINIMAL = """
kind = "broker"
description = "a small broker scenario"
seed = 1
thresholds = ["lost_orders == 0"]
[params]
n_bars = 50
[[faults]]
name = "t"
timeout = 0.1
"""


def scenario_file(tmp_path: Path, text: str, name: str = "mine.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_the_shipped_scenarios_cover_every_kind_and_the_suite() -> None:
    assert {"crash", "broker", "resources", "chaos"} <= set(SHIPPED)
    assert {load_scenario(n).kind for n in SHIPPED} == set(kinds())
    suite = set(suite_names())
    assert {"broker", "broker-duplicates", "chaos", "crash", "resources", "resources-oom"} <= suite
    # a scenario out of the suite documents an engine gap: none is left
    assert set(SHIPPED) - suite == set()


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("quick", [False, True])
def test_every_shipped_scenario_loads_with_thresholds_on_its_own_metrics(
    name: str, quick: bool
) -> None:
    config = load_scenario(name, quick=quick)

    assert config.name == name and config.quick is quick
    assert config.description and "\n" not in config.description
    assert config.thresholds, f"{name} ships no default threshold"
    assert {t.metric for t in config.thresholds} <= set(config.metrics)
    assert Threshold("invariant_failures", "==", 0.0) in config.thresholds
    assert config.faults, f"{name} has no case"
    assert config.in_suite or config.note, "a scenario kept out of the suite says why"


@pytest.mark.parametrize("kind", sorted(kinds()))
def test_every_kind_declares_its_metrics(kind: str) -> None:
    impl = kinds()[kind]

    assert impl.kind == kind
    assert impl.metrics and not set(impl.metrics) & set(COMMON_METRICS)
    assert all(isinstance(v, str) and v for v in impl.metrics.values())


def test_quick_merges_params_replaces_faults_and_thresholds() -> None:
    full, quick = load_scenario("chaos"), load_scenario("chaos", quick=True)

    assert full.params.parallel == quick.params.parallel == 3
    assert [f.name for f in full.faults] == ["unpaced", "paced"]
    assert [f.name for f in quick.faults] == ["unpaced"]
    assert Threshold("kills", ">=", 25.0) in full.thresholds
    assert Threshold("kills", ">=", 3.0) in quick.thresholds
    assert Threshold("kills", ">=", 25.0) not in quick.thresholds


def test_seed_and_duration_overrides() -> None:
    config = load_scenario("resources", seed=42, duration_s=9.5)

    assert (config.seed, config.duration_s) == (42, 9.5)
    with pytest.raises(ConfigError, match="--duration does not apply to scenario crash"):
        load_scenario("crash", duration_s=3.0)
    with pytest.raises(ConfigError, match="--seed must be in"):
        load_scenario("crash", seed=-1)


def test_a_scenario_file_loads_by_path(tmp_path: Path) -> None:
    config = load_scenario(scenario_file(tmp_path, MINIMAL))

    assert (config.name, config.kind, config.params.n_bars) == ("mine", "broker", 50)
    assert config.faults[0].timeout == 0.1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind = ", "is not valid TOML"),
        ("colour = 'red'\n" + MINIMAL, r"colour is not a key here \(known here: kind, "),
        (MINIMAL.replace("seed = 1", 'seed = "1"'), "seed must be a valid integer"),
        (MINIMAL.replace("seed = 1", "seed = true"), "seed must be a valid integer"),
        (MINIMAL.replace("n_bars = 50", "n_bars = 50\nbars = 3"), "params: bars is not a key"),
        (MINIMAL.replace("timeout = 0.1", "timeout = 1.5"), r"faults\[0\]: timeout must be less"),
        (MINIMAL.replace("timeout = 0.1", "jitter = 0.1"), r"faults\[0\]: jitter is not a key"),
        (MINIMAL.replace('kind = "broker"', 'kind = "nope"'), "kind 'nope' is not a scenario"),
        (MINIMAL.replace("lost_orders == 0", "lost_order == 0"), "unknown metric 'lost_order'"),
        (MINIMAL.replace("lost_orders == 0", "lost_orders = 0"), "is not METRIC OP NUMBER"),
        (MINIMAL.replace('description = "a small broker scenario"', ""), "description is required"),
        (MINIMAL + "[quick]\nsize = 1\n", "quick.size is not a key here"),
    ],
)
def test_bad_scenario_files_are_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    path = scenario_file(tmp_path, text)

    with pytest.raises(ConfigError, match=message) as caught:
        load_scenario(path, quick=True)
    assert "\n" not in str(caught.value) and "mine" in str(caught.value)


def test_an_unknown_scenario_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown scenario nope; known: broker, "):
        load_scenario("nope")
    with pytest.raises(ConfigError, match=r"scenario file .*missing\.toml not found"):
        load_scenario(str(tmp_path / "missing.toml"))


def test_threshold_overrides_are_checked_against_each_scenario(tmp_path: Path) -> None:
    configs = resolve(["broker"], RunOptions(quick=True))
    good = tmp_path / "good.toml"
    good.write_text('broker = ["lost_orders < 1", "p99_decision_us < 5000"]\ncrash = []\n')

    assert load_overrides(good, configs) == {
        "broker": [Threshold("lost_orders", "<", 1.0), Threshold("p99_decision_us", "<", 5000.0)],
        "crash": [],
    }
    cases = {
        'nope = ["a < 1"]': "unknown scenario 'nope'",
        'broker = "lost_orders < 1"': "must be an array of thresholds",
        'broker = ["kills >= 1"]': "unknown metric 'kills'",
        'broker = ["lost_orders <"]': "is not METRIC OP NUMBER",
        "broker = [": "is not valid TOML",
    }
    for text, message in cases.items():
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_overrides(bad, configs)
    with pytest.raises(ConfigError, match=r"--thresholds file .* not found"):
        load_overrides(tmp_path / "missing.toml", configs)
