"""``ultrathink bench``: options, output, the results file, plots and exit codes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ultrathink.perf.results import TRACKED_PACKAGES

OPTIONS = (
    "--list", "--quick", "--filter", "--repeats", "--warmup", "--json", "--plots", "--results",
    "--no-save", "--compare", "--rounds", "--alpha", "--min-effect", "--seed",
)  # fmt: skip
BenchCli = Callable[..., Any]  # the bench_cli fixture of conftest.py
FAST = ("--filter", "portfolio.mark", "--quick", "--repeats", "2", "--warmup", "0")


def test_help_lists_every_option(bench_cli: BenchCli) -> None:
    result = bench_cli("--help")

    assert result.code == 0
    assert result.out.startswith("usage: ultrathink bench")
    for option in OPTIONS:
        assert option in result.out


def test_list_names_every_benchmark(bench_cli: BenchCli) -> None:
    result = bench_cli("--list", "--json")

    assert result.code == 0
    rows = result.json()
    assert len(rows) >= 15
    assert {"name", "group", "unit", "description"} <= set(rows[0])


def test_run_prints_a_table_and_appends_results_with_provenance(
    bench_cli: BenchCli, tmp_path: Path
) -> None:
    path = tmp_path / "results.jsonl"

    result = bench_cli(*FAST, "--results", str(path))
    again = bench_cli(*FAST, "--results", str(path))

    assert result.code == again.code == 0
    assert "portfolio.mark" in result.out and "min – max" in result.out
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 2
    row = rows[0]
    assert row["name"] == "portfolio.mark" and row["mode"] == "quick"
    assert len(row["values"]) == 2 and row["min"] <= row["median"] <= row["max"]
    assert len(row["commit"]) == 40 and row["dirty"] in (True, False)
    assert row["date_utc"].endswith("Z")
    assert {"cpu_model", "n_cores", "ram_gib"} <= set(row["machine"])
    assert row["os"] and row["python"]
    assert set(TRACKED_PACKAGES) <= set(row["versions"]) and row["versions"]["numpy"]


def test_json_output_and_no_save(bench_cli: BenchCli, tmp_path: Path) -> None:
    result = bench_cli(*FAST, "--json", "--no-save")

    assert result.code == 0
    [row] = result.json()["results"]
    assert row["unit"] == "ops/s" and row["lower_is_better"] is False
    assert not list(tmp_path.rglob("*.jsonl"))


@pytest.mark.parametrize(
    "argv",
    [
        ("--filter", "nothing-matches-this"),
        ("--repeats", "0", "--no-save"),
        ("--warmup", "-1", "--no-save"),
        ("--compare", "HEAD", "--rounds", "0"),
        ("--compare", "HEAD", "--alpha", "0.7"),
        ("--compare", "HEAD", "--min-effect", "-1"),
        ("--compare", "no-such-ref-anywhere", *FAST),
        ("--compare", "HEAD", "--filter", "nothing-matches-this"),
    ],
)
def test_bad_input_exits_2(bench_cli: BenchCli, argv: tuple[str, ...]) -> None:
    result = bench_cli(*argv)

    assert result.code == 2
    assert result.err.startswith("error: ")


def test_compare_head_against_itself_exits_0(bench_cli: BenchCli) -> None:
    # A/A through a real worktree of this repository's HEAD (this package copied over it): a
    # plumbing test. It cannot fail on a loaded machine: with 2 rounds x 2 repeats a side,
    # the exact Mann-Whitney p-value is at least 1/C(8,4) = 0.014 > alpha = 0.01, so no
    # wall-time noise can make a regression (the wide min effect is a second guard); judge's
    # own statistics are tested in test_perf_stats.py.
    result = bench_cli(*FAST, "--compare", "HEAD", "--rounds", "2", "--min-effect", "0.3", "--json")

    assert result.code == 0, result.err
    out = result.json()
    [cmp] = out["comparisons"]
    assert len(out["base_commit"]) == 40
    assert cmp["name"] == "portfolio.mark" and cmp["error"] is None
    assert len(cmp["base"]) == len(cmp["head"]) == 4
    assert cmp["verdict"]["status"] in ("no change", "improvement")
