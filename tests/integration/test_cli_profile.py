"""``ultrathink profile -- COMMAND``: the command runs profiled in-process, four reports land
in ``--out``, the bottleneck table is printed, and the exit code is the command's."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ultrathink.perf import profiler

BACKTEST = ("backtest", "--data", "synthetic:n_bars=80000,seed=1", "--no-store")


ProfileCli = Callable[..., Any]  # returns conftest's CliResult


@pytest.fixture
def profile(cli: Any) -> ProfileCli:
    """Run ``ultrathink profile ARGS`` in-process (the integration ``cli`` runner)."""
    return lambda *argv: cli("profile", *argv)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The strategy of every run whose loop started under a ``Profiler``, in order."""
    runs: list[str] = []
    start = profiler.Profiler.start

    def spy(self: profiler.Profiler, kernel: Any) -> int:
        runs.append(kernel.strategy.name)
        return start(self, kernel)

    monkeypatch.setattr(profiler.Profiler, "start", spy)
    return runs


def test_profiles_a_backtest_and_writes_four_reports(
    profile: ProfileCli, cli: Any, started: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "prof"
    result = profile("--out", str(out), "--", *BACKTEST)
    assert result.code == 0, result.err
    assert "backtest: sma_cross" in result.out  # the command's own output, untouched
    for word in ("stage", "share", "market_data", "decision", "p99.9", "1 in 4096"):
        assert word in result.err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["calls.html", "calls.txt", "metrics.prom", "profile.json"]
    for name in names:
        assert str(out / name) in result.err
    doc = json.loads((out / "profile.json").read_text())
    (run,) = doc["runs"]
    assert run["n_bars"] == 80_000 and run["n_sampled_bars"] >= 15
    assert run["bottleneck"] and run["throughput"]["fills"] > 0
    families = {f.name for f in text_string_to_metric_families((out / "metrics.prom").read_text())}
    assert "ultrathink_profile_stage_seconds" in families
    calls = (out / "calls.txt").read_text()  # pyinstrument saw the command and its loop
    assert "cli/backtest.py" in calls and "Kernel._run_chunk" in calls
    assert started == ["sma_cross"]
    # nothing is left installed: the same command run plainly afterwards is not profiled
    assert cli(*BACKTEST).code == 0
    assert started == ["sma_cross"]


def test_no_calls_and_sample_every(profile: ProfileCli, tmp_path: Path) -> None:
    out = tmp_path / "prof"
    result = profile("--out", str(out), "--no-calls", "--sample-every", "256", "--", *BACKTEST)
    assert result.code == 0, result.err
    assert sorted(p.name for p in out.iterdir()) == ["metrics.prom", "profile.json"]
    run = json.loads((out / "profile.json").read_text())["runs"][0]
    assert run["sample_every"] == 256 and run["n_sampled_bars"] >= 70


def test_default_out_dir(profile: ProfileCli, tmp_path: Path) -> None:
    result = profile("--no-calls", "--", *BACKTEST)
    assert result.code == 0, result.err
    assert (tmp_path / ".ultrathink" / "profile" / "profile.json").is_file()


@pytest.mark.parametrize("argv", [["--"], [], ["--no-calls", "--"]])
def test_no_command_is_bad_usage(profile: ProfileCli, tmp_path: Path, argv: list[str]) -> None:
    result = profile("--out", str(tmp_path / "p"), *argv)
    assert result.code == 2
    assert "needs the command to run after `--`" in result.err
    assert not (tmp_path / "p").exists()


def test_bad_sample_every_and_nested_profile_are_refused(profile: ProfileCli) -> None:
    result = profile("--sample-every", "1000", "--", *BACKTEST)
    assert result.code == 2 and "power of two" in result.err
    result = profile("--", "profile", "--", *BACKTEST)
    assert result.code == 2 and "cannot run `profile`" in result.err


def test_exit_code_is_the_commands(profile: ProfileCli, tmp_path: Path) -> None:
    out = tmp_path / "prof"
    result = profile("--out", str(out), "--no-calls", "--", "backtest", "--data", "nope.csv")
    assert result.code == 2
    assert "error:" in result.err
    assert "made no engine run" in result.err
    assert (out / "profile.json").is_file()
    result = profile("--out", str(out), "--no-calls", "--", "backtest", "--bogus-flag")
    assert result.code == 2  # the command's usage error


def test_help(profile: ProfileCli) -> None:
    result = profile("--help")
    assert result.code == 0
    assert "--sample-every" in result.out and "--no-calls" in result.out
