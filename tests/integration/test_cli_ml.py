"""The ML commands end to end: ``train``, ``models``, ``backtest --strategy ml`` and ``run``.

Training is the slow part, so a module fixture trains twice into one registry (v0001 with
human output, v0002 with ``--json``) on a small synthetic series and every test works on its
own copy. ``ultrathink run`` (which trains the default ensemble on the S&P 500) runs twice
in a real subprocess, once per module: the first run trains, the second must reuse it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ultrathink.cli import main
from ultrathink.features.spec import FEATURE_NAMES, WARMUP_BARS

SPEC = "synthetic:n_bars=3000,seed=1,freq=1D"  # daily bars 2020-01-01 .. 2028-03-18
TRAIN_END, AFTER_TRAIN = "2025-12-31", "2026-01-01"
SMALL = ("--param", "gbm_n_estimators=20", "--param", "forest_n_estimators=20", "--folds", "3")
TRAIN = ("train", "--data", SPEC, "--end", TRAIN_END, *SMALL)
VERSION_FILES = {"model.pkl", "info.json", "oos.npz", "manifest.json", "manifest.sha256"}


def ts(text: str) -> int:
    return int(pd.Timestamp(text, tz="UTC").value)


def run_main(*argv: str) -> tuple[int, str, str]:
    """``main`` in-process outside a test (module fixtures cannot use capsys)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@dataclass(frozen=True)
class Trained:
    root: Path
    text_out: str
    json_out: dict[str, Any]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("trained") / "models"
    code, text_out, err = run_main(*TRAIN, "--registry", str(root))
    assert code == 0, err
    code, json_text, err = run_main(*TRAIN, "--registry", str(root), "--json")
    assert code == 0, err
    return Trained(root, text_out, json.loads(json_text))


@pytest.fixture
def registry(trained: Trained, tmp_path: Path) -> Path:
    """A private copy of the trained registry (v0001, v0002, nothing promoted)."""
    return Path(shutil.copytree(trained.root, tmp_path / "models"))


def ok_json(cli, *argv: str) -> Any:
    result = cli(*argv)
    assert result.code == 0, result.err
    return result.json()


def ml_backtest(cli, registry: Path, *args: str) -> dict[str, Any]:
    return ok_json(
        cli, "backtest", "--strategy", "ml", "--registry", str(registry), "--data", SPEC,
        "--no-store", "--json", *args,
    )  # fmt: skip


def production(cli, registry: Path) -> list[str]:
    rows = ok_json(cli, "models", "list", "--registry", str(registry), "--json")
    return [row["version"] for row in rows if row["production"]]


def assert_clean_error(result, *fragments: str) -> None:
    assert result.code == 2, result.out
    assert result.err.startswith("error: "), result.err
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in result.err, f"{fragment!r} missing from {result.err!r}"


def flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# -- --help ----------------------------------------------------------------------------------
HELP_CASES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("train",): (
        "--data", "--symbol", "--start", "--end", "--horizon", "--dead-zone-bps", "--folds",
        "--embargo", "--features", "--members", "--param", "--registry", "--promote", "--json",
    ),
    ("models",): ("list", "show", "promote", "rollback", "--registry", "--json"),
    ("models", "list"): ("--registry", "--json"),
    ("models", "show"): ("version", "--registry", "--json"),
    ("models", "promote"): ("version", "--registry"),
    ("models", "rollback"): ("--registry",),
    ("backtest",): ("--strategy", "--model", "--registry"),
    ("paper",): ("--model", "--registry"),
    ("run",): ("--registry", "--db", "--json", "--report"),
}  # fmt: skip


@pytest.mark.parametrize("command", list(HELP_CASES), ids=" ".join)
def test_help_exits_0_and_lists_options(cli, command: tuple[str, ...]) -> None:
    result = cli(*command, "--help")

    assert result.code == 0
    assert result.out.startswith(f"usage: ultrathink {' '.join(command)}")
    for option in HELP_CASES[command]:
        assert option in result.out, f"{option} missing from `{' '.join(command)} --help`"
    assert result.err == ""


def test_top_level_help_lists_train_and_models(cli) -> None:
    result = cli("--help")

    assert result.code == 0
    assert "train" in result.out
    assert "models" in result.out


# -- train -----------------------------------------------------------------------------------
def test_train_prints_walk_forward_and_writes_v0001_with_reports(trained: Trained) -> None:
    out = trained.text_out

    assert "walk-forward" in out
    assert all(f"fold {k}" in out for k in (1, 2, 3))
    assert "overall" in out
    match = re.search(r"registered model v0001 \(.* rows, .* s\); report: (\S+\.html)", out)
    assert match, out
    html = Path(match.group(1))
    assert html == trained.root / "reports" / "v0001.html"
    page = html.read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html")
    divs = re.findall(r'<div id="(\w+)" class="plotly-graph-div"', page)
    assert divs == ["folds", "roc", "calibration", "importances", "proba"]
    assert "<script src" not in page  # plotly.js is inline: the report opens offline
    assert html.with_suffix(".md").is_file()
    assert {p.name for p in (trained.root / "v0001").iterdir()} == VERSION_FILES


def test_train_json_has_version_report_and_report_paths(trained: Trained) -> None:
    out = trained.json_out

    assert out["version"] == "v0002"
    assert len(out["report"]["folds"]) == 3
    assert 0.0 <= out["report"]["overall"]["auc"] <= 1.0
    assert out["seconds"] > 0
    assert Path(out["html"]) == trained.root / "reports" / "v0002.html"
    assert Path(out["html"]).is_file()
    assert "overall" in Path(out["markdown"]).read_text(encoding="utf-8")


def test_train_feature_and_member_subset_is_recorded(cli, tmp_path: Path) -> None:
    reg = tmp_path / "subset"

    trained = cli(
        *TRAIN, "--registry", str(reg), "--features", "logret_1, rsi_14",
        "--members", "gbm,linear", "--promote", "--json",
    )  # fmt: skip
    info = ok_json(cli, "models", "show", "v0001", "--registry", str(reg), "--json")

    assert trained.code == 0, trained.err
    assert info["feature_names"] == ["logret_1", "rsi_14"]
    assert info["params"]["weights"] == [1.0, 0.0, 1.0]  # gbm, forest, linear
    assert len(info["extra"]["low"]) == len(info["extra"]["high"]) == 2
    assert production(cli, reg) == ["v0001"]


def test_train_without_registry_uses_the_default_location(cli, tmp_path: Path) -> None:
    default_root = tmp_path / "home" / "models"  # next to $ULTRATHINK_HOME/ultrathink.db

    trained = cli(*TRAIN, "--features", "logret_1,logret_5", "--members", "linear", "--json")
    listed = ok_json(cli, "models", "list", "--json")

    assert trained.code == 0, trained.err
    assert (default_root / "v0001" / "model.pkl").is_file()
    assert [row["version"] for row in listed] == ["v0001"]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("--folds", "1"), ("2",)),
        (("--features", "logret_1,bogus"), ("unknown features", "bogus", "logret_1")),
        (("--members", "gbm,svm"), ("members", "svm", "gbm", "forest", "linear")),
        (("--param", "gbm_n_estimators=-1"), ("gbm_n_estimators", "-1")),
    ],
    ids=["folds-1", "unknown-feature", "unknown-member", "bad-param-value"],
)
def test_bad_train_options_exit_2_and_register_nothing(
    cli, tmp_path: Path, args: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    reg = tmp_path / "reg"

    result = cli(*TRAIN, "--registry", str(reg), *args)

    assert_clean_error(result, *fragments)
    assert not (reg / "v0001").exists()


@pytest.mark.parametrize(
    ("args", "named"), [(("--folds", "1"), "folds"), (("--horizon", "0"), "horizon")]
)
def test_bad_train_config_error_names_the_option(
    cli, tmp_path: Path, args: tuple[str, ...], named: str
) -> None:
    result = cli(*TRAIN, "--registry", str(tmp_path / "reg"), *args)

    assert_clean_error(result, named)


def test_unknown_ensemble_param_is_a_clean_error(cli, tmp_path: Path) -> None:
    result = cli(*TRAIN, "--registry", str(tmp_path / "reg"), "--param", "bogus_param=3")

    assert_clean_error(result, "bogus_param")


def test_too_little_data_for_the_folds_is_a_clean_error(cli, tmp_path: Path) -> None:
    result = cli(
        "train", "--data", "synthetic:n_bars=200,seed=1,freq=1D", "--folds", "5",
        "--registry", str(tmp_path / "reg"),
    )  # fmt: skip

    assert_clean_error(result, "usable rows", "5 folds")


def test_training_on_several_symbols_asks_for_one(cli, tmp_path: Path) -> None:
    result = cli(
        "train", "--data", "synthetic:n_bars=400,seed=1,n_symbols=2", "--registry",
        str(tmp_path / "reg"),
    )  # fmt: skip

    assert_clean_error(result, "one symbol", "--symbol")


# -- models list / show ----------------------------------------------------------------------
def test_models_list_shows_every_version(cli, registry: Path) -> None:
    text = cli("models", "list", "--registry", str(registry))
    rows = ok_json(cli, "models", "--json", "--registry", str(registry))  # list is the default

    assert text.code == 0, text.err
    assert "v0001" in text.out and "v0002" in text.out
    assert "SYN" in text.out
    assert [r["version"] for r in rows] == ["v0001", "v0002"]
    assert not any(r["production"] for r in rows)


def test_models_show_json_has_features_params_metrics_and_period(cli, registry: Path) -> None:
    info = ok_json(cli, "models", "show", "v0001", "--registry", str(registry), "--json")

    assert info["version"] == "v0001"
    assert info["feature_names"] == list(FEATURE_NAMES)
    assert info["params"]["gbm_n_estimators"] == 20
    assert info["params"]["forest_n_estimators"] == 20
    assert len(info["metrics"]["folds"]) == 3
    assert 0.0 <= info["metrics"]["overall"]["auc"] <= 1.0
    start, end = info["train_period"]
    assert ts("2020-01-01") <= start < end <= ts(TRAIN_END)
    assert info["extra"]["symbol"] == "SYN"
    assert len(info["extra"]["low"]) == len(FEATURE_NAMES)


def test_models_show_text_and_unknown_version(cli, registry: Path) -> None:
    text = cli("models", "show", "v0001", "--registry", str(registry))
    missing = cli("models", "show", "v0099", "--registry", str(registry))

    assert text.code == 0, text.err
    assert "v0001" in text.out and "feature_names" in text.out and "rsi_14" in text.out
    assert_clean_error(missing, "v0099", "v0001", "v0002")


# -- promote / rollback ----------------------------------------------------------------------
def test_promote_and_rollback_move_production(cli, registry: Path) -> None:
    reg = ("--registry", str(registry))

    first = cli("models", "promote", "v0001", *reg)
    second = cli("models", "promote", "v0002", *reg)
    after_promotions = production(cli, registry)
    back = cli("models", "rollback", *reg)
    after_rollback = production(cli, registry)
    again = cli("models", "rollback", *reg)

    assert first.code == 0 and "production is now v0001" in first.out
    assert second.code == 0 and "production is now v0002" in second.out
    assert after_promotions == ["v0002"]
    assert back.code == 0 and "production is now v0001" in back.out
    assert after_rollback == ["v0001"]
    assert_clean_error(again, "rollback needs a previously promoted version")


def test_promote_unknown_version_is_a_clean_error(cli, registry: Path) -> None:
    result = cli("models", "promote", "v0042", "--registry", str(registry))

    assert_clean_error(result, "v0042")
    assert production(cli, registry) == []


def test_ml_backtest_uses_production_else_latest(cli, registry: Path) -> None:
    latest = ml_backtest(cli, registry, "--start", AFTER_TRAIN)
    cli("models", "promote", "v0001", "--registry", str(registry))
    promoted = ml_backtest(cli, registry, "--start", AFTER_TRAIN)

    assert latest["strategy_stats"]["model_version"] == "v0002"
    assert promoted["strategy_stats"]["model_version"] == "v0001"


# -- tampering -------------------------------------------------------------------------------
def test_tampered_model_file_refuses_ml_backtest(cli, registry: Path) -> None:
    pkl = registry / "v0001" / "model.pkl"
    flip_byte(pkl)

    result = cli(
        "backtest", "--strategy", "ml", "--model", "v0001", "--registry", str(registry),
        "--data", SPEC, "--no-store",
    )  # fmt: skip

    assert_clean_error(result, str(pkl), "SHA-256")


def test_tampered_model_file_is_refused_by_the_installed_script(
    cli_subprocess, registry: Path
) -> None:
    flip_byte(registry / "v0002" / "model.pkl")

    result = cli_subprocess(
        "backtest", "--strategy", "ml", "--registry", str(registry), "--data", SPEC,
        "--no-store",
    )  # fmt: skip

    assert_clean_error(result, str(registry / "v0002" / "model.pkl"))


def test_tampered_model_file_fails_models_show(cli, registry: Path) -> None:
    pkl = registry / "v0001" / "model.pkl"
    flip_byte(pkl)

    result = cli("models", "show", "v0001", "--registry", str(registry))

    assert_clean_error(result, str(pkl))


def test_tampered_info_file_fails_models_show(cli, registry: Path) -> None:
    info = registry / "v0001" / "info.json"
    flip_byte(info, offset=20)

    result = cli("models", "show", "v0001", "--registry", str(registry), "--json")

    assert_clean_error(result, str(info), "SHA-256")


# -- backtest --strategy ml --------------------------------------------------------------------
def test_ml_backtest_after_training_is_out_of_sample_with_latency(cli, registry: Path) -> None:
    summary = ml_backtest(cli, registry, "--model", "v0001", "--start", AFTER_TRAIN)

    stats = summary["strategy_stats"]
    assert stats["model_version"] == "v0001"
    assert stats["n_predictions"] > 0
    assert stats["in_sample"] is False
    assert stats["in_sample_bars"] == 0
    # the data runs past the default 365-day model age: the last stretch is held
    assert stats["holds"].get("model_expired", 0) > 0
    assert stats["n_predictions"] + sum(stats["holds"].values()) == (
        summary["n_bars"] - WARMUP_BARS + 1
    )
    latency = summary["decision_latency_us"]
    assert 0 < latency["p50"] <= latency["p99"]
    assert latency["count"] == summary["n_bars"] - WARMUP_BARS
    assert summary["n_trades"] >= 0 and summary["metrics"]


def test_ml_backtest_over_training_period_is_flagged_in_sample(cli, registry: Path) -> None:
    summary = ml_backtest(cli, registry, "--model", "v0001", "--end", TRAIN_END)

    stats = summary["strategy_stats"]
    assert stats["in_sample"] is True
    assert stats["in_sample_bars"] > 0
    assert stats["n_predictions"] > 0


def test_ml_backtest_text_summary_shouts_in_sample_and_shows_latency(cli, registry: Path) -> None:
    result = cli(
        "backtest", "--strategy", "ml", "--registry", str(registry), "--data", SPEC,
        "--end", TRAIN_END, "--no-store",
    )  # fmt: skip

    assert result.code == 0, result.err
    assert re.search(r"model\s*│\s*v0002\s*│", result.out), result.out
    assert re.search(r"IN-SAMPLE bars\s*│\s*[1-9][\d,]*\s*│", result.out), result.out
    assert "decision latency p50 / p99" in result.out


def test_ml_backtest_finds_the_registry_next_to_the_store(
    cli, trained: Trained, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(trained.root, store / "models")

    summary = ok_json(
        cli, "backtest", "--strategy", "ml", "--db", str(store / "u.db"), "--data", SPEC,
        "--start", AFTER_TRAIN, "--json",
    )  # fmt: skip

    assert summary["strategy_stats"]["model_version"] == "v0002"
    assert summary["run_id"] == 1


def test_non_ml_backtest_has_no_model_stats_or_latency(cli) -> None:
    summary = ok_json(cli, "backtest", "--data", SPEC, "--no-store", "--json")

    assert summary["strategy_stats"] == {}
    assert summary["decision_latency_us"] is None


def test_ml_backtest_with_empty_registry_is_a_clean_error(cli, tmp_path: Path) -> None:
    empty = tmp_path / "empty"

    result = cli(
        "backtest", "--strategy", "ml", "--registry", str(empty), "--data", SPEC, "--no-store"
    )

    assert_clean_error(result, str(empty), "no versions")


def test_ml_backtest_with_unknown_model_version_is_a_clean_error(cli, registry: Path) -> None:
    result = cli(
        "backtest", "--strategy", "ml", "--model", "v0042", "--registry", str(registry),
        "--data", SPEC, "--no-store",
    )  # fmt: skip

    assert_clean_error(result, "v0042", "not found")


def test_ml_backtest_rejects_inverted_thresholds(cli, registry: Path) -> None:
    result = cli(
        "backtest", "--strategy", "ml", "--registry", str(registry), "--data", SPEC,
        "--no-store", "--param", "entry_threshold=0.5", "--param", "exit_threshold=0.6",
    )  # fmt: skip

    assert_clean_error(result, "exit_threshold")


# -- run: the main job -----------------------------------------------------------------------
@dataclass(frozen=True)
class RunTwice:
    root: Path
    registry: Path
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def run_twice(tmp_path_factory: pytest.TempPathFactory) -> RunTwice:
    root = tmp_path_factory.mktemp("run")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ULTRATHINK")}
    env.update(ULTRATHINK_HOME=str(root / "home"), COLUMNS="200")
    script = Path(sys.executable).parent / "ultrathink"
    argv = [str(script), "run", "--registry", "models", "--db", "store/ultrathink.db"]

    def invoke(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*argv, *extra], capture_output=True, text=True, timeout=180, cwd=root, env=env,
            check=False,
        )  # fmt: skip

    first = invoke()
    second = invoke("--json")
    return RunTwice(root, root / "models", first, second)


def test_run_first_time_trains_prints_walk_forward_and_promotes_v0001(
    cli, run_twice: RunTwice
) -> None:
    first = run_twice.first

    assert first.returncode == 0, first.stderr
    assert "no model in models: training the default ensemble on sp500" in first.stdout
    assert "walk-forward (purged), model v0001, out-of-sample only" in first.stdout
    assert "registered model v0001" in first.stdout
    assert production(cli, run_twice.registry) == ["v0001"]
    assert (run_twice.registry / "reports" / "v0001.html").is_file()


def test_run_trades_out_of_sample_and_reports_latency(run_twice: RunTwice) -> None:
    out = run_twice.first.stdout

    assert re.search(r"in-sample bars\s*│\s*0\s*│", out), out
    assert re.search(r"decision latency p50 / p99 \(µs\)\s*│\s*[\d.]+ / [\d.]+", out), out
    assert (run_twice.root / "store" / "reports" / "run.html").is_file()


def test_second_run_reuses_the_model_without_retraining(cli, run_twice: RunTwice) -> None:
    second = run_twice.second

    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert "no model" not in second.stdout + second.stderr
    assert "walk-forward" not in second.stdout + second.stderr
    rows = ok_json(cli, "models", "list", "--registry", str(run_twice.registry), "--json")
    assert [r["version"] for r in rows] == ["v0001"]
    assert summary["strategy_stats"]["model_version"] == "v0001"
    assert summary["run_id"] == 2


def test_run_json_summary_is_out_of_sample_from_2013(run_twice: RunTwice) -> None:
    summary = json.loads(run_twice.second.stdout)

    stats = summary["strategy_stats"]
    assert summary["mode"] == "run"
    assert summary["data"] == "embedded:sp500"
    assert stats["in_sample_bars"] == 0
    assert stats["in_sample"] is False
    assert stats["n_predictions"] > 0
    assert summary["fills"]
    assert min(pd.Timestamp(f["time"]) for f in summary["fills"]) >= pd.Timestamp(
        "2013-01-01", tz="UTC"
    )
    latency = summary["decision_latency_us"]
    assert 0 < latency["p50"] <= latency["p99"]
