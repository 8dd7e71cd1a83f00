"""A seeded TCP fault proxy on loopback, for the network stress scenario.

``FaultProxy(upstream_port, faults, seed)`` listens on 127.0.0.1 (an ephemeral port by
default) and forwards every connection to ``127.0.0.1:upstream_port``, injecting faults into
the stream on the way. The stream is cut into **units**: whole lines (``lines=True``, for the
NDJSON feed: a fault never splits a message) or the chunks one ``recv`` returns (HTTP and
anything else). Each unit of a faulted direction draws one fault, at the configured rates:

* ``latency``: the unit is due ``latency_ms`` ± ``jitter_ms`` after it arrived;
* ``stall``: the unit is due ``stall_s`` after it arrived (the stream stops that long);
* ``reset``: the connection is aborted with a TCP RST when the unit is reached (what came
  before it is delivered, the unit and everything after it are not);
* ``drop`` / ``duplicate`` (line mode only): the line is not forwarded / forwarded twice.

Delivery stays in order, as TCP's would: a unit leaves at ``max(its due time, the previous
unit's)``, so a delay holds what follows it (head-of-line blocking) and the lag never exceeds
the largest delay drawn, however many delays overlap.

**Seeded.** Connection ``k`` (in accept order) and direction ``d`` draw from
``random.Random(f"{seed}:{k}:{d}")``, a fixed number of draws per unit: the same seed and the
same units give the same faults. Lines are a property of the data, so line mode repeats
exactly; chunk boundaries depend on TCP timing, so chunk mode repeats per chunk sequence.

**Counted.** ``stats()`` returns every fault injected by kind, with the connections, units
and bytes seen, so a scenario can match each fault to what the client counted.

**Why threads and blocking sockets (not asyncio).** A proxy has few connections here (a feed
client, a keep-alive HTTP client, a few ``ctl`` calls) and each direction is one ordered
pipe whose only state is a queue of due units: one thread per direction that waits for
"readable or the head is due" (a socket timeout) and sends what is due is the whole
algorithm, with no event loop to run beside the scenario's other threads. ``close()`` wakes
every thread at once (``shutdown`` of each socket and an event for the waits).

**Bounded.** At most ``max_connections`` at once (more are refused with a RST), at most
``max_pending_bytes`` queued per direction (reading pauses beyond: the sender's TCP window
fills, as with a slow link), lines longer than ``max_line_bytes`` are forwarded as chunks,
and every wait has a timeout. Loopback only: it refuses to listen or connect elsewhere.
"""

from __future__ import annotations

import contextlib
import random
import select
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["FAULT_KINDS", "FaultPlan", "FaultProxy", "Faults", "ProxyStats"]

#: the kinds of fault, in the order a unit's single draw is matched against their rates
FAULT_KINDS = ("reset", "stall", "drop", "duplicate", "latency")
_HOST = "127.0.0.1"
_POLL_S = 0.05  # longest wait before a thread looks at the close flag again
_RECV = 65_536

Direction = Literal["down", "up", "both"]


@dataclass(frozen=True)
class Faults:
    """What to inject and where (rates are probabilities per unit; their sum is at most 1).

    ``direction``: ``down`` faults what the upstream server sends to the client (a feed's
    bars, an HTTP response), ``up`` what the client sends, ``both`` both.
    """

    latency: float = 0.0
    latency_ms: float = 20.0
    jitter_ms: float = 10.0
    stall: float = 0.0
    stall_s: float = 1.0
    reset: float = 0.0
    drop: float = 0.0
    duplicate: float = 0.0
    lines: bool = False
    direction: Direction = "down"

    def __post_init__(self) -> None:
        rates = [self.latency, self.stall, self.reset, self.drop, self.duplicate]
        if any(not 0.0 <= r <= 1.0 for r in rates) or sum(rates) > 1.0 + 1e-12:
            raise ValueError("fault rates must each be in [0, 1] and sum to at most 1")
        if not self.lines and (self.drop or self.duplicate):
            raise ValueError("drop and duplicate need lines=True (whole messages)")
        if self.latency_ms < 0 or not 0 <= self.jitter_ms <= self.latency_ms:
            raise ValueError("latency_ms >= 0 and 0 <= jitter_ms <= latency_ms")
        if not 0 <= self.stall_s <= 60:
            raise ValueError("stall_s must be in [0, 60]")
        if self.direction not in ("down", "up", "both"):
            raise ValueError(f"direction is down, up or both, was {self.direction!r}")

    def applies(self, direction: str) -> bool:
        """Whether units of ``direction`` (``down``/``up``) are faulted."""
        return self.direction in ("both", direction)


class FaultPlan:
    """The seeded fault draws of one direction of one connection (no sockets: testable)."""

    def __init__(self, faults: Faults, seed: int, connection: int, direction: str) -> None:
        self.faults = faults
        self._rnd = random.Random(f"{seed}:{connection}:{direction}")
        f = faults
        self._edges = []
        total = 0.0
        for kind, rate in zip(
            FAULT_KINDS, (f.reset, f.stall, f.drop, f.duplicate, f.latency), strict=True
        ):
            total += rate
            self._edges.append((total, kind))

    def draw(self) -> tuple[str | None, float]:
        """The next unit's fault (None: none) and its delay in seconds (0 unless delayed)."""
        u, j = self._rnd.random(), self._rnd.random()  # always two draws: a fixed stream
        kind = next((k for edge, k in self._edges if u < edge), None)
        if kind is None:
            return None, 0.0
        f = self.faults
        if kind == "latency":
            return kind, max(0.0, f.latency_ms + (2.0 * j - 1.0) * f.jitter_ms) / 1000.0
        if kind == "stall":
            return kind, f.stall_s
        return kind, 0.0


@dataclass
class ProxyStats:
    """What the proxy did: connections, units and bytes seen, faults by kind."""

    connections: int = 0
    refused: int = 0
    units: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    faults: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAULT_KINDS, 0))

    @property
    def injected(self) -> int:
        """Faults injected, every kind."""
        return sum(self.faults.values())


class FaultProxy:
    """See the module docstring. Use as a context manager, or ``start()`` / ``close()``.

    Parameters
    ----------
    upstream_port : int
        The server on 127.0.0.1 the proxy forwards to.
    faults : Faults
        What to inject (``Faults()``: a transparent proxy).
    seed : int
        Seeds every connection's fault draws.
    port : int
        Where to listen (0: an ephemeral port; read ``port`` / ``url`` after ``start``).
    """

    def __init__(
        self,
        upstream_port: int,
        faults: Faults | None = None,
        seed: int = 0,
        *,
        port: int = 0,
        max_connections: int = 64,
        max_pending_bytes: int = 16 << 20,
        max_line_bytes: int = 1 << 20,
    ) -> None:
        self.upstream = (_HOST, upstream_port)
        self.faults = faults or Faults()
        self.seed = seed
        self.max_connections = max_connections
        self.max_pending_bytes = max_pending_bytes
        self.max_line_bytes = max_line_bytes
        self._requested_port = port
        self._server: socket.socket | None = None
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._stats = ProxyStats()
        self._links: set[_Link] = set()
        self._accepted = 0
        self._calm = False
        self._threads: list[threading.Thread] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"{_HOST}:{self.port}"

    def start(self) -> FaultProxy:
        """Listen (before returning: ``port`` is valid at once) and accept in a thread."""
        server = socket.create_server((_HOST, self._requested_port))
        server.settimeout(_POLL_S)
        self._server, self.port = server, server.getsockname()[1]
        thread = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def calm(self, calm: bool = True) -> None:
        """Stop (or resume) injecting: units still draw, so the sequence stays the same."""
        self._calm = calm

    def stats(self) -> ProxyStats:
        """A consistent copy of the counters."""
        with self._lock:
            s = self._stats
            return ProxyStats(
                s.connections, s.refused, s.units, s.bytes_in, s.bytes_out, dict(s.faults)
            )

    def reset_all(self) -> int:
        """Abort every open connection with a RST (a fault the scenario places by hand)."""
        with self._lock:
            links = list(self._links)
        for link in links:
            link.abort()
        return len(links)

    def close(self) -> None:
        """Stop accepting, abort every connection, join every thread (idempotent)."""
        self._closing.set()
        if self._server is not None:
            self._server.close()
        self.reset_all()
        for thread in list(self._threads):
            thread.join(timeout=5.0)

    # -- internals ---------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._server is not None
        while not self._closing.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                full = len(self._links) >= self.max_connections
                if full:
                    self._stats.refused += 1
                else:
                    index = self._accepted
                    self._accepted += 1
                    self._stats.connections += 1
            if full:
                _abort(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=2.0)
            except OSError:
                _abort(client)
                continue
            link = _Link(self, client, upstream, index)
            with self._lock:
                self._links.add(link)
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads += link.start()

    def _count(self, kind: str | None, n_in: int, n_out: int) -> None:
        with self._lock:
            s = self._stats
            s.units += 1
            s.bytes_in += n_in
            s.bytes_out += n_out
            if kind is not None:
                s.faults[kind] += 1

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)


class _Link:
    """One proxied connection: a pump thread per direction, closed when both are done."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, up: socket.socket, k: int):
        self.proxy, self.client, self.up, self.index = proxy, client, up, k
        self._lock = threading.Lock()
        self._left = 2
        self.aborted = False
        for s in (client, up):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.settimeout(_POLL_S)

    def start(self) -> list[threading.Thread]:
        threads = [
            threading.Thread(target=self._pump, args=(self.up, self.client, "down"), daemon=True),
            threading.Thread(target=self._pump, args=(self.client, self.up, "up"), daemon=True),
        ]
        for t in threads:
            t.start()
        return threads

    def abort(self) -> None:
        """Reset both sides: RST on close, and wake both pumps now."""
        with self._lock:
            if self.aborted:
                return
            self.aborted = True
        for s in (self.client, self.up):
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.shutdown(socket.SHUT_RD)  # wakes a recv; sends nothing

    def _done(self) -> None:
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            for s in (self.client, self.up):
                s.close()  # with SO_LINGER 0 after an abort: a RST
            self.proxy._forget(self)

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        proxy = self.proxy
        faults = proxy.faults
        plan = FaultPlan(faults, proxy.seed, self.index, direction)
        active = faults.applies(direction)
        lines = faults.lines and active
        queue: deque[tuple[float, bytes | None]] = deque()  # (due, data); None: reset
        pending = 0
        partial = b""
        last_due = 0.0
        eof = False
        try:
            while not proxy._closing.is_set() and not self.aborted:
                now = time.monotonic()
                while queue and queue[0][0] <= now:  # send what is due, in order
                    _, data = queue.popleft()
                    if data is None:
                        self.abort()
                        return
                    pending -= len(data)
                    if not self._send(dst, data):
                        return
                if eof and not queue:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)  # pass the half-close on
                    return
                wait = min(_POLL_S, queue[0][0] - now) if queue else _POLL_S
                if eof or pending >= proxy.max_pending_bytes:
                    proxy._closing.wait(max(wait, 0.0))
                    continue
                readable, _, _ = select.select([src], [], [], max(wait, 0.0))
                if not readable:
                    continue
                chunk = src.recv(_RECV)
                arrived = time.monotonic()
                if not chunk:
                    eof = True
                    if partial:  # an unterminated last line goes as it is
                        queue.append((max(arrived, last_due), partial))
                        pending += len(partial)
                        partial = b""
                    continue
                if lines:
                    data = partial + chunk
                    cut = data.rfind(b"\n") + 1
                    units = data[:cut].splitlines(keepends=True)
                    partial = data[cut:]
                    if len(partial) > proxy.max_line_bytes:
                        units.append(partial)
                        partial = b""
                else:
                    units = [chunk]
                for unit in units:
                    kind, delay = plan.draw() if active else (None, 0.0)
                    if proxy._calm:
                        kind, delay = None, 0.0
                    due = max(arrived + delay, last_due)
                    last_due = due
                    out: list[bytes | None]
                    if kind == "drop":
                        out = []
                    elif kind == "duplicate":
                        out = [unit, unit]
                    elif kind == "reset":
                        out = [None]
                    else:
                        out = [unit]
                    proxy._count(kind, len(unit), sum(len(u) for u in out if u is not None))
                    for data_out in out:
                        queue.append((due, data_out))
                        pending += len(data_out) if data_out is not None else 0
                    if kind == "reset":  # nothing after it is read: the link ends there
                        eof, partial = True, b""
                        break
        except OSError:
            self.abort()  # one side failed: the other sees a reset, as through a dead link
        finally:
            self._done()

    def _send(self, dst: socket.socket, data: bytes) -> bool:
        # all of ``data``, waiting for room at most _POLL_S at a time (so close() and an
        # abort are seen even while the reader does not read); False once stopped
        view = memoryview(data)
        while view:
            if self.proxy._closing.is_set() or self.aborted:
                return False
            _, writable, _ = select.select([], [dst], [], _POLL_S)
            if writable:
                try:
                    view = view[dst.send(view) :]
                except (TimeoutError, BlockingIOError):
                    continue
        return True


def _abort(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()
