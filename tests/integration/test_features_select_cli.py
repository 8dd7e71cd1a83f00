"""``ultrathink features list|select`` end to end: a real model trained by ``train``, the
selected version registered with its lineage, and one-line errors for a missing or tampered
version and for other data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from tests.integration.conftest import CliRunner

from ultrathink.cli import main
from ultrathink.features.spec import FEATURE_NAMES

DATA = "synthetic:n_bars=1500,seed=3"
FAST = ("--param", "gbm_n_estimators=40", "--param", "forest_n_estimators=40")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # one `ultrathink train` for the module; each test gets its own copy of the registry
    path = tmp_path_factory.mktemp("trained") / "models"
    assert main(["train", "--data", DATA, "--folds", "3", *FAST, "--registry", str(path)]) == 0
    return path


@pytest.fixture
def registry(trained: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "models"))


def _show(cli: CliRunner, registry: Path, version: str) -> dict[str, Any]:
    result = cli("models", "show", version, "--registry", str(registry), "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)  # type: ignore[no-any-return]


def _select(cli: CliRunner, registry: Path, *extra: str) -> Any:
    return cli("features", "select", "v0001", "--registry", str(registry), "--n-repeats", "3",
               *extra)  # fmt: skip


def test_select_registers_a_version_on_the_kept_features_with_its_lineage(
    cli: CliRunner, registry: Path
) -> None:
    result = _select(cli, registry, "--json")

    assert result.code == 0, result.err
    out = result.json()
    assert out["parent"] == "v0001" and out["version"] == "v0002"
    assert sorted(out["kept"] + out["dropped"]) == sorted(FEATURE_NAMES)
    assert out["n_features"] == {"before": 28, "after": len(out["kept"])}
    parent, child = _show(cli, registry, "v0001"), _show(cli, registry, "v0002")
    lineage = child["extra"]["lineage"]
    assert lineage["kind"] == "select" and lineage["parent"] == "v0001"
    assert lineage["method"] == "clustered" and lineage["scoring"] == "accuracy"
    assert lineage["kept"] == out["kept"] and lineage["dropped"] == out["dropped"]
    assert lineage["data_sha256"] == parent["data_hash"] == child["data_hash"]
    assert child["feature_names"] == out["kept"]
    assert child["extra"]["source"] == parent["extra"]["source"]
    assert child["params"] == parent["params"]  # the parent's ensemble, fewer columns
    # "before" is the parent's own walk-forward: the same folds, rows and fits
    folds = parent["metrics"]["folds"]
    before = out["metrics"]["accuracy"]["before"]
    assert before == pytest.approx(sum(f["accuracy"] for f in folds) / len(folds), abs=1e-12)
    assert set(out["latency_us"]) == {"before", "after"}
    assert out["latency_us"]["after"]["p50_us"] > 0
    assert (registry / "reports" / "v0002.html").is_file()
    production = cli("models", "--registry", str(registry), "--json").json()
    assert not any(row["production"] for row in production)  # nothing promoted


def test_select_prints_importances_before_and_after_and_the_target(
    cli: CliRunner, registry: Path
) -> None:
    result = _select(cli, registry, "--no-register", "--method", "mda", "--scoring", "logloss")

    assert result.code == 0, result.err
    for text in ("mean decrease in logloss", "cluster (shuffled together)", "before (v0001)",
                 "single-row p50 µs", "single-row p99 µs", "log loss", "target (≥ 70 %",
                 "model inference only"):  # fmt: skip
        assert text in result.out, text
    assert not (registry / "v0002").exists()


def test_a_seed_repeats_the_selection(cli: CliRunner, registry: Path) -> None:
    first = _select(cli, registry, "--no-register", "--json", "--seed", "5").json()
    second = _select(cli, registry, "--no-register", "--json", "--seed", "5").json()

    assert first["kept"] == second["kept"]
    assert first["features"] == second["features"] and first["clusters"] == second["clusters"]


def _one_line_error(result: Any) -> str:
    assert result.code == 2
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert "Traceback" not in result.err
    return lines[0]


def test_a_missing_version_is_one_line(cli: CliRunner, registry: Path) -> None:
    result = cli("features", "select", "v0042", "--registry", str(registry))

    line = _one_line_error(result)
    assert "v0042" in line and "not found" in line and "v0001" in line


def test_a_tampered_version_is_one_line_and_nothing_is_registered(
    cli: CliRunner, registry: Path
) -> None:
    pickle_path = registry / "v0001" / "model.pkl"
    blob = bytearray(pickle_path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    pickle_path.write_bytes(bytes(blob))

    line = _one_line_error(_select(cli, registry))

    assert "model.pkl" in line and "sha-256 does not match" in line.lower()
    assert not (registry / "v0002").exists()


def test_other_data_than_the_version_was_trained_on_is_one_line(
    cli: CliRunner, registry: Path
) -> None:
    result = _select(cli, registry, "--data", "synthetic:n_bars=1500,seed=4")

    line = _one_line_error(result)
    assert "is not the data model v0001 was trained on" in line


def test_bad_options_are_one_line(cli: CliRunner, tmp_path: Path) -> None:
    line = _one_line_error(_select(cli, tmp_path / "models", "--min-t", "-1"))

    assert line.startswith("error: --min-t:")


def test_features_list_names_every_feature_with_its_definition(cli: CliRunner) -> None:
    result = cli("features", "list", "--json")

    assert result.code == 0, result.err
    rows = result.json()
    assert [r["name"] for r in rows] == list(FEATURE_NAMES)
    by_name = {r["name"]: r["description"] for r in rows}
    assert by_name["logret_5"] == "ln(c / c[t-w]) (w = 5)"
    assert all(by_name.values())
