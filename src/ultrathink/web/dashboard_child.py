"""``paper --dashboard``: the dashboard of a live session, run as a child process.

The session starts ``ultrathink dashboard`` for its store in a process of its own (its own
process group, so a terminal's Ctrl-C reaches only the session; it dies with the session
through ``PR_SET_PDEATHSIG`` even after a ``kill -9``), waits for its login line, prints the
URL of the session's live page and the one-time login link, and stops it when the session
ends. The dashboard reads the session only through its control API: if the dashboard dies,
hangs or is killed, the session does not notice.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ultrathink.errors import ConfigError

__all__ = ["DashboardChild", "check_port_free"]

#: how long the child may take to import, open the store and listen (a busy machine is slow)
START_TIMEOUT_S = 120.0
_LOGIN_PREFIX = "log in (one-time link): "
_PR_SET_PDEATHSIG = 1


def check_port_free(host: str, port: int) -> None:
    """Refuse, before the session starts, a dashboard port something else holds."""
    import socket

    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"--dashboard-port {port}: cannot listen on {host}:{port} "
                f"({exc.strerror or exc}); pick a free port or 0 for any"
            ) from None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class DashboardChild:
    """The dashboard process of one paper session (see the module docstring)."""

    def __init__(self, db: Path, port: int, run_id: int | None, host: str = "127.0.0.1"):
        self.db = db
        self.port = port
        self.run_id = run_id
        self.host = host
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.login_url = ""
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        """Start it and print where the live page is; on failure print why and go on (the
        session never depends on its dashboard)."""
        cmd = [sys.executable, "-m", "ultrathink.cli", "dashboard", "--db", str(self.db),
               "--host", self.host, "--port", str(self.port)]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True, preexec_fn=_die_with_parent,
        )  # fmt: skip
        lines: list[str] = []
        found = threading.Event()

        def read() -> None:  # keeps draining, so the child never blocks on a full pipe
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                if not found.is_set():
                    lines.append(line)
                    if line.startswith(_LOGIN_PREFIX):
                        self.login_url = line[len(_LOGIN_PREFIX) :].strip()
                        found.set()
            found.set()

        self._reader = threading.Thread(target=read, name="dashboard-output", daemon=True)
        self._reader.start()
        found.wait(START_TIMEOUT_S)
        if not self.login_url:
            self.stop()
            detail = " ".join("".join(lines).split())[-500:] or "no output"
            print(f"warning: the dashboard did not start ({detail}); the session goes on "
                  "without it", file=sys.stderr, flush=True)  # fmt: skip
            return
        self.url = self.login_url.split("/login", 1)[0]
        page = f"{self.url}/live/run-{self.run_id}" if self.run_id is not None else self.url
        print(f"dashboard: {page}\nlog in (one-time link): {self._to_page(page)}",
              file=sys.stderr, flush=True)  # fmt: skip

    def _to_page(self, page: str) -> str:
        # the login link goes straight to the session's page
        path = page[len(self.url) :] or "/"
        sep = "&" if "?" in self.login_url else "?"
        return f"{self.login_url}{sep}next={path}"

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15.0
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # the pipe ends with the process (its group may keep it open a little longer)
        if self._reader is not None:
            self._reader.join(5.0)
        if proc.stdout is not None and (self._reader is None or not self._reader.is_alive()):
            proc.stdout.close()
