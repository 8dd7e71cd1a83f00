"""``--compare``: real interleaved worker processes on two source trees, and a real worktree."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ultrathink.errors import ConfigError
from ultrathink.perf.compare import (
    CompareOptions,
    base_worktree,
    compare_sources,
    resolve_ref,
)
from ultrathink.perf.results import repo_root, source_root
from ultrathink.perf.suite import UnknownBenchmarkError

SELFTEST = '''"""Self-test benchmark of the compare tests: a fixed amount of CPU work."""

import os
import time

from ultrathink.perf.suite import Measurement, benchmark

N_LOOPS = {n_loops}


@benchmark("selftest.spin", "selftest", "s")
def spin(quick):
    """Sum a range of N_LOOPS integers (s of this thread's CPU time)."""
    log = os.environ.get("ULTRATHINK_SELFTEST_LOG")
    if log:  # which side ran, in order: the test checks the interleaving
        with open(log, "a") as fh:
            fh.write("{side}\\n")
    {fail}

    def run():
        # CPU time, not wall time: the work is fixed, so it only counts the work, however
        # long other processes keep this one off the CPU (a loaded test machine)
        t0 = time.thread_time_ns()
        sum(range(N_LOOPS))
        return Measurement(value=(time.thread_time_ns() - t0) / 1e9)

    return run
'''


def _tree(root: Path, side: str, n_loops: int, *, fail: bool = False) -> Path:
    """A copy of this ``ultrathink`` package plus the self-test benchmark; returns its src."""
    src = root / side / "src"
    shutil.copytree(
        source_root() / "ultrathink", src / "ultrathink",
        ignore=shutil.ignore_patterns("__pycache__"),
    )  # fmt: skip
    code = SELFTEST.format(
        n_loops=n_loops, side=side, fail="raise RuntimeError('broken')" if fail else ""
    )
    (src / "ultrathink" / "perf" / "bench_zz_selftest.py").write_text(code)
    return src


def test_interleaved_workers_catch_a_slowdown_in_the_head_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "order.log"
    monkeypatch.setenv("ULTRATHINK_SELFTEST_LOG", str(log))
    base = _tree(tmp_path, "base", 400_000)
    # four times the work in the head's code, timed in CPU time (see SELFTEST). Measured on
    # a 2-core machine with two CPU burners beside it (load average 8-18): wall times
    # stretched up to 10x, unevenly, so head and base runs overlapped; CPU times of single
    # runs up to 1.9x, but the ratio of the medians stayed at 3.9-4.0
    head = _tree(tmp_path, "head", 1_600_000)
    opts = CompareOptions(rounds=6, repeats=4, warmup=1)

    [cmp] = compare_sources(base, head, ["selftest.spin"], opts)

    assert log.read_text().split() == ["base", "head", "head", "base"] * 3
    assert len(cmp.base) == len(cmp.head) == 24
    assert cmp.error is None and cmp.verdict is not None, cmp.error
    assert cmp.verdict.is_regression, cmp.verdict
    assert cmp.verdict.ratio > 2.0, cmp.verdict  # the head's 4x, not a fluke of the load


def test_a_failing_side_is_reported_not_judged(tmp_path: Path) -> None:
    base = _tree(tmp_path, "base", 1_000)
    head = _tree(tmp_path, "head", 1_000, fail=True)

    [cmp] = compare_sources(base, head, ["selftest.spin"], CompareOptions(rounds=1, repeats=2))

    assert cmp.verdict is None
    assert cmp.error is not None and cmp.error.startswith("head:") and "broken" in cmp.error


def test_an_unknown_benchmark_is_bad_input(tmp_path: Path) -> None:
    base = _tree(tmp_path, "base", 1_000)

    with pytest.raises(UnknownBenchmarkError, match="no-such-bench"):
        compare_sources(base, base, ["no-such-bench"], CompareOptions(rounds=1))


def _worktrees() -> str:
    return subprocess.run(
        ["git", "worktree", "list", "--porcelain"],
        cwd=repo_root(), capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def test_the_worktree_is_removed_even_on_error() -> None:
    commit = resolve_ref(repo_root(), "HEAD")

    with pytest.raises(RuntimeError, match="inside"), base_worktree(repo_root(), commit) as src:
        assert (src / "ultrathink" / "__init__.py").is_file()
        assert str(src.parent) in _worktrees()
        raise RuntimeError("inside")

    assert not src.parent.exists()
    assert str(src.parent) not in _worktrees()


@pytest.mark.parametrize("ref", ["no-such-ref-anywhere", "-rf", ""])
def test_unknown_refs_are_refused(ref: str) -> None:
    with pytest.raises(ConfigError, match="--compare"):
        resolve_ref(repo_root(), ref)
