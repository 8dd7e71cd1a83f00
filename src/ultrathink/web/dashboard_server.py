"""``DashboardServer``: the dashboard served by uvicorn from a daemon thread, behind a login.

How a browser gets in: the server mints a **one-time login link**
(``http://127.0.0.1:PORT/login?t=TOKEN``, valid once and for ``login_ttl_s``); visiting it
sets an ``HttpOnly; SameSite=Strict`` session cookie (named after the port: cookies do not
tell ports apart) and redirects to ``/``. Every other route needs that cookie, or
``Authorization: Bearer <token>`` for scripts (the token is in the session file). Without
either, ``/api/*`` answers 401 ``{"error": ...}`` and a page answers 401 with a short HTML
page saying how to log in. ``POST /api/login-link`` (bearer only) mints a new link, which is
what ``ultrathink dashboard link`` calls.

Also refused before anything else runs: a ``Host`` header that is not a loopback name (a
DNS-rebinding page), and a cookie-authenticated request that is not a GET/HEAD coming from
another origin. Tokens and session ids are kept as SHA-256 digests, so a lookup compares no
secret byte by byte.

The socket is bound before the server thread starts (the port is known, and a taken port is
a ``ConfigError`` at once); ``UvicornThread.start`` returns when uvicorn's start-up is over (a
``threading.Event``). Then the session file ``{"url", "token", "pid", "db"}`` is written
(``SessionFile``: mode 0600, replaced atomically) for tools and tests. ``stop`` shuts the
server down, joins the thread and removes the session file if it is still this server's.
``UvicornThread`` and ``SessionFile`` are generic: the control API's ``ControlServer`` does
the same two jobs its own way.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import uvicorn
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ultrathink.errors import ConfigError
from ultrathink.web.control_server import _write_session_file
from ultrathink.web.dashboard_app import DashboardConfig, create_app, message_page

__all__ = [
    "DEFAULT_PORT",
    "Auth",
    "DashboardServer",
    "LoginGate",
    "SessionFile",
    "UvicornThread",
    "session_file_for",
]

DEFAULT_PORT = 8200
LOGIN_TTL_S = 3600.0
SESSION_TTL_S = 12 * 3600.0
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_SAFE_METHODS = ("GET", "HEAD")


def session_file_for(db: Path) -> Path:
    """Where a dashboard of the store ``db`` writes its session file: beside the store."""
    return db.with_name(f"{db.name}.dashboard.json")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


class Auth:
    """The bearer token, the one-time login tokens and the browser sessions of one server.

    Parameters
    ----------
    token : str or None
        Bearer token for scripts; a fresh ``secrets.token_urlsafe(32)`` when None.
    cookie_name : str
        Name of the session cookie.
    login_ttl_s, session_ttl_s : float
        How long a login link, and a browser session, stay valid.
    clock : callable
        Monotonic seconds (injected by tests).
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        cookie_name: str = "ultrathink_dashboard",
        login_ttl_s: float = LOGIN_TTL_S,
        session_ttl_s: float = SESSION_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if token is not None and len(token) < 16:
            raise ConfigError("dashboard token must be at least 16 characters long")
        if not (login_ttl_s > 0 and session_ttl_s > 0):
            raise ConfigError(
                f"login and session lifetimes must be > 0 s, were {login_ttl_s} and {session_ttl_s}"
            )
        self.token = token if token is not None else secrets.token_urlsafe(32)
        self.cookie_name = cookie_name
        self.session_ttl_s = session_ttl_s
        self._login_ttl_s = login_ttl_s
        self._clock = clock
        self._logins: dict[str, float] = {}  # digest of a one-time token -> expiry
        self._sessions: dict[str, float] = {}  # digest of a session id -> expiry
        self._lock = threading.Lock()

    def new_login(self) -> str:
        """A new one-time login token."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._prune()
            self._logins[_digest(token)] = self._clock() + self._login_ttl_s
        return token

    def redeem(self, token: str) -> str | None:
        """Spend a login token: a new session id, or None if it is wrong, used or expired."""
        with self._lock:
            self._prune()
            if self._logins.pop(_digest(token), None) is None:
                return None
            session = secrets.token_urlsafe(32)
            self._sessions[_digest(session)] = self._clock() + self.session_ttl_s
        return session

    def has_session(self, session: str) -> bool:
        """True for a live session id."""
        with self._lock:
            expiry = self._sessions.get(_digest(session))
            return expiry is not None and expiry > self._clock()

    def end_session(self, session: str) -> None:
        """Forget a session id (log out)."""
        with self._lock:
            self._sessions.pop(_digest(session), None)

    def bearer_ok(self, authorization: str) -> bool:
        """True when an ``Authorization`` header carries the bearer token."""
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return False
        # bytes: compare_digest refuses non-ASCII str, and header values may hold any latin-1
        return secrets.compare_digest(presented.strip().encode(), self.token.encode())

    def _prune(self) -> None:
        now = self._clock()
        for table in (self._logins, self._sessions):
            for key in [k for k, expiry in table.items() if expiry <= now]:
                del table[key]


def _login_help(what: str) -> str:
    return (
        f"{what}: open the one-time login link that `ultrathink dashboard` printed (a link works "
        f"once, within {LOGIN_TTL_S / 60:g} minutes); for a new one run `ultrathink dashboard "
        "link` with the same --db. "
        "Scripts send 'Authorization: Bearer <token>' with the token from the dashboard's "
        "session file"
    )


class LoginGate:
    """ASGI middleware in front of the dashboard: ``/login``, ``/logout``, the login link
    route, and the cookie or bearer check of every other request (see the module docstring).
    """

    def __init__(self, app: ASGIApp, auth: Auth, login_url: Callable[[], str]) -> None:
        self._app = app
        self._auth = auth
        self._login_url = login_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # no websockets; lifespan is off
            return
        request = Request(scope)
        response = self._gate(request)
        if response is None:
            await self._app(scope, receive, send)
        else:
            await response(scope, receive, send)

    def _gate(self, request: Request) -> Response | None:
        host = (request.url.hostname or "").strip("[]").lower()
        if host not in _LOOPBACK_NAMES and not _is_loopback_ip(host):
            return _refusal(request, 400, f"Host {host!r} is not a loopback name; open the "
                            "dashboard at the URL it printed")  # fmt: skip
        path = request.url.path
        if path == "/login":
            return self._login(request)
        if path == "/logout":
            return self._logout(request)
        bearer = self._auth.bearer_ok(request.headers.get("authorization", ""))
        if path == "/api/login-link" and request.method == "POST":
            if not bearer:
                return _refusal(
                    request, 401, _login_help("a new login link needs the bearer token")
                )
            return Response(json.dumps({"url": self._login_url()}), media_type="application/json")
        if bearer:
            return None
        session = request.cookies.get(self._auth.cookie_name, "")
        if not (session and self._auth.has_session(session)):
            what = "not logged in" if not session else "your session has ended"
            return _refusal(request, 401, _login_help(what))
        if request.method not in _SAFE_METHODS and not _same_origin(request):
            return _refusal(request, 403, "a cross-origin request may not change anything")
        return None

    def _login(self, request: Request) -> Response:
        tokens = request.query_params.getlist("t")
        session = self._auth.redeem(tokens[0]) if len(tokens) == 1 else None
        if session is None:
            return _refusal(request, 401, _login_help("this login link is wrong, used or expired"))
        response = RedirectResponse(_local_path(request.query_params.get("next")), 303)
        response.set_cookie(self._auth.cookie_name, session, max_age=int(self._auth.session_ttl_s),
                            path="/", httponly=True, samesite="strict")  # fmt: skip
        return _hardened(response)

    def _logout(self, request: Request) -> Response:
        session = request.cookies.get(self._auth.cookie_name)
        if session:
            self._auth.end_session(session)
        again = _login_help("To log in again").split(": ", 1)[1]
        response = message_page("Logged out", f"You are logged out. To log in again, {again}", 200)
        response.delete_cookie(self._auth.cookie_name, path="/", httponly=True, samesite="strict")
        return _hardened(response)


def _local_path(target: str | None) -> str:
    # where a login goes on to (``next``): a path on this server only, never another site
    if target is None or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target if "\\" not in target and target.isprintable() else "/"


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"


def _refusal(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api/"):
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        body = json.dumps({"error": message}, ensure_ascii=True)
        response: Response = Response(body, status, headers, media_type="application/json")
    else:
        title = {400: "Bad request", 401: "Log in", 403: "Refused"}.get(status, "Error")
        response = message_page(title, message, status)
    return _hardened(response)


def _hardened(response: Response) -> Response:
    # the login URL carries a token: never send it on as a referrer, never cache these
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _check_host(host: str) -> None:
    if host.lower() != "localhost" and not _is_loopback_ip(host):
        raise ConfigError(
            f"--host must be a loopback address (127.0.0.1, ::1 or localhost), was {host!r}: the "
            "dashboard has no TLS and must not be reachable from other machines; to open it "
            "from elsewhere, forward the port over SSH (ssh -L 8200:127.0.0.1:8200 HOST)"
        )


def _listen(host: str, port: int) -> socket.socket:
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        raise ConfigError(
            f"the dashboard cannot listen on {host}:{port} ({exc.strerror or exc}); pass another "
            "--port (0: any free one) or stop the process holding it"
        ) from None


class _Uvicorn(uvicorn.Server):
    # uvicorn.Server that says when its start-up is over (started or failed)
    def __init__(self, config: uvicorn.Config, done: threading.Event) -> None:
        super().__init__(config)
        self.done = done

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.done.set()


class UvicornThread:
    """An ASGI app served by uvicorn from a daemon thread, on a socket bound beforehand.

    ``start`` returns once uvicorn's start-up is over (an event, no polling): the socket
    already listened, so no client was refused meanwhile. ``stop`` asks uvicorn to exit,
    joins the thread, and forces the exit when a client holds a connection open.
    """

    def __init__(self, app: ASGIApp, sock: socket.socket, name: str) -> None:
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = _Uvicorn(config, threading.Event())
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        with contextlib.suppress(SystemExit):  # uvicorn exits when its start-up fails
            self._server.run(sockets=[self._sock])

    def start(self, timeout_s: float) -> None:
        """Start the thread; ``ConfigError`` when uvicorn has not started within the time."""
        self._thread.start()
        if not (self._server.done.wait(timeout_s) and self._server.started):
            self.stop()
            raise ConfigError(f"the server did not start within {timeout_s:g} s")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving and join the thread (idempotent)."""
        self._server.should_exit = True
        if self._thread.ident is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout_s)
        self._sock.close()


class SessionFile:
    """A server's session file: written mode 0600 and atomically (``_write_session_file``);
    removed only by the server that wrote it, since another may have replaced it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._token: str | None = None

    def write(self, content: dict[str, Any]) -> None:
        """Write ``content`` (which holds the server's ``token``)."""
        try:
            _write_session_file(self.path, content)
        except OSError as exc:
            raise ConfigError(f"cannot write the session file {self.path}: {exc}") from exc
        self._token = str(content["token"])

    def remove(self) -> None:
        """Delete the file if it still holds this server's token."""
        try:
            content = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(content, dict) and self._token and content.get("token") == self._token:
            self.path.unlink(missing_ok=True)


class _Serving(NamedTuple):
    url: str
    thread: UvicornThread
    auth: Auth


class DashboardServer:
    """Serve the dashboard of a store from a daemon thread on a loopback address.

    Parameters
    ----------
    config : DashboardConfig
        The store, registry, benchmark results and profile to show.
    host : str
        Loopback address to bind (``127.0.0.1``, ``::1`` or ``localhost``).
    port : int
        TCP port; 0 picks a free one (read ``port`` after ``start``).
    token : str or None
        Bearer token for scripts; a fresh random one when None.
    session_file : Path or None
        Where to write ``{"url", "token", "pid", "db"}`` (mode 0600) while serving.
    login_ttl_s : float
        How long a one-time login link stays valid.
    routes : sequence of fastapi.APIRouter or starlette routes
        More routes for the same app, behind the same login (the live pages).
    """

    def __init__(
        self,
        config: DashboardConfig,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        session_file: Path | None = None,
        login_ttl_s: float = LOGIN_TTL_S,
        routes: Sequence[Any] = (),
    ) -> None:
        _check_host(host)
        if not 0 <= port <= 65535:
            raise ConfigError(f"--port must be in 0..65535 (0: any free port), was {port}")
        self._config = config
        self._address = (host, port)
        if token is not None and len(token) < 16:
            raise ConfigError("dashboard token must be at least 16 characters long")
        self._token = token if token is not None else secrets.token_urlsafe(32)
        self._login_ttl_s = login_ttl_s
        self._routes = routes
        self._session = SessionFile(session_file) if session_file is not None else None
        self._serving: _Serving | None = None

    def _running(self) -> _Serving:
        if self._serving is None:
            raise RuntimeError("DashboardServer is not running: call start() first")
        return self._serving

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8200`` (valid after ``start``)."""
        return self._running().url

    @property
    def port(self) -> int:
        """Bound TCP port (valid after ``start``)."""
        return int(self.url.rsplit(":", 1)[1])

    @property
    def token(self) -> str:
        """The bearer token scripts send."""
        return self._token

    def login_url(self) -> str:
        """A new one-time login link (valid after ``start``)."""
        serving = self._running()
        return f"{serving.url}/login?t={serving.auth.new_login()}"

    def start(self, *, timeout_s: float = 30.0) -> None:
        """Listen, serve, write the session file; return once requests are answered."""
        if self._serving is not None:
            raise RuntimeError(f"the dashboard is already serving at {self.url}")
        host, port = self._address
        sock = _listen(host, port)
        bound = int(sock.getsockname()[1])
        url = f"http://{f'[{host}]' if ':' in host else host}:{bound}"
        # cookies do not tell ports apart: one name per port keeps two dashboards apart
        auth = Auth(self._token, cookie_name=f"ultrathink_dashboard_{bound}",
                    login_ttl_s=self._login_ttl_s)  # fmt: skip
        app = LoginGate(create_app(self._config, routes=self._routes), auth, self.login_url)
        thread = UvicornThread(app, sock, "ultrathink-dashboard")
        thread.start(timeout_s)
        self._serving = _Serving(url, thread, auth)
        if self._session is not None:
            try:
                self._session.write({"url": url, "token": self.token, "pid": os.getpid(),
                                     "db": str(self._config.db.resolve())})  # fmt: skip
            except ConfigError:
                self.stop()
                raise

    def stop(self, *, timeout_s: float = 5.0) -> None:
        """Stop serving, join the thread and delete the session file (idempotent)."""
        if self._serving is None:
            return
        self._serving.thread.stop(timeout_s)
        self._serving = None
        if self._session is not None:
            self._session.remove()

    def __enter__(self) -> DashboardServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
