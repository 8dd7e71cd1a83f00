"""Localhost HTTP control API of a running paper session, and the thread that serves it.

Routes (every one needs ``Authorization: Bearer <token>``; the token is in the session file)::

    POST /v1/commands   a command object (see ``hardening/overrides.py``) -> its result
    GET  /v1/status     the ``status`` command, operator from the ``X-Operator`` header
    GET  /metrics       the session's Prometheus metrics (text format 0.0.4)

The routes only parse and forward: ``CommandChannel.execute`` runs the command on the
engine's kernel thread and answers with ``{"action", "ok", "before", "after", "message"}``.
Errors answer ``{"error": message}``: 400 malformed JSON (not UTF-8, NaN/Infinity or a number
out of range, a repeated key, nested deeper than ``MAX_JSON_DEPTH``), 401 missing or wrong
token, 409 refused now (``OverrideError`` from the session), 413 body over ``MAX_BODY_BYTES``
(refused by its Content-Length, or as soon as the stream passes the cap), 415 not
``Content-Type: application/json``, 422 invalid command, 504 no answer in time.
``ControlServer`` runs uvicorn in a daemon thread, bound to a loopback address only, and
writes the session file (mode 0600) that ``ultrathink ctl`` reads.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from ultrathink.errors import ConfigError
from ultrathink.hardening.overrides import Command, OverrideError, parse_command

__all__ = ["COMMAND_TIMEOUT_S", "CommandChannel", "ControlServer", "create_app"]

#: How long a route waits for the kernel thread to run a command.
COMMAND_TIMEOUT_S = 10.0
#: Commands are a few hundred bytes; anything much larger is not a command.
MAX_BODY_BYTES = 64 * 1024
#: A command is a flat object; JSON nested deeper than this is not a command.
MAX_JSON_DEPTH = 8
#: Digits of the longest integer a command may hold (limits are far smaller).
MAX_INT_DIGITS = 100
#: ``generate_latest`` writes text format 0.0.4; prometheus-client 0.26 moved
#: ``CONTENT_TYPE_LATEST`` to ``version=1.0.0``, which is not what the bytes are.
METRICS_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
_TOKEN_HELP = (
    "send 'Authorization: Bearer <token>' with the token from the session file of the "
    "running paper session (.ultrathink/control.json by default, readable by its owner only); "
    "`ultrathink ctl` reads it for you"
)
_log = logging.getLogger(__name__)


class CommandChannel(Protocol):
    """What the control API needs from a running session (implemented by the engine)."""

    def execute(self, command: Command, timeout_s: float) -> dict[str, Any]:
        """Run the command on the kernel thread; return a JSON-able result
        {"action", "ok": True, "before": {...}, "after": {...}, "message": str}.
        Raises OverrideError when the command cannot apply now (e.g. unknown symbol),
        TimeoutError when the session did not answer in time."""
        ...

    def metrics_text(self) -> bytes:
        """Prometheus text exposition of the session's metrics."""
        ...


class _ApiError(Exception):
    """An error answer: HTTP status and a message that says what to do."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def _api_error_response(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, _ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    # ASCII-escaped: a message that quotes odd input can always be encoded
    body = json.dumps({"error": exc.message}, ensure_ascii=True).encode()
    return Response(body, status_code=exc.status, headers=headers, media_type="application/json")


def _require_token(token: str) -> Callable[[Request], Any]:
    expected = token.encode()

    async def check(request: Request) -> None:
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise _ApiError(401, f"missing bearer token: {_TOKEN_HELP}")
        # bytes: compare_digest refuses non-ASCII str, and header values may hold any latin-1
        if not secrets.compare_digest(presented.strip().encode(), expected):
            raise _ApiError(401, f"wrong bearer token: {_TOKEN_HELP}")

    return check


_EXAMPLE = 'e.g. {"action": "halt", "operator": "alice", "reason": "feed stale"}'


class _BadJson(ValueError):
    """The body is JSON, but not JSON a command may be (raised by the parser hooks)."""


async def _read_json(request: Request) -> Any:
    _check_content_type(request.headers.get("content-type"))
    return _parse_json(await _read_body(request))


def _check_content_type(value: str | None) -> None:
    media, _, params = (value or "").partition(";")
    charset = "utf-8"
    for param in params.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset":
            charset = val.strip().strip('"').lower()
    if media.strip().lower() != "application/json" or charset not in ("utf-8", "utf8"):
        shown = "none" if value is None else repr(value[:80])
        raise _ApiError(
            415,
            f"Content-Type must be application/json (UTF-8), was {shown}; send the command "
            "with the header 'Content-Type: application/json'",
        )


def _too_large(n_bytes: str) -> _ApiError:
    return _ApiError(
        413,
        f"request body must be at most {MAX_BODY_BYTES} bytes, was {n_bytes}; a command is "
        "a small JSON object",
    )


async def _read_body(request: Request) -> bytes:
    # refuse by the declared length before reading anything, then cap the stream itself
    # (chunked bodies declare none, and a client may send more than it declared)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.strip().isdigit():
        digits = declared.strip().lstrip("0") or "0"
        if len(digits) > 18 or int(digits) > MAX_BODY_BYTES:
            raise _too_large(digits if len(digits) <= 18 else f"{len(digits)} digits long")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise _too_large(f"more (reading stopped at {len(body)})")
    except ClientDisconnect:
        raise _ApiError(400, "the client disconnected before the whole body arrived") from None
    return bytes(body)


def _bad_json(detail: str) -> _ApiError:
    return _ApiError(400, f"request body must be a JSON command object, {detail}; {_EXAMPLE}")


def _parse_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")  # not json.loads(bytes): it would guess UTF-16 or -32
    except UnicodeDecodeError as exc:
        raise _bad_json(
            f"in UTF-8: it had the byte 0x{body[exc.start]:02x} at offset {exc.start}"
        ) from None
    try:
        value = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
            object_pairs_hook=_unique_keys,
        )
    except _BadJson as exc:
        raise _bad_json(str(exc)) from None
    except RecursionError:
        raise _bad_json(f"nested at most {MAX_JSON_DEPTH} levels deep; it was far deeper") from None
    except ValueError as exc:  # JSONDecodeError
        raise _bad_json(f"could not parse it ({exc})") from None
    _check_parsed(value)
    return value


def _refuse_constant(name: str) -> Any:
    raise _BadJson(f"it held {name}, which is not a JSON number; send a finite number or null")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadJson(f"it held the number {text[:40]}, which is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _BadJson(
            f"it held an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})"
        )
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys; another parser may keep the first:
    # a command must mean one thing
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _BadJson(f"it repeats the key {key!r}; send each field once")
        out[key] = value
    return out


def _check_parsed(value: Any) -> None:
    # iterative: depth and text checks must not recurse on what they guard against
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise _bad_json(f"nested at most {MAX_JSON_DEPTH} levels deep")
            if isinstance(item, dict):
                stack.extend((k, depth) for k in item)
            stack.extend(
                (v, depth + 1) for v in (item.values() if isinstance(item, dict) else item)
            )


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # "\ud800": an escape of half a character
        raise _bad_json(
            f"with valid text: a string held the unpaired surrogate escape "
            f"{text[exc.start].encode('unicode_escape').decode()}"
        ) from None


def _parse(payload: Any) -> Command:
    try:
        return parse_command(payload)
    except OverrideError as exc:
        raise _ApiError(422, str(exc)) from None


async def _execute(channel: CommandChannel, command: Command, timeout_s: float) -> Response:
    # the channel blocks until the kernel thread answers: keep it off the event loop
    try:
        result = await run_in_threadpool(channel.execute, command, timeout_s=timeout_s)
    except OverrideError as exc:
        raise _ApiError(409, str(exc)) from None
    except TimeoutError as exc:
        detail = f" ({exc})" if str(exc) else ""
        raise _ApiError(
            504,
            f"the session did not answer the {command.action} command within "
            f"{timeout_s:g} s{detail}; it may be busy or stuck: check its log, then retry",
        ) from None
    except Exception as exc:
        _log.exception("control command %s failed in the session", command.action)
        raise _ApiError(
            500, f"the session failed to run the {command.action} command: {exc!r}"
        ) from None
    return JSONResponse(jsonable_encoder(result))


def create_app(
    channel: CommandChannel, token: str, *, command_timeout_s: float = COMMAND_TIMEOUT_S
) -> FastAPI:
    """Build the control API over a session's command channel.

    Parameters
    ----------
    channel : CommandChannel
        Runs commands on the session's kernel thread and exposes its metrics.
    token : str
        Bearer token every request must present (compared in constant time).
    command_timeout_s : float
        How long a request waits for the kernel thread (``timeout_s`` of ``execute``).

    Returns
    -------
    FastAPI
        The ASGI app; serve it on a loopback address only (see ``ControlServer``).
    """
    if not token:
        raise ConfigError("control API token must be a non-empty string, was ''")
    app = FastAPI(
        title="ultrathink control",
        docs_url=None,  # every route is authenticated; no unauthenticated schema pages
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(_require_token(token))],
    )
    app.add_exception_handler(_ApiError, _api_error_response)

    @app.post("/v1/commands")
    async def post_command(request: Request) -> Response:
        command = _parse(await _read_json(request))
        return await _execute(channel, command, command_timeout_s)

    @app.get("/v1/status")
    async def get_status(request: Request) -> Response:
        operator = request.headers.get("x-operator", "anonymous")
        command = _parse({"action": "status", "operator": operator})
        return await _execute(channel, command, command_timeout_s)

    @app.get("/metrics")
    async def get_metrics() -> Response:
        body = await run_in_threadpool(channel.metrics_text)
        return Response(content=body, media_type=METRICS_CONTENT_TYPE)

    return app


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
            content: dict[str, Any] = {"url": self.url, "token": self._token}
            content["pid"] = os.getpid()
            content.update((k, v) for k, v in (extra or {}).items() if k not in content)
            try:
                _write_session_file(self._session_file, content)
            except OSError as exc:
                self.stop()
                raise ConfigError(
                    f"cannot write the control session file {self._session_file}: {exc}"
                ) from exc

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
