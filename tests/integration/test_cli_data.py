"""``ultrathink data``: generate -> validate -> backtest, scenarios and inspect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ultrathink.data import load_data

SPEC = "synthetic:n_bars=3000,seed=21,n_symbols=2"
CRASH = "synthetic:n_bars=2000,seed=1,crash=30@1000/50"


@pytest.mark.parametrize("name", ["gen.csv", "gen.csv.gz", "gen.parquet"])
def test_generate_validate_backtest_round_trip(cli, tmp_path: Path, name: str) -> None:
    path = tmp_path / name

    generated = cli("data", "generate", SPEC, "--out", str(path))
    validated = cli("data", "validate", str(path))
    from_file = cli("backtest", "--no-store", "--json", "--data", str(path))
    from_spec = cli("backtest", "--no-store", "--json", "--data", SPEC)

    assert generated.code == 0, generated.err
    assert generated.out.strip() == f"wrote 6,000 bars of 2 symbol(s) to {path}"
    assert validated.code == 0, validated.err
    assert validated.out.strip() == (
        f"OK: {path}: 6,000 bars, 2 symbol(s), all validation rules pass"
    )
    assert from_file.code == 0, from_file.err
    file_run, spec_run = from_file.json(), from_spec.json()
    assert file_run["data"] == str(path)
    assert file_run["data_hash"] == spec_run["data_hash"], "the file holds the exact bars"
    assert file_run["fills"] == spec_run["fills"]
    assert file_run["final_equity"] == spec_run["final_equity"]


def test_generate_accepts_a_spec_without_prefix(cli, tmp_path: Path) -> None:
    path = tmp_path / "short.csv"

    result = cli("data", "generate", "n_bars=50,seed=2", "--out", str(path))

    assert result.code == 0, result.err
    loaded = load_data(str(path))
    expected = load_data("synthetic:n_bars=50,seed=2")
    assert loaded.sha256() == expected.sha256()


def test_crash_scenario_spec_runs_and_shows_the_crash(cli) -> None:
    data = load_data(CRASH)
    calm = load_data("synthetic:n_bars=2000,seed=1")

    result = cli("backtest", "--no-store", "--json", "--strategy", "buy_and_hold", "--data", CRASH)

    assert result.code == 0, result.err
    summary = result.json()
    assert summary["n_fills"] == 1
    assert summary["max_drawdown"] > 0.25
    assert data.close[1050] / data.close[999] < 0.8
    np.testing.assert_array_equal(data.close[:999], calm.close[:999])


def test_scenario_file_can_be_generated_and_backtested(cli, tmp_path: Path) -> None:
    path = tmp_path / "crash.parquet"

    assert cli("data", "generate", CRASH, "--out", str(path)).code == 0
    result = cli(
        "backtest", "--no-store", "--json", "--strategy", "buy_and_hold", "--data", str(path)
    )

    assert result.code == 0, result.err
    assert result.json()["data_hash"] == load_data(CRASH).sha256()


@pytest.mark.parametrize(
    ("spec", "out", "fragment"),
    [
        ("synthetic:n_bars=10,bogus=1", "a.csv", "unknown key 'bogus'"),
        ("synthetic:n_bars=10", "a.txt", "--out must end in"),
        ("synthetic:n_bars=-1", "a.csv", "n_bars"),
        ("synthetic:crash=20@", "a.csv", "crash"),
        ("synthetic:n_bars=10", "missing_dir/a.csv", "missing_dir"),
    ],
    ids=["unknown-key", "bad-suffix", "negative-bars", "bad-scenario", "missing-dir"],
)
def test_generate_errors_are_clean(cli, tmp_path: Path, spec: str, out: str, fragment: str) -> None:
    result = cli("data", "generate", spec, "--out", str(tmp_path / out))

    assert result.code == 2
    assert result.err.startswith("error: ")
    assert fragment in result.err
    assert "Traceback" not in result.err
    assert not (tmp_path / out).exists()


@pytest.mark.parametrize(
    ("spec", "symbols", "n_bars"),
    [("sp500", ["SP500"], 5031), ("nasdaq", None, None), (SPEC, ["SYN1", "SYN2"], 3000)],
)
def test_inspect_json(cli, spec: str, symbols: list[str] | None, n_bars: int | None) -> None:
    data = load_data(spec)

    result = cli("data", "inspect", spec, "--json")

    assert result.code == 0, result.err
    rows = result.json()
    assert [r["symbol"] for r in rows] == (symbols or list(data.symbols))
    for row in rows:
        sub = data.for_symbol(row["symbol"])
        assert row["bars"] == (n_bars or len(sub)) == len(sub)
        assert row["min_low"] == pytest.approx(float(sub.low.min()))
        assert row["max_high"] == pytest.approx(float(sub.high.max()))
        assert row["last_close"] == pytest.approx(float(sub.close[-1]))
        assert row["min_low"] <= row["last_close"] <= row["max_high"]


def test_inspect_table(cli) -> None:
    result = cli("data", "inspect", "sp500")

    assert result.code == 0
    assert "embedded:sp500: 5,031 bars" in result.out
    assert "SP500" in result.out


def test_inspect_unknown_spec_is_a_clean_error(cli) -> None:
    result = cli("data", "inspect", "no_such_data")

    assert result.code == 2
    assert "unknown data spec 'no_such_data'" in result.err


def test_generate_validate_in_real_subprocesses(cli_subprocess, tmp_path: Path) -> None:
    path = tmp_path / "sub.csv"

    generated = cli_subprocess(
        "data", "generate", "synthetic:n_bars=500,seed=8", "--out", str(path)
    )
    validated = cli_subprocess("data", "validate", str(path))

    assert generated.code == 0, generated.err
    assert validated.code == 0, validated.err
    assert validated.out.startswith(f"OK: {path}: 500 bars")
