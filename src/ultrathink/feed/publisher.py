"""``FeedPublisher``: the reference publisher of the feed protocol (tests, stress, adapters).

A small TCP server: ``start`` binds and listens before it returns, so ``port`` and ``url``
are valid at once and a client may connect immediately (readiness without sleeps). Any
number of clients; each gets every message published after it was accepted.

``publish_bar``/``publish_bars``/``heartbeat``/``send_raw`` encode once and write to every
client from the caller's thread with non-blocking sends; what a client's socket does not
take is kept in that client's buffer, which the server thread flushes. A buffer beyond
``max_buffer_bytes`` disconnects that client (``disconnects["slow_client"]``) instead of
slowing the others or growing without bound. With ``heartbeat_s`` set the server thread sends
a heartbeat whenever nothing was published for that long.

Fault hooks for tests and the stress load generator: ``pause`` (a stall: nothing is sent and
what is published meanwhile is dropped, as a hung feed loses it), ``resume``,
``drop_connections`` (every client sees the connection end) and ``send_raw`` (any bytes,
e.g. a malformed or over-long line).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

from ultrathink.core.clock import Clock, LiveClock
from ultrathink.core.events import Bar
from ultrathink.errors import ConfigError
from ultrathink.feed.address import is_loopback
from ultrathink.feed.protocol import encode_bar, encode_heartbeat

__all__ = ["DISCONNECT_REASONS", "FeedPublisher", "PublisherStats"]

#: Why the publisher ended a client's connection.
DISCONNECT_REASONS: tuple[str, ...] = ("client_closed", "slow_client", "send_failed", "dropped")
_NS = 1_000_000_000
_LISTEN, _WAKE = "listen", "wake"


@dataclass(frozen=True)
class PublisherStats:
    """A snapshot of a publisher's counters."""

    clients: int  # connected now
    accepted: int  # connections accepted so far
    messages: int  # published while not paused (bars, heartbeats, raw writes)
    heartbeats: int
    dropped_paused: int  # published while paused, so sent to nobody
    bytes_sent: int
    disconnects: dict[str, int]  # by reason (DISCONNECT_REASONS)


class _Client:
    __slots__ = ("dead", "out", "sent", "sock", "writing")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.out = bytearray()  # out[sent:] is what the socket has not taken yet
        self.sent = 0  # an offset, so a partial send does not move the rest each time
        self.writing = False  # registered for EVENT_WRITE (the server thread's view)
        self.dead: str | None = None  # why it is being disconnected

    @property
    def backlog(self) -> int:
        return len(self.out) - self.sent

    def flush(self, sent: int) -> None:
        self.sent += sent
        if self.sent == len(self.out):
            self.out.clear()
            self.sent = 0
        elif self.sent > 1 << 20 and 2 * self.sent > len(self.out):
            del self.out[: self.sent]  # compact once the sent part is most of the buffer
            self.sent = 0


class FeedPublisher:
    """Serve the feed protocol to any number of clients.

    Parameters
    ----------
    host : str
        Address to bind; a loopback address unless ``allow_remote``.
    port : int
        TCP port; 0 picks a free one (read ``port`` after ``start``).
    heartbeat_s : float or None
        Send a heartbeat after this long without a message; None: only on ``heartbeat()``.
    max_buffer_bytes : int
        The most bytes kept for one client that does not read fast enough.
    allow_remote : bool
        Allow binding a non-loopback address.
    clock : Clock or None
        Heartbeat timestamps (``now_ns``) and idle timing (``monotonic_ns``).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        heartbeat_s: float | None = 1.0,
        max_buffer_bytes: int = 4 * 1024 * 1024,
        allow_remote: bool = False,
        clock: Clock | None = None,
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise ConfigError(
                f"feed publisher host {host!r} is not a loopback address: the feed protocol has "
                "no authentication or encryption; bind 127.0.0.1 or pass allow_remote=True"
            )
        if heartbeat_s is not None and not heartbeat_s > 0:
            raise ConfigError(f"heartbeat_s must be > 0 or None, was {heartbeat_s}")
        if max_buffer_bytes < 1:
            raise ConfigError(f"max_buffer_bytes must be >= 1, was {max_buffer_bytes}")
        self._host = host
        self._requested_port = port
        self._heartbeat_ns = None if heartbeat_s is None else int(heartbeat_s * _NS)
        self._max_buffer = max_buffer_bytes
        self._clock = clock if clock is not None else LiveClock()
        self._cond = threading.Condition(threading.Lock())
        self._clients: list[_Client] = []
        self._paused = False
        self._last_send_ns = 0
        self._accepted = self._messages = self._heartbeats = 0
        self._dropped_paused = self._bytes_sent = 0
        self._disconnects = dict.fromkeys(DISCONNECT_REASONS, 0)
        self._listener: socket.socket | None = None
        self._port = 0
        self._selector: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FeedPublisher:
        """Bind, listen and start serving; ``port`` is valid when this returns."""
        if self._thread is not None:
            raise RuntimeError("a FeedPublisher starts once")
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self._host, self._requested_port))
            listener.listen(64)
        except OSError as exc:
            listener.close()
            raise ConfigError(
                f"feed publisher cannot listen on {self._host}:{self._requested_port}: {exc}; "
                "pick another port (0 picks a free one)"
            ) from None
        listener.setblocking(False)
        self._listener = listener
        self._port = listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, _LISTEN)
        self._selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        self._last_send_ns = self._clock.monotonic_ns()
        self._thread = threading.Thread(target=self._run, name="ultrathink-feed-pub", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop serving and close every socket. Closing twice is harmless."""
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._wake()
            thread.join(timeout_s)
        if thread is None or not thread.is_alive():
            for sock in (self._wake_r, self._wake_w):
                if sock is not None:
                    sock.close()

    def __enter__(self) -> FeedPublisher:
        if self._thread is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The bound TCP port (after ``start``)."""
        if self._listener is None:
            raise RuntimeError("FeedPublisher.port is known after start()")
        return self._port

    @property
    def url(self) -> str:
        """``tcp://host:port`` for ``FeedClient``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"tcp://{host}:{self.port}"

    # -- publishing ------------------------------------------------------------------------

    def publish_bar(self, bar: Bar, seq: int | None = None) -> None:
        """Send one bar (with the publisher's message counter ``seq``) to every client."""
        self._broadcast(encode_bar(bar, seq), 1)

    def publish_bars(self, bars: Iterable[Bar], first_seq: int | None = None) -> int | None:
        """Send bars in one write per client, numbered from ``first_seq``; return the next seq."""
        if first_seq is None:
            lines = [encode_bar(bar) for bar in bars]
            nxt = None
        else:
            lines = [encode_bar(bar, first_seq + i) for i, bar in enumerate(bars)]
            nxt = first_seq + len(lines)
        if lines:
            self._broadcast(b"".join(lines), len(lines))
        return nxt

    def heartbeat(self, ts_ns: int | None = None) -> None:
        """Send a heartbeat stamped ``ts_ns`` (default: the clock's now) to every client."""
        stamp = self._clock.now_ns() if ts_ns is None else ts_ns
        self._broadcast(encode_heartbeat(stamp), 1, heartbeat=True)

    def send_raw(self, data: bytes) -> None:
        """Send ``data`` as it is (a fault hook: malformed, partial or over-long lines)."""
        self._broadcast(bytes(data), 1)

    # -- fault hooks -----------------------------------------------------------------------

    def pause(self) -> None:
        """Stall: send nothing (not even heartbeats) and drop what is published until resume."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        """End a ``pause``: later messages are sent again (the dropped ones are not)."""
        with self._cond:
            self._paused = False
            self._last_send_ns = self._clock.monotonic_ns()

    def drop_connections(self) -> None:
        """End every client's connection now (each counted ``dropped``); clients may reconnect."""
        with self._cond:
            for client in self._clients:
                self._kill(client, "dropped")
        self._wake()

    # -- observing -------------------------------------------------------------------------

    def wait_for_clients(self, n: int, timeout_s: float) -> bool:
        """Wait until at least ``n`` clients are connected; False if ``timeout_s`` passed."""
        with self._cond:
            return self._cond.wait_for(lambda: self._n_live() >= n, timeout_s)

    def wait_for_accepted(self, n: int, timeout_s: float) -> bool:
        """Wait until ``n`` connections were accepted in all; False if ``timeout_s`` passed."""
        with self._cond:
            return self._cond.wait_for(lambda: self._accepted >= n, timeout_s)

    def wait_drained(self, timeout_s: float) -> bool:
        """Wait until no connected client has bytes waiting in its buffer; False on timeout.

        What a publisher's buffers still hold when it is closed is lost; what they handed to
        the OS is delivered. A finite replay calls this before ``close``.
        """
        with self._cond:
            return self._cond.wait_for(self._drained, timeout_s)

    def _drained(self) -> bool:
        return all(c.dead is not None or not c.out for c in self._clients)

    def stats(self) -> PublisherStats:
        """A snapshot of the counters."""
        with self._cond:
            return PublisherStats(
                clients=self._n_live(),
                accepted=self._accepted,
                messages=self._messages,
                heartbeats=self._heartbeats,
                dropped_paused=self._dropped_paused,
                bytes_sent=self._bytes_sent,
                disconnects={k: v for k, v in self._disconnects.items() if v},
            )

    def _n_live(self) -> int:
        return sum(1 for c in self._clients if c.dead is None)

    # -- sending (caller's thread and server thread, under the lock) -----------------------

    def _broadcast(self, data: bytes, n_messages: int, heartbeat: bool = False) -> None:
        wake = False
        with self._cond:
            if self._paused:
                self._dropped_paused += n_messages
                return
            self._messages += n_messages
            self._heartbeats += heartbeat
            self._last_send_ns = self._clock.monotonic_ns()
            for client in self._clients:
                if client.dead is not None:
                    continue
                if client.out:
                    client.out += data  # the server thread is already flushing it
                else:
                    sent = self._send(client, data)
                    if client.dead is not None or sent == len(data):
                        wake |= client.dead is not None
                        continue
                    client.out += memoryview(data)[sent:]
                    wake = True  # the server thread must watch for writability
                if client.backlog > self._max_buffer:
                    self._kill(client, "slow_client")
                    wake = True
        if wake:
            self._wake()

    def _send(self, client: _Client, data: bytes | memoryview) -> int:
        try:
            sent = client.sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            self._kill(client, "send_failed")
            return 0
        self._bytes_sent += sent
        return sent

    def _kill(self, client: _Client, reason: str) -> None:
        # the server thread unregisters and closes it: a closed fd must not stay in the
        # selector, and only that thread touches the selector
        if client.dead is not None:
            return
        client.dead = reason
        client.out.clear()
        client.sent = 0
        self._disconnects[reason] += 1
        with contextlib.suppress(OSError):
            client.sock.shutdown(socket.SHUT_RDWR)  # the peer sees the end at once

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(OSError):  # full: a wake-up is already pending
                self._wake_w.send(b"x")

    # -- the server thread -----------------------------------------------------------------

    def _run(self) -> None:
        selector = self._selector
        assert selector is not None
        try:
            while not self._stopping.is_set():
                for key, mask in selector.select(self._timeout_s()):
                    if key.data == _LISTEN:
                        self._accept()
                    elif key.data == _WAKE:
                        self._drain_wake()
                    else:
                        self._serve(key.data, mask)
                self._reconcile()
                self._maybe_heartbeat()
        finally:
            with self._cond:
                for client in self._clients:
                    client.sock.close()
                self._clients.clear()
                self._cond.notify_all()
            if self._listener is not None:
                self._listener.close()
            selector.close()

    def _timeout_s(self) -> float | None:
        if self._heartbeat_ns is None:
            return None
        due = self._last_send_ns + self._heartbeat_ns - self._clock.monotonic_ns()
        return max(due / _NS, 0.0)

    def _maybe_heartbeat(self) -> None:
        if self._heartbeat_ns is None:
            return
        with self._cond:
            now = self._clock.monotonic_ns()
            if now - self._last_send_ns < self._heartbeat_ns:
                return
            if self._paused:
                self._last_send_ns = now  # a stalled feed sends nothing: wait a period again
                return
        self.heartbeat()

    def _accept(self) -> None:
        assert self._listener is not None and self._selector is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. out of file descriptors: try again at the next event
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = _Client(sock)
            self._selector.register(sock, selectors.EVENT_READ, client)
            with self._cond:
                self._clients.append(client)
                self._accepted += 1
                self._cond.notify_all()

    def _serve(self, client: _Client, mask: int) -> None:
        if mask & selectors.EVENT_READ:
            data: bytes | None
            try:
                data = client.sock.recv(65_536)  # clients send nothing we use: discard
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data == b"":
                with self._cond:
                    self._kill(client, "client_closed")
        if mask & selectors.EVENT_WRITE:
            with self._cond:
                if client.dead is None and client.out:
                    with memoryview(client.out) as whole, whole[client.sent :] as pending:
                        sent = self._send(client, pending)  # views released before a resize
                    client.flush(sent)
                    if not client.out:
                        self._cond.notify_all()  # wait_drained

    def _reconcile(self) -> None:
        # apply what the publishing threads decided: close the dead, watch the backlogged
        selector = self._selector
        assert selector is not None
        with self._cond:
            live: list[_Client] = []
            for client in self._clients:
                if client.dead is not None:
                    selector.unregister(client.sock)
                    client.sock.close()
                    continue
                live.append(client)
                wants = bool(client.out)
                if wants != client.writing:
                    events = selectors.EVENT_READ | (selectors.EVENT_WRITE if wants else 0)
                    selector.modify(client.sock, events, client)
                    client.writing = wants
            if len(live) != len(self._clients):
                self._clients = live
                self._cond.notify_all()

    def _drain_wake(self) -> None:
        assert self._wake_r is not None
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass
