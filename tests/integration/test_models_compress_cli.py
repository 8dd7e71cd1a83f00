"""``ultrathink models compress`` end to end: train, compress, registry, the ml strategy.

A module fixture trains one small ensemble (40 + 50 trees, 3 folds, synthetic daily bars)
and compresses it once with ``--json``; every test works on its own copy of that registry.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.unit.models.compress_fixtures import refit_report

from ultrathink import services
from ultrathink.cli import main
from ultrathink.models.compress import Recipe
from ultrathink.models.ensemble import EnsembleClassifier

SPEC = "synthetic:n_bars=1500,seed=3"
TRAIN = ("train", "--data", SPEC, "--folds", "3", "--param", "gbm_n_estimators=40",
         "--param", "forest_n_estimators=50")  # fmt: skip
LEVERS = ("gbm_trees", "forest_trees", "gbm_leaves", "forest_depth", "drop_members",
          "distil_forest", "float32_thresholds")  # fmt: skip


def run_main(*argv: str) -> tuple[int, str, str]:
    """``main`` in-process outside a test (module fixtures cannot use capsys)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@dataclass(frozen=True)
class Compressed:
    root: Path
    out: dict[str, Any]


@pytest.fixture(scope="module")
def compressed(tmp_path_factory: pytest.TempPathFactory) -> Compressed:
    root = tmp_path_factory.mktemp("compress") / "models"
    code, _, err = run_main(*TRAIN, "--registry", str(root))
    assert code == 0, err
    code, out, err = run_main("models", "compress", "v0001", "--registry", str(root), "--json")
    assert code == 0, err
    return Compressed(root, json.loads(out))


@pytest.fixture
def registry(compressed: Compressed, tmp_path: Path) -> Path:
    """A private copy of the registry: v0001 (trained) and v0002 (compressed)."""
    return Path(shutil.copytree(compressed.root, tmp_path / "models"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_one_line_error(result: Any, *fragments: str) -> None:
    assert result.code == 2, result.out
    assert result.err.startswith("error: ") and result.err.count("\n") == 1, result.err
    for fragment in fragments:
        assert fragment in result.err, f"{fragment!r} missing from {result.err!r}"


def test_compress_registers_a_smaller_version_with_its_lineage(compressed: Compressed) -> None:
    out, reg = compressed.out, services.model_registry(compressed.root)
    parent, child = reg.show("v0001"), reg.show("v0002")
    lineage = child.extra["lineage"]

    assert out["version"] == "v0002" and out["parent"] == "v0001"
    assert lineage["kind"] == "compress" and lineage["parent"] == "v0001"
    assert lineage["data_sha256"] == parent.data_hash == child.data_hash
    assert set(lineage["levers"]) == set(LEVERS)
    assert any(lever["applied"] for lever in lineage["levers"].values())
    assert (compressed.root / "v0002" / "model.pkl").stat().st_size == out["budget"]["bytes_after"]
    assert out["budget"]["smaller_pct"] >= 50.0 and out["budget"]["size_ok"]
    assert out["budget"]["auc_ok"]
    for key in ("source", "low", "high", "symbol", "data", "periods_per_year"):
        assert child.extra[key] == parent.extra[key], key
    assert child.extra["train_config"]["model_params"] == child.params
    assert child.metrics["overall"]["auc"] == pytest.approx(out["budget"]["auc_after"], abs=0)
    assert reg.production() is None  # not promoted


def test_compressed_version_serves_the_ml_strategy_with_parity(registry: Path) -> None:
    bundle = services.load_model_bundle(registry, "v0002")
    rows = services.version_training_set(registry, "v0002")  # its source and hash hold
    model = services.model_registry(registry).load("v0002").model

    assert isinstance(model, EnsembleClassifier)
    expected = model.predict_proba(rows.X)[:, 1]
    got = np.array([bundle.predict_row(np.ascontiguousarray(x)) for x in rows.X])
    np.testing.assert_allclose(got, expected, rtol=0.0, atol=1e-12)


def test_registered_figures_equal_a_walk_forward_of_the_recipe(registry: Path) -> None:
    # the version's params (and distillation teacher, if any) reproduce its recorded figures
    child = services.model_registry(registry).show("v0002")
    teacher = child.extra["lineage"].get("teacher_params")
    rows = services.version_training_set(registry, "v0002")
    report = refit_report(rows, Recipe(child.params, teacher))
    assert report.overall.auc == child.metrics["overall"]["auc"]
    assert report.overall.log_loss == child.metrics["overall"]["log_loss"]


def test_ml_backtest_runs_on_the_compressed_version(cli, registry: Path) -> None:
    result = cli("backtest", "--strategy", "ml", "--model", "v0002", "--registry",
                 str(registry), "--data", SPEC, "--no-store", "--json")  # fmt: skip
    assert result.code == 0, result.err


def test_table_output_and_the_same_model_again(cli, registry: Path) -> None:
    result = cli("models", "compress", "v0001", "--registry", str(registry))

    assert result.code == 0, result.err
    for word in ("before", "final", *LEVERS, "size:", "AUC:", "registered v0003"):
        assert word in result.out, f"{word!r} missing from the table"
    assert sha256(registry / "v0003" / "model.pkl") == sha256(registry / "v0002" / "model.pkl")


def test_unknown_version_is_a_one_line_error(cli, registry: Path) -> None:
    result = cli("models", "compress", "v0099", "--registry", str(registry))
    assert_one_line_error(result, "model version 'v0099' not found", "v0001")


def test_tampered_artefact_is_a_one_line_error(cli, registry: Path) -> None:
    path = registry / "v0001" / "model.pkl"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))

    result = cli("models", "compress", "v0001", "--registry", str(registry))
    assert_one_line_error(result, "SHA-256 does not match the manifest")
    assert not (registry / "v0003").exists()


def test_budget_out_of_range_is_a_one_line_error(cli, registry: Path) -> None:
    result = cli("models", "compress", "v0001", "--registry", str(registry),
                 "--max-auc-loss-pct", "150")  # fmt: skip
    assert_one_line_error(result, "--max-auc-loss-pct must be in [0, 100), was 150")


def test_other_data_than_the_version_was_trained_on_is_refused(cli, registry: Path) -> None:
    result = cli("models", "compress", "v0001", "--registry", str(registry),
                 "--data", "synthetic:n_bars=1500,seed=4")  # fmt: skip
    assert_one_line_error(result, "is not the data model v0001 was trained on")
