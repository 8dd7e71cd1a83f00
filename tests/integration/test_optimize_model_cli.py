"""``optimize model``, ``--n-jobs`` and ``backtest --params-from``, end to end on real Optuna
storages (SQLite and the journal file) and a real model registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from tests.integration.conftest import CliRunner

from ultrathink.decision.ml import MLStrategy

DATA = "synthetic:n_bars=1500,seed=3"
# small, fast members: the study still searches weights, leaves, depths and C
FAST = (
    "--data", DATA, "--folds", "3", "--param", "gbm_n_estimators=20", "--param",
    "forest_n_estimators=20",
)  # fmt: skip


def _model_study(cli: CliRunner, tmp_path: Path, *extra: str) -> dict[str, Any]:
    result = cli(
        "optimize", "model", *FAST, "--db", str(tmp_path / "u.db"), "--registry",
        str(tmp_path / "models"), "--json", *extra,
    )  # fmt: skip
    assert result.code == 0, result.err
    return json.loads(result.out)  # type: ignore[no-any-return]


def _show(cli: CliRunner, tmp_path: Path, version: str) -> dict[str, Any]:
    result = cli("models", "show", version, "--registry", str(tmp_path / "models"), "--json")
    assert result.code == 0, result.err
    return json.loads(result.out)  # type: ignore[no-any-return]


def test_a_model_study_registers_its_winner_with_lineage(cli: CliRunner, tmp_path: Path) -> None:
    out = _model_study(cli, tmp_path, "--n-trials", "6", "--seed", "4", "--study", "m")

    assert out["kind"] == "model" and out["directions"] == ["minimize"]
    assert out["counts"].get("complete", 0) >= 2 and out["reproducible"]
    winner = out["best"][0]
    assert {"gbm_num_leaves", "forest_max_depth", "logit_C", "weight_gbm"} <= set(winner["params"])
    assert "gbm_n_estimators" not in winner["params"]  # fixed by --param, not searched
    assert len(winner["windows"]) == 2  # nested walk-forward over folds 2 and 3
    assert out["registered"] == {"version": "v0001", "trial": winner["trial"], "new": True}
    info = _show(cli, tmp_path, "v0001")
    lineage = info["extra"]["lineage"]
    assert lineage["study"] == "m" and lineage["trial"] == winner["trial"]
    assert lineage["params"] == winner["params"] and lineage["parent"] is None
    assert lineage["data_sha256"] == info["data_hash"]
    weights = info["params"]["weights"]
    expected = [winner["params"][f"weight_{m}"] for m in ("gbm", "forest", "linear")]
    assert weights == expected and info["params"]["gbm_n_estimators"] == 20

    # the same command again: nothing new to run, the winner is not registered twice
    again = _model_study(cli, tmp_path, "--n-trials", "6", "--seed", "4", "--study", "m")
    assert again["new_trials"] == 0 and again["registered"]["new"] is False
    listed = cli("models", "--registry", str(tmp_path / "models"), "--json")
    assert len(json.loads(listed.out)) == 1


def test_a_seeded_model_study_repeats_exactly(cli: CliRunner, tmp_path: Path) -> None:
    args = ("--n-trials", "5", "--seed", "9", "--no-register")
    one = _model_study(cli, tmp_path / "a", *args)
    two = _model_study(cli, tmp_path / "b", *args)
    assert one["best"] == two["best"] and one["dsr"] == two["dsr"]
    assert one["registered"] is None


def test_the_parent_is_recorded_and_must_verify(cli: CliRunner, tmp_path: Path) -> None:
    _model_study(cli, tmp_path, "--n-trials", "3", "--seed", "1", "--study", "p1")
    out = _model_study(
        cli, tmp_path, "--n-trials", "3", "--seed", "1", "--study", "p2", "--parent", "v0001"
    )
    assert _show(cli, tmp_path, out["registered"]["version"])["extra"]["lineage"]["parent"] == (
        "v0001"
    )
    missing = cli("optimize", "model", *FAST, "--db", str(tmp_path / "u.db"), "--registry",
                  str(tmp_path / "models"), "--parent", "v0099")  # fmt: skip
    assert missing.code == 2 and missing.err.startswith("error: ") and "v0099" in missing.err
    model_file = next((tmp_path / "models" / "v0001").glob("model*"))
    model_file.write_bytes(model_file.read_bytes() + b"tampered")
    bad = cli("optimize", "model", *FAST, "--db", str(tmp_path / "u.db"), "--registry",
              str(tmp_path / "models"), "--parent", "v0001")  # fmt: skip
    assert bad.code == 2 and bad.err.startswith("error: ")
    assert len(bad.err.strip().splitlines()) == 1


def test_a_sharpe_study_tunes_the_threshold_that_the_ml_strategy_then_trades(
    cli: CliRunner, tmp_path: Path
) -> None:
    out = _model_study(
        cli, tmp_path, "--n-trials", "8", "--seed", "2", "--objective", "logloss,sharpe",
        "--sampler", "nsga2",
    )  # fmt: skip
    assert out["directions"] == ["minimize", "maximize"]
    assert all("long_threshold" in row["params"] for row in out["best"])
    info = _show(cli, tmp_path, out["registered"]["version"])
    tuned = info["extra"]["decision"]["entry_threshold"]
    assert tuned == out["best"][0]["params"]["long_threshold"]
    assert info["extra"]["train_config"]["long_threshold"] == tuned

    strategy = MLStrategy()
    strategy._adopt_tuned_threshold(info["extra"])
    assert strategy.params.entry_threshold == tuned
    explicit = MLStrategy(entry_threshold=0.6)
    explicit._adopt_tuned_threshold(info["extra"])
    assert explicit.params.entry_threshold == 0.6  # what the user says wins


def test_a_parallel_study_runs_workers_on_the_journal(
    cli_subprocess: CliRunner, tmp_path: Path
) -> None:
    result = cli_subprocess(
        "optimize", "strategy", "--data", "synthetic:n_bars=2400,seed=3", "--space",
        "fast=int:3:15", "--space", "slow=int:20:60", "--min-trades", "1", "--db",
        str(tmp_path / "u.db"), "--n-trials", "10", "--n-jobs", "2", "--seed", "1", "--json",
        timeout_s=600,
    )  # fmt: skip
    assert result.code == 0, result.err
    out = json.loads(result.out)
    assert out["storage"] == f"journal:{(tmp_path / 'studies.journal').resolve()}"
    assert not out["reproducible"] and out["n_jobs"] == 2
    assert 10 <= sum(out["counts"].values()) <= 11  # a worker may start one more
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "studies.journal")))
    study = optuna.load_study(study_name=out["study_name"], storage=storage)
    assert len({t.number for t in study.trials}) == len(study.trials)


def test_backtest_params_from_reruns_a_studys_winner(cli: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    result = cli(
        "optimize", "strategy", "--data", "synthetic:n_bars=2400,seed=3", "--space",
        "fast=int:3:15", "--space", "slow=int:20:60", "--min-trades", "1", "--db", str(db),
        "--n-trials", "4", "--seed", "1", "--study", "w", "--json",
    )  # fmt: skip
    winner = json.loads(result.out)["best"][0]["params"]
    run = cli("backtest", "--params-from", "w", "--data", "synthetic:n_bars=2400,seed=3",
              "--db", str(db), "--json")  # fmt: skip
    assert run.code == 0, run.err
    assert f"trial {json.loads(result.out)['best'][0]['trial']}" in run.err
    ran = json.loads(run.out)["params"]
    assert {k: ran[k] for k in winner} == winner

    override = cli("backtest", "--params-from", "w", "--param", "fast=4", "--data",
                   "synthetic:n_bars=2400,seed=3", "--db", str(db), "--json")  # fmt: skip
    assert json.loads(override.out)["params"]["fast"] == 4


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("optimize", "model", "--objective", "alpha"), "a model study scores"),
        (("optimize", "model", "--space", "nope=int:1:3"), "no parameter 'nope'"),
        (("optimize", "model", "--members", "gbm,svm"), "--members"),
        (("optimize", "model", "--n-jobs", "0"), "--n-jobs"),
        (
            ("optimize", "model", "--n-jobs", "2", "--storage", "sqlite:////tmp/x.db"),
            "cannot share a SQLite storage",
        ),
        (("backtest", "--params-from", "nosuch"), "no study 'nosuch'"),
    ],
)
def test_bad_input_gets_one_clear_line(
    cli: CliRunner, tmp_path: Path, argv: tuple[str, ...], message: str
) -> None:
    result = cli(*argv, "--db", str(tmp_path / "u.db"))
    assert result.code == 2, result.err
    assert result.err.startswith("error: ") and message in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1


def test_a_study_writes_a_self_contained_html_report(cli: CliRunner, tmp_path: Path) -> None:
    result = cli(
        "optimize", "strategy", "--data", "synthetic:n_bars=2400,seed=3", "--space",
        "fast=int:3:15", "--space", "slow=int:20:60", "--min-trades", "1", "--db",
        str(tmp_path / "u.db"), "--n-trials", "6", "--seed", "1", "--study", "r",
        "--objective", "sharpe,max_drawdown", "--sampler", "nsga2", "--report",
        str(tmp_path / "reports"),
    )  # fmt: skip
    assert result.code == 0, result.err
    page = (tmp_path / "reports" / "r.html").read_text()
    for title in ("optimisation history", "parameter importances", "parallel coordinates",
                  "slices", "Pareto front", "in sample vs out of sample", "deflated Sharpe",
                  "probability of backtest overfitting"):  # fmt: skip
        assert f"<h2>{title}" in page
    assert page.count("Plotly.newPlot") >= 6  # the figures are drawn, not "not available"
    assert "<script src=" not in page  # plotly.js is inline: the page opens offline
    assert "browse it: optuna-dashboard sqlite:///" in result.out

    again = cli("optimize", "report", "r", "--out", str(tmp_path / "again.html"), "--db",
                str(tmp_path / "u.db"))  # fmt: skip
    assert again.code == 0 and (tmp_path / "again.html").stat().st_size > 100_000
    missing = cli("optimize", "report", "nope", "--out", str(tmp_path / "x.html"), "--db",
                  str(tmp_path / "u.db"))  # fmt: skip
    assert (
        missing.code == 2
        and "no study 'nope'" in missing.err
        and "studies there: r" in (missing.err)
    )


def test_the_documented_optuna_dashboard_command_opens_a_study(
    cli: CliRunner, tmp_path: Path
) -> None:
    import shutil
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    cli(
        "optimize", "strategy", "--data", "synthetic:n_bars=2400,seed=3", "--space",
        "fast=int:3:15", "--space", "slow=int:20:60", "--min-trades", "1", "--db",
        str(tmp_path / "u.db"), "--n-trials", "3", "--seed", "1", "--study", "seen",
    )  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    assert exe is not None, "optuna-dashboard is a dev dependency"
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    proc = subprocess.Popen(
        [exe, url, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline, body = time.monotonic() + 120, ""
        while time.monotonic() < deadline and proc.poll() is None:  # readiness: it answers
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as r:
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert '"study_name": "seen"' in body or '"study_name":"seen"' in body, body[:300]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_without_data_a_study_tunes_on_the_parents_training_rows(
    cli: CliRunner, tmp_path: Path
) -> None:
    registry = str(tmp_path / "models")
    trained = cli("train", "--data", DATA, "--end", "2020-01-01T20:00", "--folds", "3", "--param",
                  "gbm_n_estimators=20", "--registry", registry)  # fmt: skip
    assert trained.code == 0, trained.err
    result = cli(
        "optimize", "model", "--folds", "3", "--param", "gbm_n_estimators=20", "--param",
        "forest_n_estimators=20", "--n-trials", "2", "--seed", "1", "--parent", "v0001",
        "--registry", registry, "--db", str(tmp_path / "u.db"), "--study", "p", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    study = optuna.load_study(study_name="p", storage=f"sqlite:///{tmp_path / 'studies.db'}")
    parent = _show(cli, tmp_path, "v0001")
    assert study.user_attrs["identity"]["data_sha256"] == parent["data_hash"]
    child = _show(cli, tmp_path, "v0002")
    assert child["extra"]["source"] == parent["extra"]["source"]
    assert child["extra"]["lineage"]["parent"] == "v0001"


def test_timeout_stops_starting_trials(cli: CliRunner, tmp_path: Path) -> None:
    result = cli(
        "optimize", "strategy", "--data", "synthetic:n_bars=2400,seed=3", "--space",
        "fast=int:3:15", "--space", "slow=int:20:60", "--min-trades", "1", "--db",
        str(tmp_path / "u.db"), "--n-trials", "100000", "--timeout", "1", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    out = json.loads(result.out)
    assert 1 <= out["new_trials"] < 100000 and not out["reproducible"]
