"""``ultrathink optimize strategy`` end to end: real Optuna studies in real SQLite storages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from tests.integration.conftest import CliRunner, console_script

DATA = "synthetic:n_bars=2400,seed=3"
SPACE = ("--space", "fast=int:3:15", "--space", "slow=int:20:60")


def _study(cli: CliRunner, db: Path, *extra: str) -> dict[str, Any]:
    result = cli(
        "optimize", "strategy", "--data", DATA, *SPACE, "--db", str(db), "--json",
        "--min-trades", "1", *extra,
    )  # fmt: skip
    assert result.code == 0, result.err
    return json.loads(result.out)  # type: ignore[no-any-return]


def _trials(db: Path, name: str) -> list[tuple[Any, ...]]:
    storage = f"sqlite:///{db.parent / 'studies.db'}"
    study = optuna.load_study(study_name=name, storage=storage)
    return [(t.number, t.state.name, t.params, t.values) for t in study.trials]


def test_a_seeded_study_repeats_exactly(cli: CliRunner, tmp_path: Path) -> None:
    one = _study(cli, tmp_path / "a" / "u.db", "--n-trials", "8", "--seed", "7", "--study", "s")
    two = _study(cli, tmp_path / "b" / "u.db", "--n-trials", "8", "--seed", "7", "--study", "s")

    assert one["best"] == two["best"] and one["walk_forward"] == two["walk_forward"]
    assert one["dsr"] == two["dsr"] and one["pbo"] == two["pbo"]
    assert _trials(tmp_path / "a" / "u.db", "s") == _trials(tmp_path / "b" / "u.db", "s")
    assert sum(one["counts"].values()) == 8 and one["reproducible"]
    winner = one["best"][0]
    assert set(winner["params"]) == {"fast", "slow"}
    assert len(winner["windows"]) == 4 and set(winner["windows"][0]) == {"is", "oos"}
    assert 0.0 <= one["dsr"]["dsr"] <= 1.0 and 0.0 <= one["pbo"]["pbo"] <= 1.0


def test_running_the_command_again_continues_the_study(cli: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    first = _study(cli, db, "--n-trials", "3", "--seed", "1", "--study", "s")
    before = _trials(db, "s")
    again = _study(cli, db, "--n-trials", "5", "--seed", "1", "--study", "s")

    assert not first["resumed"] and again["resumed"]
    assert again["new_trials"] == 2 and sum(again["counts"].values()) == 5
    assert _trials(db, "s")[:3] == before  # nothing finished was lost or redone
    done = _study(cli, db, "--n-trials", "5", "--seed", "1", "--study", "s")
    assert done["new_trials"] == 0


def test_a_study_refuses_to_continue_with_another_question(cli: CliRunner, tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    _study(cli, db, "--n-trials", "2", "--study", "s")
    result = cli(
        "optimize", "strategy", "--data", DATA, "--space", "fast=int:3:9", "--space",
        "slow=int:20:60", "--db", str(db), "--study", "s", "--n-trials", "3", "--min-trades", "1",
    )  # fmt: skip
    assert result.code == 2
    assert result.err.startswith("error: study 's' exists with another space")
    assert len(result.err.strip().splitlines()) == 1


def test_several_objectives_give_a_pareto_front(cli: CliRunner, tmp_path: Path) -> None:
    out = _study(
        cli, tmp_path / "u.db", "--n-trials", "8", "--seed", "2", "--sampler", "nsga2",
        "--objective", "sharpe,max_drawdown",
    )  # fmt: skip
    assert out["directions"] == ["maximize", "minimize"]
    front = out["best"]
    assert front and all(set(r["in_sample"]) == {"sharpe", "max_drawdown"} for r in front)
    for a in front:  # no member of the front dominates another
        for b in front:
            assert not (
                a["in_sample"]["sharpe"] > b["in_sample"]["sharpe"]
                and a["in_sample"]["max_drawdown"] < b["in_sample"]["max_drawdown"]
            )


def test_a_rejected_trial_is_failed_with_its_reason_and_the_study_goes_on(
    cli: CliRunner, tmp_path: Path
) -> None:
    db = tmp_path / "u.db"
    out = _study(cli, db, "--n-trials", "3", "--min-trades", "100000", "--study", "s")
    assert out["counts"] == {"rejected": 3}
    assert out["warnings"] == ["no completed trial: nothing to choose"]
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'studies.db'}")
    reasons = {t.user_attrs["fail_reason"] for t in study.trials}
    assert len(reasons) >= 1
    assert all(r.startswith("rejected: ") and "< --min-trades 100000" in r for r in reasons)


def test_an_invalid_parameter_combination_is_rejected_and_the_study_goes_on(
    cli: CliRunner, tmp_path: Path
) -> None:
    result = cli(
        "optimize", "strategy", "--data", DATA, "--space", "fast=int:10:40", "--space",
        "slow=int:20:30", "--db", str(tmp_path / "u.db"), "--study", "s", "--n-trials", "12",
        "--seed", "3", "--min-trades", "1", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    out = json.loads(result.out)
    assert out["counts"]["rejected"] >= 1 and out["counts"]["complete"] >= 1
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'studies.db'}")
    for trial in study.trials:
        if trial.state.name == "FAIL":
            assert "fast must be < slow" in trial.user_attrs["fail_reason"]
            assert trial.params["fast"] >= trial.params["slow"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--space", "nope=int:1:5"), "has no parameter 'nope'"),
        (("--space", "fast=int:9:3"), "above high"),
        (("--space", "fast=int:3:9", "--sampler", "anneal"), "--sampler 'anneal'"),
        (("--space", "fast=int:3:9", "--pruner", "sometimes"), "--pruner 'sometimes'"),
        (("--space", "fast=int:3:9", "--objective", "alpha"), "can optimise"),
        (("--space", "fast=int:3:9", "--n-trials", "0"), "at least 1"),
        (("--space", "fast=int:3:9", "--param", "fast=4"), "both searched"),
        (("--space", "fast=float:3:9", "--sampler", "grid"), "finite grid"),
        (("--space", "fast=int:3:9", "--windows", "500"), "too few"),
        (
            ("--space", "fast=int:3:9", "--storage", "postgresql://u:secret@127.0.0.1:1/x"),
            "cannot be opened",
        ),
        ((), "search space is empty"),
    ],
)
def test_bad_input_gets_one_clear_line(
    cli: CliRunner, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = cli("optimize", "strategy", "--data", DATA, "--db", str(tmp_path / "u.db"), *args)
    assert result.code == 2, result.err
    assert result.err.startswith("error: ") and message in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert "secret" not in result.err


def test_a_study_killed_mid_trial_resumes_with_every_finished_trial(tmp_path: Path) -> None:
    argv = [
        str(console_script()), "optimize", "strategy", "--data", "synthetic:n_bars=20000,seed=3",
        *SPACE, "--db", str(tmp_path / "u.db"), "--study", "k", "--n-trials", "12",
        "--seed", "5", "--min-trades", "1", "--pruner", "none", "--json",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("ULTRATHINK")}
    with (tmp_path / "killed.err").open("w") as err:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    deadline = time.monotonic() + 300
    complete: list[Any] = []
    while time.monotonic() < deadline and proc.poll() is None:  # readiness: 3 trials stored
        try:
            trials = optuna.load_study(study_name="k", storage=storage).trials
        except KeyError:  # the study is not created yet
            trials = []
        complete = [t for t in trials if t.state.name == "COMPLETE"]
        if len(complete) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, (tmp_path / "killed.err").read_text()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    kept = [(t.number, t.params, t.values) for t in complete]

    resumed = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600, check=False)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    out = json.loads(resumed.stdout)
    assert out["resumed"]
    study = optuna.load_study(study_name="k", storage=storage)
    # the killed trial is failed as interrupted (its heartbeat stopped) and does not count:
    # 12 trials ran to their end, the 3 stored before the kill among them, unchanged
    assert out["counts"]["complete"] == 12 and out["counts"].get("interrupted", 0) <= 1
    by_number = {t.number: (t.number, t.params, t.values) for t in study.trials}
    assert [by_number[row[0]] for row in kept] == kept
