"""``ultrathink bench --compare REF``: base and head measured interleaved, then judged.

How it runs:

1. ``git worktree add --detach`` checks ``REF`` out into a temporary directory (removed
   afterwards, also on error or Ctrl-C). The head is the working tree this package was
   imported from, uncommitted changes included.
2. This package (``ultrathink/perf``) is copied over the worktree's own, so both sides run
   the same benchmark definitions against their own code -- and a base that predates the
   suite can be measured at all.
3. For each benchmark, ``rounds`` rounds each start one worker process per side
   (``python -m ultrathink.perf.worker``, this interpreter, ``PYTHONPATH`` = that side's
   ``src``); each worker does the warm-ups and ``repeats`` timed runs. The order alternates
   as A B, B A, A B, ... so a drift of the machine's speed hits both sides alike.
4. :func:`ultrathink.perf.stats.judge` compares the pooled repeat values of the two sides.

:func:`compare_sources` does steps 3-4 on any two source trees; :func:`compare_ref` wraps it
with the worktree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ultrathink.errors import ConfigError
from ultrathink.perf.results import repo_root, source_root
from ultrathink.perf.stats import Verdict, judge
from ultrathink.perf.suite import UnknownBenchmarkError

__all__ = [
    "CompareOptions",
    "Comparison",
    "Verdict",
    "WorkerError",
    "base_worktree",
    "compare_ref",
    "compare_sources",
    "judge",
    "resolve_ref",
    "run_worker",
]

Progress = Callable[[str], None]


class WorkerError(RuntimeError):
    """A benchmark worker process failed (its stderr tail is in the message)."""


@dataclass(frozen=True)
class CompareOptions:
    """How to measure and judge (see :func:`ultrathink.perf.stats.judge` for the last four).

    Attributes
    ----------
    quick : bool
        Small sizes.
    rounds : int
        Worker processes per side and benchmark, interleaved.
    repeats, warmup : int or None
        Per worker process (None: the benchmark's defaults).
    alpha, min_effect, n_boot, seed
        Passed to ``judge``.
    """

    quick: bool = False
    rounds: int = 5
    repeats: int | None = None
    warmup: int | None = None
    alpha: float = 0.01
    min_effect: float = 0.05
    n_boot: int = 5_000
    seed: int = 0


@dataclass
class Comparison:
    """Both sides' samples of one benchmark and the verdict (None when a side failed)."""

    name: str
    unit: str = ""
    lower_is_better: bool = True
    base: list[float] = field(default_factory=list)
    head: list[float] = field(default_factory=list)
    verdict: Verdict | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "name": self.name, "unit": self.unit, "lower_is_better": self.lower_is_better,
            "base": self.base, "head": self.head, "error": self.error,
            "verdict": self.verdict.to_dict() if self.verdict else None,
        }  # fmt: skip


def _worker_args(name: str, out: Path, opts: CompareOptions) -> list[str]:
    args = [sys.executable, "-m", "ultrathink.perf.worker", "--bench", name, "--out", str(out)]
    if opts.quick:
        args.append("--quick")
    if opts.repeats is not None:
        args += ["--repeats", str(opts.repeats)]
    if opts.warmup is not None:
        args += ["--warmup", str(opts.warmup)]
    return args


def run_worker(src: Path, name: str, opts: CompareOptions) -> dict[str, Any]:
    """Run benchmark ``name`` in a fresh process importing ``ultrathink`` from ``src``.

    Raises
    ------
    UnknownBenchmarkError
        The side does not know ``name``.
    WorkerError
        The process failed, or imported ``ultrathink`` from somewhere other than ``src``.
    """
    with tempfile.TemporaryDirectory(prefix="ultrathink-worker-") as tmp:
        out = Path(tmp) / "result.json"
        env = {**os.environ, "PYTHONPATH": str(src)}  # only this side's code, first
        proc = subprocess.run(
            _worker_args(name, out, opts), env=env, cwd=tmp, capture_output=True, text=True,
            check=False,
        )  # fmt: skip
        if proc.returncode == 2:
            raise UnknownBenchmarkError(proc.stderr.strip().removeprefix("error: "))
        if proc.returncode != 0 or not out.is_file():
            tail = proc.stderr.strip().splitlines()[-5:]
            raise WorkerError(f"{name} failed in {src} (exit {proc.returncode}): {tail}")
        result: dict[str, Any] = json.loads(out.read_text())
    imported = Path(result["ultrathink_file"])
    if not imported.is_relative_to(Path(src).resolve()):
        raise WorkerError(f"worker for {src} imported ultrathink from {imported}")
    return result


def _compare_one(
    name: str, sides: dict[str, Path], opts: CompareOptions, progress: Progress | None
) -> Comparison:
    cmp = Comparison(name)
    samples: dict[str, list[float]] = {"base": cmp.base, "head": cmp.head}
    for rnd in range(opts.rounds):
        order = ("base", "head") if rnd % 2 == 0 else ("head", "base")
        for side in order:
            try:
                result = run_worker(sides[side], name, opts)
            except WorkerError as exc:
                cmp.error = f"{side}: {exc}"
                return cmp
            samples[side].extend(result["values"])
            cmp.unit, cmp.lower_is_better = result["unit"], result["lower_is_better"]
        if progress is not None:
            progress(f"{name}: round {rnd + 1}/{opts.rounds} done")
    cmp.verdict = judge(
        cmp.base, cmp.head, lower_is_better=cmp.lower_is_better, alpha=opts.alpha,
        min_effect=opts.min_effect, n_boot=opts.n_boot, seed=opts.seed,
    )  # fmt: skip
    return cmp


def compare_sources(
    base_src: Path,
    head_src: Path,
    names: Sequence[str],
    opts: CompareOptions | None = None,
    progress: Progress | None = None,
) -> list[Comparison]:
    """Measure ``names`` on two source trees, interleaved, and judge each benchmark.

    Parameters
    ----------
    base_src, head_src : Path
        Directories holding an ``ultrathink`` package (with ``ultrathink/perf``).
    names : sequence of str
        Exact benchmark names.
    opts : CompareOptions or None
        Measurement and judgement settings (defaults when None).
    progress : callable or None
        Called with one line of text after each round.

    Returns
    -------
    list of Comparison
        One per name, in order; ``error`` is set when a side's worker failed.
    """
    opts = opts or CompareOptions()
    if opts.rounds < 1:
        raise ConfigError(f"rounds must be >= 1, was {opts.rounds}")
    sides = {"base": Path(base_src), "head": Path(head_src)}
    return [_compare_one(name, sides, opts, progress) for name in names]


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=False, timeout=120
    )


def resolve_ref(repo: Path, ref: str) -> str:
    """The commit hash ``ref`` names in ``repo``; :class:`ConfigError` when it names none."""
    if not ref or ref.startswith("-"):
        raise ConfigError(f"--compare needs a git ref (commit, branch, tag), was {ref!r}")
    proc = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if proc.returncode != 0:
        raise ConfigError(f"--compare {ref!r}: not a commit in {repo} (try HEAD~1 or a hash)")
    return proc.stdout.strip()


def overlay_perf(base_src: Path, head_src: Path | None = None) -> None:
    """Replace ``base_src/ultrathink/perf`` with the head's copy (same benchmark definitions)."""
    package = Path(base_src) / "ultrathink"
    if not package.is_dir():
        raise ConfigError(f"the base has no {package}: it predates the src layout")
    source = Path(head_src or source_root()) / "ultrathink" / "perf"
    shutil.rmtree(package / "perf", ignore_errors=True)
    shutil.copytree(source, package / "perf", ignore=shutil.ignore_patterns("__pycache__"))


@contextmanager
def base_worktree(repo: Path, commit: str) -> Iterator[Path]:
    """Check ``commit`` out as a detached worktree in a temp dir; yield its ``src``.

    The worktree is removed (and its administrative files pruned) on exit, also on error.
    """
    tmp = Path(tempfile.mkdtemp(prefix="ultrathink-base-"))
    tree = tmp / "tree"
    proc = _git(repo, "worktree", "add", "--detach", "--quiet", str(tree), commit)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConfigError(f"git worktree add failed: {proc.stderr.strip()}")
    try:
        yield tree / "src"
    finally:
        removed = _git(repo, "worktree", "remove", "--force", str(tree)).returncode == 0
        shutil.rmtree(tmp, ignore_errors=True)
        if not removed:
            _git(repo, "worktree", "prune")


def compare_ref(
    ref: str,
    names: Sequence[str],
    opts: CompareOptions | None = None,
    progress: Progress | None = None,
    repo: Path | None = None,
) -> tuple[str, list[Comparison]]:
    """Compare the working tree (head) against git ``ref`` (base); see :func:`compare_sources`.

    Returns
    -------
    tuple
        (the base commit hash, the comparisons).
    """
    repo = repo or repo_root()
    commit = resolve_ref(repo, ref)
    with base_worktree(repo, commit) as base_src:
        overlay_perf(base_src)
        return commit, compare_sources(base_src, source_root(), names, opts, progress)
