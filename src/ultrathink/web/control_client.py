"""Talking to a running paper session's control API: trusted control files, loopback-only
URLs, commands and status (stdlib only, so ``ultrathink ctl`` stays import-light).

The bearer token is only ever sent to a loopback address (127.0.0.0/8, ::1) named in a file
that can be trusted: a regular file (not a link) owned by the current user and readable by
nobody else, or a URL given explicitly (loopback only too). Used by ``ultrathink ctl`` and by
the dashboard's live pages.
"""

from __future__ import annotations

import getpass
import ipaddress
import json
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ultrathink.errors import UltrathinkError

if TYPE_CHECKING:
    import http.client
    import urllib.error

__all__ = [
    "CLIENT_TIMEOUT_S",
    "COMMAND_ATTEMPTS",
    "COMMAND_DEADLINE_S",
    "CommandUnconfirmed",
    "ControlClientError",
    "Sent",
    "StatusPoller",
    "default_operator",
    "get_status",
    "live_targets",
    "loopback_url",
    "post_command",
    "read_trusted",
    "send_command",
]

#: The session answers within its own 10 s command timeout; allow for the round trip.
CLIENT_TIMEOUT_S = 15.0
#: How many times a command is sent at most when connections fail (same id every time).
COMMAND_ATTEMPTS = 4
#: Every attempt of one command, pauses included, within this many seconds.
COMMAND_DEADLINE_S = 40.0
#: The pause after the first failed attempt; doubled after each next one (at most 2 s).
RETRY_PAUSE_S = 0.2


class ControlClientError(UltrathinkError):
    """The control command could not be delivered or was refused by the session."""


class CommandUnconfirmed(ControlClientError):
    """Every attempt to send a command failed before its answer came back: the session may
    or may not have applied it (``command_id`` finds it; ``attempts`` were made)."""

    def __init__(self, message: str, command_id: str, attempts: int) -> None:
        super().__init__(message)
        self.command_id = command_id
        self.attempts = attempts


class _Retryable(Exception):
    # the connection failed after the request may have left: send it again, same id
    pass


def default_operator() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (OSError, KeyError):  # no login name (containers without a passwd entry)
        return "unknown"


def read_trusted(path: Path) -> dict[str, Any]:
    """Read a control file if ``ctl`` may trust it (see the module docstring)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise ControlClientError(f"no control file at {path}") from None
    except OSError as exc:
        raise ControlClientError(f"cannot read the control file {path}: {exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ControlClientError(f"{path} is not a regular file: not trusted")
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise ControlClientError(
            f"{path} must be owned by you and readable by nobody else (mode 0600): not trusted"
        )
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ControlClientError(f"cannot read the control file {path}: {exc}") from None
    if not isinstance(content, dict) or not content.get("url") or not content.get("token"):
        raise ControlClientError(f"{path} has no url and token: not a control file")
    return content


def loopback_url(url: str, where: str) -> str:
    parts = urlsplit(url)
    try:
        loopback = parts.scheme == "http" and ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ControlClientError(
            f"{where}: {url!r} is not an http URL on a loopback address (127.0.0.1 or ::1); "
            "the token is never sent anywhere else"
        )
    return url


def live_targets(db: Path) -> list[tuple[str, dict[str, Any]]]:
    """The live sessions of the store ``db`` whose control file can be trusted, as
    ``(label, content)``: ``run 3`` (or the session directory's name for an unstored one)."""
    from ultrathink.engine.sessions import live_sessions

    out = []
    for session in live_sessions(db):
        try:
            content = read_trusted(session.control_file)
        except ControlClientError:
            continue  # not ours, or not trustworthy: never send a token there
        label = f"run {session.run_id}" if session.run_id is not None else session.directory.name
        out.append((label, content))
    return out


def post_command(
    url: str,
    token: str,
    payload: dict[str, Any],
    *,
    command_id: str | None = None,
    timeout_s: float = CLIENT_TIMEOUT_S,
    attempts: int = COMMAND_ATTEMPTS,
    deadline_s: float = COMMAND_DEADLINE_S,
) -> dict[str, Any]:
    """POST one command to ``{url}/v1/commands``, exactly once; the result, or
    ControlClientError.

    The command carries an id (``command_id``, or a fresh uuid4 hex) that the session
    remembers: when the connection fails before the answer arrived (reset, timeout, refused
    after a first attempt), the command is sent again with the same id, at most ``attempts``
    times in all, with a growing pause, within ``deadline_s``; the session answers a repeat
    with the first answer (``"repeat": true``) instead of applying it twice. An HTTP error
    answer (4xx, 5xx) is never retried. When every attempt failed the error says the command
    may or may not have been applied, and how to check.
    """
    return send_command(url, token, payload, command_id=command_id, timeout_s=timeout_s,
                        attempts=attempts, deadline_s=deadline_s).result  # fmt: skip


class Sent:
    """What ``send_command`` did: the session's answer, the id and the attempts it took."""

    __slots__ = ("attempts", "command_id", "result")

    def __init__(self, result: dict[str, Any], command_id: str, attempts: int) -> None:
        self.result, self.command_id, self.attempts = result, command_id, attempts


def send_command(
    url: str,
    token: str,
    payload: dict[str, Any],
    *,
    command_id: str | None = None,
    timeout_s: float = CLIENT_TIMEOUT_S,
    attempts: int = COMMAND_ATTEMPTS,
    deadline_s: float = COMMAND_DEADLINE_S,
) -> Sent:
    """``post_command``, also saying how many attempts it took (the stress scenario counts
    retries). Raises ``CommandUnconfirmed`` when no attempt got an answer."""
    import time
    import uuid

    if attempts < 1 or timeout_s <= 0 or deadline_s <= 0:
        raise ValueError("attempts >= 1, timeout_s > 0 and deadline_s > 0")
    command_id = command_id or uuid.uuid4().hex
    body = {**payload, "id": command_id}
    action = payload.get("action", "the")
    start = time.monotonic()
    deadline = start + deadline_s
    last = ""
    for attempt in range(1, attempts + 1):
        left = deadline - time.monotonic()
        try:
            result = _call(url, token, "/v1/commands", body, timeout_s=min(timeout_s, left),
                           retryable=True, first=attempt == 1)  # fmt: skip
        except _Retryable as exc:
            last = str(exc)
            pause = min(RETRY_PAUSE_S * 2 ** (attempt - 1), 2.0)
            if attempt == attempts or deadline - time.monotonic() <= pause + 0.05:
                break
            time.sleep(pause)
            continue
        return Sent(result, command_id, attempt)
    raise CommandUnconfirmed(
        f"the {action} command (id {command_id}) may or may not have been applied: no answer "
        f"from the paper session at {url} after {attempt} attempts in "
        f"{time.monotonic() - start:.1f} s (last: {last}); check `ultrathink ctl status`, or "
        f"send it again with `--id {command_id}` (the session applies an id once)",
        command_id,
        attempt,
    )


def get_status(url: str, token: str, operator: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """GET ``{url}/v1/status``: the session's latest snapshot (no kernel round trip)."""
    return _call(url, token, "/v1/status", None, {"X-Operator": operator}, timeout_s)


class StatusPoller:
    """Polls ``{url}/v1/status`` over one kept-alive connection (the dashboard's watch).

    A poll that passes the seq of the snapshot it has (``since``) gets None back while the
    session has published nothing newer (the session answers 204 No Content): a watcher that
    polls faster than snapshots are published costs the session a few bytes, not a snapshot.
    One connection for every poll instead of one per poll: no TCP set-up, accept and
    tear-down in the watched session four times a second. A connection the server closed
    while idle is reopened once, transparently.
    """

    def __init__(self, url: str, token: str, operator: str, timeout_s: float = 5.0) -> None:
        self.url = loopback_url(url, "status poller")
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._headers = {"Authorization": f"Bearer {token}", "X-Operator": operator}
        self._timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def poll(self, since: int | None = None) -> dict[str, Any] | None:
        """The status answer, or None when the latest snapshot is still ``since``."""
        import http.client

        path = "/v1/status" if since is None else f"/v1/status?since={since}"
        for attempt in range(2):
            reused = self._conn is not None
            if self._conn is None:
                self._conn = http.client.HTTPConnection(
                    self._host, self._port, timeout=self._timeout_s
                )
            conn = self._conn
            try:
                conn.request("GET", path, headers=self._headers)
                response = conn.getresponse()
                body = response.read()
            except (http.client.HTTPException, OSError) as exc:
                self.close()
                if reused and attempt == 0 and not isinstance(exc, TimeoutError):
                    continue  # the server closed the idle connection: once more, anew
                raise ControlClientError(_unreachable(self.url, exc, self._timeout_s)) from None
            if response.will_close:
                self.close()
            return self._answer(response.status, response.reason, body)
        raise AssertionError("unreachable")  # pragma: no cover

    def _answer(self, status: int, reason: str, body: bytes) -> dict[str, Any] | None:
        if status == 204:
            return None
        if status >= 400:
            try:
                message = json.loads(body).get("error")
            except (ValueError, AttributeError):
                message = None
            raise ControlClientError(f"{message or reason} (HTTP {status})")
        try:
            result: dict[str, Any] = json.loads(body)
        except ValueError:
            raise ControlClientError(f"the server at {self.url} did not answer with JSON") from None
        return result

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _call(
    url: str,
    token: str,
    path: str,
    payload: dict[str, Any] | None,
    headers: dict[str, str] | None = None,
    timeout_s: float = 0.0,
    *,
    retryable: bool = False,
    first: bool = True,
) -> dict[str, Any]:
    # ``retryable``: a failure after the request may have left raises _Retryable (refused
    # only when not ``first``: a first refusal means no session listens, nothing was sent)
    import http.client
    import urllib.error  # lazy: 16 ms of imports every `ultrathink` start would pay
    import urllib.request

    timeout_s = timeout_s or CLIENT_TIMEOUT_S
    request = urllib.request.Request(
        url.rstrip("/") + path,
        data=json.dumps(payload).encode() if payload is not None else None,
        method="POST" if payload is not None else "GET",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                 **(headers or {})},
    )  # fmt: skip
    # no proxies: an http_proxy setting must never receive the bearer token
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    reason: object
    try:
        with opener.open(request, timeout=timeout_s) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        try:
            raise ControlClientError(_server_error(exc)) from None
        finally:
            exc.close()  # an HTTPError holds the response open
    except urllib.error.URLError as exc:
        reason = exc.reason
    except (OSError, http.client.HTTPException) as exc:  # reset mid-answer, timeout and the like
        reason = exc
    else:
        try:
            result: dict[str, Any] = json.loads(body)
        except ValueError:
            if retryable:  # a cut answer: ask again
                raise _Retryable(f"an answer that is not JSON ({len(body)} bytes)") from None
            raise ControlClientError(f"the server at {url} did not answer with JSON") from None
        return result
    lost = isinstance(reason, OSError | http.client.HTTPException)
    if retryable and lost and not (first and isinstance(reason, ConnectionRefusedError)):
        raise _Retryable(_reason(reason, timeout_s)) from None
    raise ControlClientError(_unreachable(url, reason, timeout_s)) from None


def _reason(reason: object, timeout_s: float) -> str:
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout_s:.3g} s"
    text = str(reason) or type(reason).__name__
    return f"{type(reason).__name__}: {text}" if text != type(reason).__name__ else text


def _server_error(exc: urllib.error.HTTPError) -> str:
    try:
        message = json.loads(exc.read()).get("error")
    except (OSError, ValueError, AttributeError):
        message = None
    return f"{message or exc.reason} (HTTP {exc.code})"


def _unreachable(url: str, reason: object, timeout_s: float) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return (
            f"no paper session is listening at {url} (connection refused): it has ended, "
            "or the session file is stale"
        )
    if isinstance(reason, TimeoutError):
        return f"the paper session at {url} did not answer within {timeout_s:g} s"
    return f"cannot reach the paper session at {url}: {reason}"
