"""A throwaway local Ray cluster for the tests that need a real one.

``ray_cluster`` (module-scoped) runs ``ray start --head`` from the virtualenv's ``ray``
script (next to ``sys.executable``):

- on 127.0.0.1 only: ``--node-ip-address=127.0.0.1`` alone is not enough (Ray replaces a
  loopback node address with the machine's routable one), so ``RAY_ENABLE_WINDOWS_OR_OSX_
  CLUSTER=0`` makes Ray use the loopback address for the node and bind its servers to it;
- on a free port, with 2 CPUs, no dashboard, no usage stats, a small object store, and all
  its files (sessions, logs, sockets, ``ray_current_cluster``) under a fresh temp dir;
- with token authentication on a random token of its own (``RAY_AUTH_MODE=token``,
  ``RAY_AUTH_TOKEN``), so neither the cluster nor its clients read or write
  ``~/.ray/auth_token``;
- in a session of its own (``start_new_session``): every process of the cluster (GCS,
  raylet, agents, workers) stays in that session, which is how teardown finds them.

Readiness is ``ray status --address`` polled against a generous deadline (a busy machine is
slow, never wrong); a failed start is retried on another port. Teardown SIGKILLs every
process of the cluster's session (and any process naming its temp dir), polls until none is
left, and removes the temp dir. It does not run ``ray stop --force``: that kills every Ray
process of the machine by name, including other people's clusters.

``ray_address`` is the cluster's address (``"127.0.0.1:PORT"``); ``RayCluster.env(home)``
is the environment for the ``ray`` CLI and for ``ultrathink`` subprocesses: without
``ULTRATHINK*`` and ``RAY_ADDRESS`` (and Ray's auth variables), with ``ULTRATHINK_HOME=home``
and the cluster's token. A test module registers the fixtures by binding them to module
names, e.g. ``ray_cluster = ray_fixtures.ray_cluster`` (no conftest change needed).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

#: bounds for a slow, busy machine; the loops end as soon as the cluster answers
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 120.0
POLL_S = 0.2
PORT_ATTEMPTS = 3
NUM_CPUS = 2
OBJECT_STORE_BYTES = 256 * 1024 * 1024
#: variables never inherited by the cluster or its clients
_AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def ray_script() -> Path:
    """The ``ray`` console script installed next to the running interpreter."""
    return Path(sys.executable).parent / "ray"


def clean_env(home: Path) -> dict[str, str]:
    """``os.environ`` without ``ULTRATHINK*``, ``RAY_ADDRESS`` and Ray's auth variables, with
    ``ULTRATHINK_HOME=home`` and Ray kept on the loopback interface."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ULTRATHINK") and k != "RAY_ADDRESS" and k not in _AUTH_VARS
    }
    env["ULTRATHINK_HOME"] = str(home)
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # node address 127.0.0.1, loopback binds
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["COLUMNS"] = "200"
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, ppid, session id)`` of a process from ``/proc``; None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses
    fields = raw[raw.rindex(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1]), int(fields[3])


def proc_cmdline(pid: int) -> str:
    """A process's command line, arguments joined by spaces ("" when gone or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(a.decode(errors="replace") for a in raw.split(b"\0") if a).strip()


def pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


@dataclass
class RayCluster:
    """A running throwaway cluster: where it lives and how to reach it."""

    root: Path  # the temp dir: ray's --temp-dir, start logs, the home of the CLI calls
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    port: int = 0
    session_id: int = 0  # the session of `ray start` and of every process it spawns

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def temp_dir(self) -> Path:
        return self.root / "ray"

    def env(self, home: Path) -> dict[str, str]:
        """Environment of a client of this cluster (``ray`` CLI, ``ultrathink --ray``)."""
        return {**clean_env(home), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    def ray(
        self, *args: str, timeout_s: float = COMMAND_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        """Run the ``ray`` CLI as a client of this cluster."""
        return subprocess.run(
            [str(ray_script()), *args], capture_output=True, text=True, cwd=self.root,
            env=self.env(self.root / "home"), timeout=timeout_s, check=False,
        )  # fmt: skip

    def processes(self) -> list[int]:
        """Live (non-zombie) processes of this cluster: its session, or naming its temp dir."""
        found = []
        marker = str(self.temp_dir)
        for pid in pids():
            stat = proc_stat(pid)
            if stat is None or stat[0] in ("Z", "X") or pid == os.getpid():
                continue
            if (self.session_id and stat[2] == self.session_id) or marker in proc_cmdline(pid):
                found.append(pid)
        return found

    def worker_pids(self, title: str) -> list[int]:
        """Processes of this cluster whose title (Ray sets ``ray::TASK`` while a worker runs
        a task) starts with ``title``."""
        return [p for p in self.processes() if proc_cmdline(p).startswith(title)]

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        errors = []
        for _attempt in range(PORT_ATTEMPTS):
            self.port = _free_port()
            log = self.root / f"ray-start-{self.port}.log"
            with log.open("w") as out:
                proc = subprocess.Popen(
                    [str(ray_script()), "start", "--head", "--node-ip-address=127.0.0.1",
                     f"--port={self.port}", f"--num-cpus={NUM_CPUS}",
                     "--include-dashboard=false", "--disable-usage-stats",
                     f"--temp-dir={self.temp_dir}", f"--object-store-memory={OBJECT_STORE_BYTES}",
                     "--log-style=record", "--log-color=false"],
                    stdout=out, stderr=subprocess.STDOUT, cwd=self.root,
                    env=self.env(self.root / "home"), start_new_session=True,
                )  # fmt: skip
                self.session_id = proc.pid
                try:
                    code = proc.wait(timeout=START_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    code = None
            if code == 0 and self._wait_ready():
                return
            errors.append(f"port {self.port}: ray start exited {code}\n{_tail(log)}")
            self.stop()  # whatever half-started: try another port
        joined = "\n".join(errors)
        raise RuntimeError(f"no Ray cluster in {PORT_ATTEMPTS} attempts:\n{joined}")

    def _wait_ready(self) -> bool:
        """True once ``ray status`` answers on the cluster's address."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                if self.ray("status", f"--address={self.address}", timeout_s=60.0).returncode == 0:
                    return True
            if not self.processes():
                return False  # nothing of the cluster is alive any more
            time.sleep(POLL_S)
        return False

    def stop(self) -> None:
        """SIGKILL every process of the cluster (what ``ray stop --force`` sends), until none
        is left; a raylet may spawn a worker while it dies, so the loop looks again."""
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while left := self.processes():
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "Ray processes still alive after teardown: "
                    + ", ".join(f"{p} {proc_cmdline(p)[:80]!r}" for p in left)
                )
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(POLL_S)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _ray_importable() -> str | None:
    """Why Ray cannot be used here, or None when it can."""
    if not ray_script().exists():
        return f"the ray script is not installed ({ray_script()}): pip install 'ultrathink[ray]'"
    # imported in a child, not here: importing Ray in the test process could turn its
    # warnings into errors (filterwarnings = error) and would slow every other test
    proc = subprocess.run(
        [sys.executable, "-c", "import ray"], capture_output=True, text=True,
        timeout=COMMAND_TIMEOUT_S, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return f"Ray is not importable ({last}): pip install 'ultrathink[ray]'"
    return None


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[RayCluster]:
    """A running local Ray cluster on 127.0.0.1, stopped (every process) after the module."""
    reason = _ray_importable()
    if reason is not None:
        pytest.skip(reason)
    # a short path: Ray's unix sockets live under it (sun_path holds 107 bytes)
    root = Path(tempfile.mkdtemp(prefix="ut-ray-"))
    (root / "home").mkdir()
    cluster = RayCluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_address(ray_cluster: RayCluster) -> str:
    """The address of the running cluster, ``"127.0.0.1:PORT"``."""
    return ray_cluster.address
