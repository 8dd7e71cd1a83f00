"""What the workers of one server share: the control file and each worker's statistics.

With ``--workers N`` every worker is a process with its own models, cache and counters, and
an admin request reaches only one of them. They agree through a run directory:

* ``control.json``: the routing, a generation number and a reload token per version. An
  admin change takes ``control.lock`` (``flock``), reads, changes and atomically replaces
  the file with the generation raised. Every worker polls it a few times a second and
  applies a newer generation: loads the versions it lacks or whose token moved, then swaps.
* ``stats-W.json``: worker W's snapshot (variant statistics, cache counters, applied
  generation, readiness, the last reload error), rewritten twice a second. Status routes
  merge the other workers' files with the answering worker's live figures.

Files, not a broker or shared memory, because changes are rare and small, and a crashed
worker leaves nothing locked (``flock`` dies with the process).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

__all__ = ["RunDir"]


class RunDir:
    """The run directory of one server (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.control = path / "control.json"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold ``control.lock`` for a read-modify-write of the control file."""
        fd = os.open(self.path / "control.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def read_control(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = orjson.loads(self.control.read_bytes())
        except FileNotFoundError:
            return None
        return data

    def write_control(self, control: dict[str, Any]) -> None:
        _replace(self.control, orjson.dumps(control))

    def control_mtime(self) -> int:
        try:
            return self.control.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def write_stats(self, worker: int, stats: dict[str, Any]) -> None:
        _replace(self.path / f"stats-{worker}.json", orjson.dumps(stats))

    def other_stats(self, worker: int) -> list[dict[str, Any]]:
        """Every other worker's latest snapshot (a half-written file cannot be seen)."""
        found = []
        for f in sorted(self.path.glob("stats-*.json")):
            if f.name == f"stats-{worker}.json":
                continue
            with contextlib.suppress(OSError, orjson.JSONDecodeError):
                found.append(orjson.loads(f.read_bytes()))
        return found


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
