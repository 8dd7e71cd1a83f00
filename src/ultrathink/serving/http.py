"""A small HTTP/1.1 server on asyncio (uvloop) with httptools' parser: the model server's wire.

Why not uvicorn with an ASGI framework, as the control API uses: measured on this 2-core
machine with one Python keep-alive client at a fixed 2,000 requests/s (latency from the
intended send time), returning the same ~80-byte JSON:

=============================================  ============  ============
server                                          p50           p99
=============================================  ============  ============
raw asyncio protocol (the floor)                120 µs        155–175 µs
this module's design (httptools on uvloop)      120–127 µs    166–174 µs
uvicorn + httptools + uvloop, raw ASGI app      175–178 µs    233–262 µs
the same with Starlette routing                 207–209 µs    229–317 µs
the same with FastAPI + pydantic models         321–329 µs    384–404 µs
=============================================  ============  ============

``tests/benchmarks/test_bench_serving.py`` repeats the comparison with the whole server: a
full cache hit here answers at a lower p50 than a bare ASGI app on uvicorn doing nothing
(169–170 µs vs 177–180 µs; docs/serving.md). The budget is a cache hit at most 1.5× the
floor's p99; a bare ASGI app on uvicorn already
spends 1.35–1.7× before doing any work, so the ASGI message layer is the cost. This module
keeps what matters from a real server and no more: httptools (the parser uvicorn uses) does
the HTTP parsing, so framing and malformed requests are handled by a well-kept library;
here are only keep-alive, pipelining in order, a body-size limit enforced before the body is
read, an idle timeout and a graceful drain.

A handler takes a ``Request`` and returns a ``Response`` or an awaitable of one. Requests on
one connection are answered in order: while an awaitable is pending, later pipelined
requests wait. A handler that raises gets a 500 (logged); handlers are written not to.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import httptools
import orjson

__all__ = ["HttpServer", "Request", "Response", "json_response"]

log = logging.getLogger(__name__)

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_JSON = b"application/json"
_LINGER_S = 2.0  # how long a refused connection still reads (and drops) before it closes


@dataclass(slots=True)
class Request:
    """One parsed request. Header names are lower-case; ``client`` is the peer's address."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    client: str


@dataclass(slots=True)
class Response:
    """A complete response: status, body, content type and any extra headers."""

    status: int
    body: bytes
    content_type: bytes = _JSON
    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def json_response(status: int, value: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """``value`` as a JSON response."""
    return Response(status, orjson.dumps(value), _JSON, headers)


Handler = Callable[[Request], "Response | Awaitable[Response]"]


_OK = b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s"


def _encode(response: Response, keep: bool) -> bytes:
    if keep and not response.headers and response.status == 200:  # the common answer
        return _OK % (response.content_type, len(response.body), response.body)
    reason = _REASONS.get(response.status, b"Unknown")
    head = [
        b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n"
        % (response.status, reason, response.content_type, len(response.body))
    ]
    for name, value in response.headers:
        head.append(f"{name}: {value}\r\n".encode("latin-1"))
    if not keep:
        head.append(b"connection: close\r\n")
    head.append(b"\r\n")
    return b"".join(head) + response.body


def _error(status: int, message: str) -> Response:
    return json_response(status, {"error": message, "status": status})


class _Connection(asyncio.Protocol):
    """One client connection: parse, queue, answer in order."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client = ""
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.body_len = 0
        self.queue: deque[tuple[Request, bool]] = deque()
        self.busy = False
        self.closing = False
        self.in_message = False
        self.last_active = 0.0  # monotonic time of the last byte or answer (for the idle sweep)

    # --- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if isinstance(peer, tuple) and peer else "local"
        self.server.connections.add(self)
        self.last_active = self.server.now()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.last_active = self.server.now()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            if not self.closing:
                self._fail(400, f"malformed HTTP request: {exc}")

    # --- httptools callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.in_message = True
        self.url = b""
        self.headers = {}
        self.body = []
        self.body_len = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.server.max_body:
            self._too_large()

    def on_body(self, body: bytes) -> None:
        self.body_len += len(body)
        if self.body_len > self.server.max_body:
            self._too_large()
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        if self.closing:
            return
        url = self.url
        if url[:1] == b"/" and b"?" not in url and b"%" not in url and b"#" not in url:
            path, query = url.decode("latin-1"), ""  # the common case, without parse_url
        else:
            try:
                parsed = httptools.parse_url(url)
                path = parsed.path.decode("utf-8", "replace")
                query = (parsed.query or b"").decode("utf-8", "replace")
            except httptools.HttpParserInvalidURLError:
                self._fail(400, "malformed request target")
                return
        method = self.parser.get_method().decode("ascii", "replace")
        request = Request(method, path, query, self.headers, b"".join(self.body), self.client)
        self.queue.append((request, self.parser.should_keep_alive()))
        if not self.busy:
            self._next()

    # --- answering --------------------------------------------------------------------------
    def _next(self) -> None:
        while self.queue and not self.busy and not self.closing:
            request, keep_alive = self.queue.popleft()
            self.server.in_flight += 1
            try:
                result = self.server.handler(request)
            except Exception:
                log.exception("handler failed on %s %s", request.method, request.path)
                result = _error(500, "internal error; see the server log")
            if isinstance(result, Response):
                self._write(result, keep_alive)
                continue
            self.busy = True
            task = asyncio.ensure_future(result)
            task.add_done_callback(functools.partial(self._done, keep_alive=keep_alive))
        if not self.queue and not self.busy and not self.closing:
            if self.server.draining:
                self._close()
            else:
                self.last_active = self.server.now()

    def _done(self, task: asyncio.Future[Response], *, keep_alive: bool) -> None:
        self.busy = False
        try:
            response = task.result()
        except Exception:
            log.exception("handler failed")
            response = _error(500, "internal error; see the server log")
        self._write(response, keep_alive)
        self._next()

    def _write(self, response: Response, keep_alive: bool) -> None:
        self.server.in_flight -= 1
        if self.closing or self.transport is None:
            return
        keep = keep_alive and not self.server.draining
        self.transport.write(_encode(response, keep))
        if not keep:
            self._close()

    def _too_large(self) -> None:
        limit = self.server.max_body
        self._fail(413, f"request body over {limit} bytes; send at most {limit} bytes")

    def _fail(self, status: int, message: str) -> None:
        # a protocol-level error: answer it, then stop reading requests. The socket stays
        # open a moment, reading and dropping what the client still sends: closing it with
        # unread data would make the kernel reset the connection, and a client still
        # sending its body (urllib, requests) would see the reset instead of the answer
        self.queue.clear()
        if self.closing or self.transport is None:
            return
        self.closing = True
        self.transport.write(_encode(_error(status, message), keep=False))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        asyncio.get_running_loop().call_later(_LINGER_S, self.transport.close)

    def _close(self) -> None:
        if not self.closing and self.transport is not None:
            self.closing = True
            self.transport.close()

    def close_if_idle_since(self, cutoff: float) -> None:
        """Close a keep-alive connection with nothing in progress since before ``cutoff``."""
        if self.last_active < cutoff and not self.busy and not self.queue and not self.in_message:
            self._close()

    def drain(self) -> None:
        """Close now if idle; otherwise close after the response being made."""
        if not self.busy and not self.queue and not self.in_message:
            self._close()


class HttpServer:
    """Serves ``handler`` on a listening socket until ``drain``.

    Parameters
    ----------
    handler : callable
        ``handler(request) -> Response | Awaitable[Response]``.
    max_body : int
        Largest request body in bytes; larger gets 413 before the body is read.
    keepalive_s : float
        An idle keep-alive connection is closed after this long.
    """

    def __init__(self, handler: Handler, *, max_body: int, keepalive_s: float = 75.0) -> None:
        self.handler = handler
        self.max_body = max_body
        self.keepalive_s = keepalive_s
        self.connections: set[_Connection] = set()
        self.in_flight = 0
        self.draining = False
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.now = time.monotonic

    async def start(self, sock: socket.socket) -> None:
        """Start accepting on ``sock`` (already bound and listening)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), sock=sock)
        self._sweeper = asyncio.ensure_future(self._sweep_idle())

    async def _sweep_idle(self) -> None:
        # one timer for every connection (a timer re-armed per request cost ~2 µs of each)
        period = max(self.keepalive_s / 4, 0.05)
        while True:
            await asyncio.sleep(period)
            cutoff = self.now() - self.keepalive_s
            for conn in list(self.connections):
                conn.close_if_idle_since(cutoff)

    async def drain(self, timeout_s: float) -> bool:
        """Stop accepting, finish the requests in flight, close every connection.

        Returns True when everything finished within ``timeout_s``.
        """
        self.draining = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (self.connections or self.in_flight) and loop.time() < deadline:
            await asyncio.sleep(0.01)  # polling the drain; nothing races a start-up here
            for conn in list(self.connections):
                conn.drain()
        done = not self.connections and not self.in_flight
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        return done
