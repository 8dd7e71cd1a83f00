"""Child processes of the resource scenarios: limits, CPU burners, mounts, a status poller.

* ``rlimit_prefix`` runs a command under an address-space or data-segment limit: a tiny
  Python wrapper sets ``resource.setrlimit`` and ``exec``s it (no ``preexec_fn`` in a
  process that has threads);
* ``Burners`` are CPU-bound processes, each ending by itself after its time (bounded even if
  this process dies), at a given nice level when allowed;
* ``tmpfs`` and ``readonly_view`` mount a small filesystem and a read-only bind mount (root
  only), always unmounted on the way out;
* ``StatusPoller`` reads a paper session's status (its control API, loopback only) and its
  memory (``/proc`` through psutil) every ``interval_s`` on a thread, until stopped.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_WRAPPER = (
    "import os, resource, sys\n"
    "limit = getattr(resource, 'RLIMIT_' + sys.argv[1])\n"
    "resource.setrlimit(limit, (int(sys.argv[2]), int(sys.argv[2])))\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)
_BURNER = (
    "import os, sys, time\n"
    "try:\n"
    "    os.setpriority(os.PRIO_PROCESS, 0, int(sys.argv[2]))\n"
    "except OSError:\n"
    "    pass\n"
    "end = time.monotonic() + float(sys.argv[1])\n"
    "while time.monotonic() < end:\n"
    "    pass\n"
)
_MIB = 1 << 20


def is_root() -> bool:
    """True when this process runs as root (mounts, negative nice levels)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def rlimit_prefix(which: str, limit_bytes: int) -> list[str]:
    """A prefix that runs the command after it (its first word an absolute path) under
    ``RLIMIT_<which>`` (``AS`` or ``DATA``) of ``limit_bytes``."""
    return [sys.executable, "-c", _WRAPPER, which, str(int(limit_bytes))]


class Burners:
    """``n`` CPU-bound processes for ``seconds`` each, at nice ``nice`` (a context manager).

    Each process ends by itself after ``seconds``; leaving the block ends any still running.
    ``started``/``stopped`` are ``time.monotonic()`` readings.
    """

    def __init__(self, n: int, seconds: float, nice: int) -> None:
        self.n, self.seconds, self.nice = n, seconds, nice
        self._procs: list[subprocess.Popen[bytes]] = []
        self.started = self.stopped = 0.0

    def __enter__(self) -> Burners:
        self.started = time.monotonic()
        args = [sys.executable, "-c", _BURNER, str(self.seconds), str(self.nice)]
        self._procs = [subprocess.Popen(args) for _ in range(self.n)]
        return self

    def wait(self) -> None:
        """Wait until every burner ended (each ends by itself after ``seconds``)."""
        for proc in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self.seconds + 30.0)
        self.stopped = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if not self.stopped:
            self.stopped = time.monotonic()


def kill_and_reap(proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """``kill -9`` a session and wait for its children (the store writer, in its own process
    group, finishes its last batch and exits when its pipe closes) to end too."""
    import psutil

    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        children = []
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    _gone, alive = psutil.wait_procs(children, timeout=timeout_s)
    for child in alive:  # bounded: a child that did not end by itself is ended here
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(alive, timeout=timeout_s)


def run_quiet(argv: Sequence[str]) -> tuple[int, str]:
    """Run a short system command; ``(exit code, stderr)`` (127 if it does not exist)."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return done.returncode, done.stderr.strip()


def release_mounts(root: Path) -> None:
    """Unmount anything mounted under ``root`` (a run killed before its own clean-up)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            points = [line.split()[1] for line in mounts]
    except OSError:
        return
    inside = str(root.resolve()) + os.sep
    for point in sorted((p for p in points if p.startswith(inside)), reverse=True):
        run_quiet(["umount", "-l", point])


@contextlib.contextmanager
def tmpfs(path: Path, size_kb: int) -> Iterator[Path]:
    """A tmpfs of ``size_kb`` KiB mounted at ``path`` (created); unmounted on exit.

    Raises ``OSError`` naming the reason when it cannot be mounted (not root, no mount(8)).
    """
    path.mkdir(parents=True, exist_ok=True)
    code, err = run_quiet(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)])
    if code != 0:
        raise OSError(f"mount -t tmpfs failed ({err or f'exit {code}'})")
    try:
        yield path
    finally:
        run_quiet(["umount", "-l", str(path)])


@contextlib.contextmanager
def readonly_view(source: Path, view: Path) -> Iterator[str]:
    """``source`` seen read-only at ``view``; yields how. Root: a read-only bind mount, else
    the immutable attribute (root ignores file modes); anyone else: the write bits removed.
    Raises ``OSError`` when none of them works here."""
    view.mkdir(parents=True, exist_ok=True)
    if is_root():
        code, err = run_quiet(["mount", "--bind", str(source), str(view)])
        if code == 0:
            try:
                code, err = run_quiet(["mount", "-o", "remount,bind,ro", str(view)])
                if code != 0:
                    raise OSError(f"remount,bind,ro failed ({err})")
                yield "a read-only bind mount"
            finally:
                run_quiet(["umount", "-l", str(view)])
            return
    view.rmdir()
    files = [source, *sorted(source.rglob("*"))]
    how, undo = _immutable(files) if is_root() else _no_write_bits(files)
    try:
        view.symlink_to(source)
        yield how
    finally:
        undo()
        view.unlink(missing_ok=True)


def _immutable(files: list[Path]) -> tuple[str, Callable[[], None]]:
    code, err = run_quiet(["chattr", "+i", *map(str, files)])
    if code != 0:
        run_quiet(["chattr", "-i", *map(str, files)])
        raise OSError(f"neither a read-only bind mount nor chattr +i works here ({err})")

    def undo() -> None:
        run_quiet(["chattr", "-i", *map(str, files)])

    return "chattr +i (immutable files)", undo


def _no_write_bits(files: list[Path]) -> tuple[str, Callable[[], None]]:
    modes = {path: path.stat().st_mode for path in files}
    for path, mode in modes.items():
        path.chmod(mode & ~0o222)

    def undo() -> None:
        for path, mode in modes.items():
            path.chmod(mode)

    return "the write permission removed (chmod a-w)", undo


@dataclass
class Sample:
    """One reading of a session: wall seconds since polling began, its state, its memory."""

    t_s: float
    trading_state: str | None
    degraded: bool | None
    latency_ms: float | None
    rss_mb: float | None
    vms_mb: float | None
    n_bars: int | None


@dataclass
class StatusPoller:
    """Poll a session's status and memory every ``interval_s`` on a thread (``start``/
    ``stop``); ``samples`` keeps every reading."""

    pid: int
    control_file: Path
    interval_s: float = 0.1
    samples: list[Sample] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    def start(self) -> StatusPoller:
        """Start polling (the control file should exist: wait for it first)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stress-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling and wait for the thread."""
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        import psutil

        from ultrathink.web.control_client import ControlClientError, get_status, read_trusted

        try:
            control = read_trusted(self.control_file)
            proc = psutil.Process(self.pid)
        except (ControlClientError, psutil.Error):
            return
        while not self._stop.is_set():
            status: dict[str, Any] = {}
            with contextlib.suppress(ControlClientError):
                status = get_status(control["url"], control["token"], "stress", timeout_s=2.0)
            try:
                mem = proc.memory_info()
            except psutil.Error:
                return  # the session ended
            self.samples.append(_sample(time.monotonic() - self.t0, status, mem))
            self._stop.wait(self.interval_s)


def _sample(t_s: float, status: dict[str, Any], mem: Any) -> Sample:
    snap = status.get("after") or {}  # the status command's answer: the latest snapshot
    hardening = snap.get("hardening") or {}
    readings = hardening.get("degraded_readings") or {}
    return Sample(
        t_s=round(t_s, 3),
        trading_state=snap.get("trading_state"),
        degraded=hardening.get("degraded"),
        latency_ms=readings.get("latency_ms"),
        rss_mb=round(mem.rss / _MIB, 1),
        vms_mb=round(mem.vms / _MIB, 1),
        n_bars=snap.get("n_bars"),
    )
