"""Where benchmark results go: provenance (commit, machine, versions) and ``results.jsonl``.

Each run appends one JSON line per benchmark to ``.bench/results.jsonl`` (git-ignored), with
the git commit and whether the tree was dirty, the UTC date, the machine (CPU model, cores,
RAM), the OS, the Python version and the versions of the numeric libraries, so a figure can
always be traced to the code and the hardware that produced it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from ultrathink.perf.suite import BenchResult

#: distributions whose versions are recorded with every result
TRACKED_PACKAGES = ("numpy", "pandas", "numba", "lightgbm", "scikit-learn", "scipy", "ultrathink")


def source_root() -> Path:
    """The ``src`` directory this ``ultrathink`` package was imported from."""
    return Path(__file__).resolve().parents[2]


def repo_root() -> Path:
    """The checkout holding :func:`source_root` (its parent), else the working directory."""
    candidate = source_root().parent
    return candidate if (candidate / "pyproject.toml").is_file() else Path.cwd()


def default_results_path() -> Path:
    """``<repo>/.bench/results.jsonl``."""
    return repo_root() / ".bench" / "results.jsonl"


def _git(root: Path, *args: str) -> str | None:
    # read-only git; --no-optional-locks keeps `status` from rewriting the index
    try:
        out = subprocess.run(
            ["git", "--no-optional-locks", *args],
            cwd=root, capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state(root: Path | None = None) -> tuple[str, bool | None]:
    """(commit hash or ``"unknown"``, True when tracked or untracked files differ from it)."""
    root = root or repo_root()
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return _commit_from_files(root), None
    status = _git(root, "status", "--porcelain")
    return commit, None if status is None else bool(status)


def _commit_from_files(root: Path) -> str:
    # no git binary: read .git/HEAD and the ref it names
    try:
        head = (root / ".git" / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            return (root / ".git" / head[5:]).read_text().strip()
        return head
    except OSError:
        return "unknown"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def _ram_gib() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def package_versions() -> dict[str, str | None]:
    """Installed versions of :data:`TRACKED_PACKAGES` (None when absent), without importing."""
    out: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment(root: Path | None = None) -> dict[str, Any]:
    """Provenance of a benchmark run: commit, dirty flag, UTC date, machine, OS, versions."""
    commit, dirty = git_state(root)
    return {
        "commit": commit,
        "dirty": dirty,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "arch": platform.machine(),
            "cpu_model": _cpu_model(),
            "n_cores": os.cpu_count(),
            "ram_gib": _ram_gib(),
        },
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": package_versions(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def append_results(
    results: Sequence[BenchResult], path: Path, env: dict[str, Any] | None = None
) -> Path:
    """Append one JSON line per result, each carrying ``env`` (default :func:`environment`).

    Returns
    -------
    Path
        ``path``, created with its directory if needed.
    """
    env = environment() if env is None else env
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        for result in results:
            fh.write(json.dumps({**result.to_dict(), **env, "suite": "ultrathink bench"}) + "\n")
    return path
