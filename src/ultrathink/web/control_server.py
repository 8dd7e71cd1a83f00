"""``ControlServer``: the control API served by uvicorn from a daemon thread, on loopback only.

``start`` returns once the socket listens (or raises ``ConfigError`` with uvicorn's reason,
e.g. the port is taken) and has written the session file that ``ultrathink ctl`` reads:
``{"url", "token", "pid", ...}``, mode 0600, replaced atomically. ``stop`` shuts the server
down, joins the thread and removes the session file if it is still this server's.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import uvicorn

from ultrathink.errors import ConfigError
from ultrathink.web.control_app import COMMAND_TIMEOUT_S, CommandChannel, create_app

__all__ = ["ControlServer"]


def _check_loopback(host: str) -> None:
    try:
        is_loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        is_loopback = False
    if not is_loopback:
        raise ConfigError(
            f"control API host must be a loopback IP address (127.0.0.1 or ::1), was {host!r}: "
            "the endpoint has no TLS and must not be reachable from other machines"
        )


class _ErrorRecorder(logging.Handler):
    # uvicorn logs why it cannot listen, then sys.exit()s: keep the reason for start()
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _write_session_file(path: Path, content: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        if hasattr(os, "fchmod"):
            os.fchmod(fh.fileno(), 0o600)  # a leftover tmp file keeps its old mode otherwise
        json.dump(dict(content), fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)  # readers never see a half-written file


class ControlServer:
    """Serve the control API from a daemon thread on a loopback address.

    Parameters
    ----------
    channel : CommandChannel
        The session's command channel.
    token : str or None
        Bearer token; a fresh ``secrets.token_urlsafe(32)`` when None.
    host : str
        Loopback IP address to bind (``127.0.0.1`` or ``::1``); anything else is refused.
    port : int
        TCP port; 0 picks a free one (read it from ``port`` after ``start``).
    session_file : Path or None
        Where to write ``{"url", "token", "pid", ...}`` (mode 0600) while serving.
    command_timeout_s : float
        How long a request waits for the kernel thread to answer.
    """

    def __init__(
        self,
        channel: CommandChannel,
        *,
        token: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        session_file: Path | None = None,
        command_timeout_s: float = COMMAND_TIMEOUT_S,
    ) -> None:
        _check_loopback(host)
        if not 0 <= port <= 65535:
            raise ConfigError(f"control API port must be in [0, 65535], was {port}")
        if token is not None and not token:
            raise ConfigError("control API token must be a non-empty string, was ''")
        self._channel = channel
        self._command_timeout_s = command_timeout_s
        self._token = token if token is not None else secrets.token_urlsafe(32)
        self._host = host
        self._requested_port = port
        self._session_file = Path(session_file) if session_file is not None else None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    @property
    def token(self) -> str:
        """Bearer token clients must present."""
        return self._token

    @property
    def port(self) -> int:
        """Bound TCP port (valid after ``start``)."""
        if self._port is None:
            raise RuntimeError("ControlServer is not running: call start() first")
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321`` (valid after ``start``)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def start(self, extra: Mapping[str, Any] | None = None, *, timeout_s: float = 10.0) -> None:
        """Start serving; return once the socket listens and the session file is written.

        Parameters
        ----------
        extra : Mapping or None
            More JSON-able fields for the session file (e.g. ``{"run_id": ...}``);
            ``url``, ``token`` and ``pid`` cannot be overridden.
        timeout_s : float
            How long to wait for the server to listen.
        """
        if self._thread is not None:
            raise RuntimeError(f"the control API is already serving at {self.url}")
        config = uvicorn.Config(
            create_app(self._channel, self._token, command_timeout_s=self._command_timeout_s),
            host=self._host,
            port=self._requested_port,
            log_level="warning",
            lifespan="off",
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=self._serve, args=(server,), name="ultrathink-control-api", daemon=True
        )
        self._server, self._thread = server, thread
        self._wait_listening(server, thread, timeout_s)
        if self._session_file is not None:
            self._write_session(self._session_file, extra or {})

    @staticmethod
    def _serve(server: uvicorn.Server) -> None:
        with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot bind
            server.run()

    def _wait_listening(
        self, server: uvicorn.Server, thread: threading.Thread, timeout_s: float
    ) -> None:
        recorder = _ErrorRecorder()
        uvicorn_log = logging.getLogger("uvicorn.error")
        uvicorn_log.addHandler(recorder)
        try:
            thread.start()
            deadline = time.monotonic() + timeout_s
            while not server.started and thread.is_alive() and time.monotonic() < deadline:
                time.sleep(0.005)
        finally:
            uvicorn_log.removeHandler(recorder)
        if server.started:
            # port 0: the OS picked the port; only the listening socket knows it
            self._port = int(server.servers[0].sockets[0].getsockname()[1])
            return
        self.stop()
        reason = "; ".join(recorder.messages) or f"not listening after {timeout_s:g} s"
        raise ConfigError(
            f"control API cannot listen on {self._host}:{self._requested_port}: {reason} "
            "(use port 0 for any free port, or stop the process holding this one)"
        )

    def _write_session(self, path: Path, extra: Mapping[str, Any]) -> None:
        # url, token and pid first: ``extra`` cannot override them
        content: dict[str, Any] = {"url": self.url, "token": self._token}
        content["pid"] = os.getpid()
        content.update((k, v) for k, v in extra.items() if k not in content)
        try:
            _write_session_file(path, content)
        except OSError as exc:
            self.stop()
            raise ConfigError(f"cannot write the control session file {path}: {exc}") from exc

    def stop(self, *, timeout_s: float = 5.0) -> None:
        """Shut the server down, join its thread and delete the session file (idempotent)."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        if thread.ident is not None:
            thread.join(timeout_s)
            if thread.is_alive():  # a client holds a connection open: stop waiting for it
                server.force_exit = True
                thread.join(timeout_s)
        self._remove_session_file()
        self._server = self._thread = None
        self._port = None

    def _remove_session_file(self) -> None:
        path = self._session_file
        if path is None or self._port is None:
            return
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        # another session may have replaced the file since: only remove our own
        if isinstance(content, dict) and content.get("token") == self._token:
            path.unlink(missing_ok=True)

    def __enter__(self) -> ControlServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
