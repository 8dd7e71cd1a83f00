"""``FeedClient``: read a live feed (primary and backup); hand bars over in order.

The network I/O uses non-blocking sockets and ``selectors``, not an asyncio loop: there are
at most two connections, each only read, and a selector loop has no event loop to start, no
coroutine or protocol object per read, and stops deterministically (a socketpair wakes it).
Bars reach the consumer through the bounded ``ConflatingQueue`` (``get(timeout)``,
``drain`` or iterating); a full queue sheds bars by the policy in ``feed.conflation``, and
orders never pass through it. The I/O runs in one of two places:

* **threaded** (the default): on a daemon thread of its own, which never waits for the
  consumer. Lines are decoded outside the shared lock, and the lock is held for at most
  ``APPLY_BATCH`` messages' accounting, so a consumer's ``get`` never waits behind a burst.
* **inline** (``threaded=False``): on the consumer's thread, inside its ``get`` and
  ``drain`` calls, which read what the sockets hold before taking bars. A paper session's
  kernel reads its feed this way (``engine.feed_bars``): with a feed thread, two Python
  threads shared one GIL and each bar crossed a lock, a condition variable and a GIL
  hand-off: 7,983 bars/s decided of 20,000 offered, against 15,963 inline (docs/stress.md).
  The sockets are read whenever the consumer asks for bars, at least once per ``drain``,
  so a busy consumer still reads everything waiting and the queue still sheds by its
  policy; while it works on a batch, the bytes wait in the socket's receive buffer. Health
  is judged whenever it reads (``get`` waits in ticks of at most ``_MAX_TICK_S``). A
  consumer that reads nothing for longer than ``stall_s`` finds every source stalled at its
  next read (their bytes waited unseen): each loses its coverage and is healthy again from
  the first message read then.

Each connection reconnects with capped exponential backoff (``FeedConfig.backoff_s``, no
jitter). Which bars reach the queue, the health of each source, failover and failback are
``FeedArbiter``'s (``feed.arbiter``): the backup is read all the time, so a failover has no
gap, and bars are delivered once each, in ts order per symbol. Every switch is a
``SwitchEvent``, kept (``events``) and passed to ``on_switch`` on the reading thread.

Example::

    with FeedClient("tcp://127.0.0.1:9100", "tcp://127.0.0.1:9101") as feed:
        for bar in feed:          # blocks; ends when the client is closed
            ...
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType

from ultrathink.core.clock import Clock, LiveClock
from ultrathink.core.events import Bar
from ultrathink.errors import ConfigError
from ultrathink.feed.address import FeedAddress, parse_feed_url
from ultrathink.feed.arbiter import FeedArbiter
from ultrathink.feed.config import FeedConfig
from ultrathink.feed.protocol import LineSplitter, decode_lines
from ultrathink.feed.stats import FeedStats, SwitchEvent

__all__ = ["FeedClient"]

_log = logging.getLogger(__name__)
_NS = 1_000_000_000
RECV_BYTES = 262_144
#: Messages accounted per hold of the lock: a consumer's ``get`` waits at most that long.
APPLY_BATCH = 256
_MAX_TICK_S = 0.05  # health is judged at least this often, also when no data arrives
_MIN_TICK_S = 0.002
_IN_PROGRESS = {errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN}
_IDLE, _CONNECTING, _OPEN = "idle", "connecting", "open"


class _Conn:
    """One source's socket and its reconnect schedule (touched by the feed thread only)."""

    __slots__ = ("address", "attempt", "deadline_ns", "retry_at_ns", "sock", "splitter", "state")

    def __init__(self, address: FeedAddress, max_line_bytes: int) -> None:
        self.address = address
        self.sock: socket.socket | None = None
        self.state = _IDLE
        self.splitter = LineSplitter(max_line_bytes)
        self.retry_at_ns = 0  # connect at once
        self.deadline_ns = 0
        self.attempt = 0  # failed attempts since data last arrived: the backoff exponent


class FeedClient:
    """Receive bars from a primary feed, fail over to a backup; a thread-safe bar source.

    Parameters
    ----------
    primary : str or FeedAddress
        ``tcp://HOST:PORT`` of the primary publisher.
    backup : str or FeedAddress or None
        The backup publisher, expected to send the same bars.
    config : FeedConfig or None
        Queue size, health thresholds, backoff; the defaults when None.
    symbols : iterable of str or None
        Deliver only these symbols (others are counted ``unknown_symbol``); None: all.
    on_switch : callable or None
        Called with each ``SwitchEvent``, on the thread that reads the feed (the feed
        thread, or an inline client's consumer), after the switch: keep it short and
        thread-safe. An exception it raises is logged, never propagated.
    clock : Clock or None
        Time for health and backoff (``monotonic_ns``) and for switch events (``now_ns``);
        a ``LiveClock`` when None.
    allow_remote : bool
        Accept non-loopback hosts (see ``parse_feed_url``).
    threaded : bool
        Read the sockets on a feed thread (True) or inline, in the consumer's ``get`` and
        ``drain`` calls (False; see the module docstring). An inline client is used from
        one thread, the one that called ``start``; ``stats`` and ``events`` may be read from
        any.

    Raises
    ------
    ConfigError
        A URL ``parse_feed_url`` refuses, or a backup equal to the primary.
    """

    def __init__(
        self,
        primary: str | FeedAddress,
        backup: str | FeedAddress | None = None,
        *,
        config: FeedConfig | None = None,
        symbols: Iterable[str] | None = None,
        on_switch: Callable[[SwitchEvent], None] | None = None,
        clock: Clock | None = None,
        allow_remote: bool = False,
        threaded: bool = True,
    ) -> None:
        addresses = [_address(primary, allow_remote)]
        if backup is not None:
            addresses.append(_address(backup, allow_remote))
            if addresses[0] == addresses[1]:
                raise ConfigError(
                    f"the backup feed {addresses[1].url} is the primary: a backup must be "
                    "another publisher (another port or host)"
                )
        self._config = config if config is not None else FeedConfig()
        self._clock = clock if clock is not None else LiveClock()
        self._on_switch = on_switch
        self._arbiter = FeedArbiter(
            self._config, [a.url for a in addresses], self._clock, symbols=symbols
        )
        self._conns = [_Conn(a, self._config.max_line_bytes) for a in addresses]
        self._cond = threading.Condition(threading.Lock())
        self._threaded = threaded
        self._started = False
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._closed = False
        self._failure: BaseException | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        cfg = self._config
        self._tick_s = max(_MIN_TICK_S, min(_MAX_TICK_S, cfg.stall_s / 10, cfg.bad_window_s / 10))
        if cfg.failback_s > 0:
            self._tick_s = max(_MIN_TICK_S, min(self._tick_s, cfg.failback_s / 10))

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FeedClient:
        """Start reading (the connections open at once); return ``self``.

        A threaded client starts its feed thread; an inline one connects on its first
        ``get`` or ``drain``.
        """
        if self._started or self._closed:
            raise RuntimeError("a FeedClient starts once; make a new one to read again")
        self._started = True
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        if self._threaded:
            self._thread = threading.Thread(target=self._run, name="ultrathink-feed", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the feed thread and close its sockets; waiting ``get`` calls return.

        Bars still queued can be taken after ``close``; ``get`` then returns None when the
        queue is empty. Closing twice is harmless. An inline client is closed by the thread
        that reads it.
        """
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._wake()
            thread.join(timeout_s)
        with self._cond:
            was_closed, self._closed = self._closed, True
            self._cond.notify_all()
        if not self._threaded and self._started and not was_closed:
            self._shutdown()
        if thread is None or not thread.is_alive():
            for sock in (self._wake_r, self._wake_w):
                if sock is not None:
                    sock.close()

    def __enter__(self) -> FeedClient:
        if not self._started:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the consumer's side ---------------------------------------------------------------

    def get(self, timeout: float | None = None) -> Bar | None:
        """The next bar; wait up to ``timeout`` seconds (None: until one comes or ``close``).

        Returns None on timeout and once the client is closed and the queue is empty.

        Raises
        ------
        RuntimeError
            The feed thread died of a bug (the cause is chained).
        """
        if not self._threaded:
            return self._get_inline(timeout)
        with self._cond:
            bar = self._arbiter.take()
            if bar is not None or timeout == 0:
                return bar
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                if self._closed or self._failure is not None:
                    self._raise_failure()
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
                bar = self._arbiter.take()
                if bar is not None:
                    return bar

    def drain(self, max_n: int = 1_000_000, *, read: bool = True) -> list[Bar]:
        """Every bar waiting (at most ``max_n``), oldest first, without waiting.

        An inline client first reads what its sockets hold, unless ``read`` is False (a
        consumer that has just called ``pump``: one read per round instead of two).
        """
        if read and not self._threaded:
            self.pump(0.0)
        with self._cond:
            return self._arbiter.take_many(max_n)

    def __iter__(self) -> Iterator[Bar]:
        """Bars as they come, until the client is closed and the queue is empty."""
        while True:
            bar = self.get()
            if bar is None:
                return
            yield bar

    def stats(self) -> FeedStats:
        """A consistent snapshot of the counters (see ``FeedStats``)."""
        with self._cond:
            return self._arbiter.stats()

    @property
    def events(self) -> tuple[SwitchEvent, ...]:
        """The source switches so far, oldest first."""
        with self._cond:
            return self._arbiter.events

    @property
    def source(self) -> str:
        """The source bars are taken from now: ``"primary"`` or ``"backup"``."""
        with self._cond:
            return self._arbiter.source

    def _get_inline(self, timeout: float | None) -> Bar | None:
        # take a queued bar; when there is none, read the sockets until one comes
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                bar = self._arbiter.take()
            if bar is not None or self._closed:
                return bar
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            self.pump(remaining)

    def pump(self, wait_s: float | None = 0.0) -> None:
        """Inline: read what the sockets hold, waiting at most ``wait_s`` seconds (None: one
        tick) for something to read; connect, judge health and switch source as due.

        ``get`` and ``drain`` do this themselves; a consumer calls it to keep the feed read
        while it takes no bars. A threaded client reads on its own thread: a no-op there.
        """
        if not self._threaded and self._started and not self._closed:
            self._step(wait_s)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise RuntimeError(f"the feed thread failed: {self._failure!r}") from self._failure

    # -- the feed thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._step()
        except BaseException as exc:  # a bug: make it visible to the consumer, not silent
            _log.exception("feed thread failed")
            with self._cond:
                self._failure = exc
                self._cond.notify_all()
        finally:
            self._shutdown()

    def _step(self, wait_s: float | None = None) -> None:
        # connect what is due, read what is readable (waiting up to the next tick, or wait_s
        # when that is sooner), then let the arbiter judge health and switch
        selector = self._selector
        assert selector is not None
        now = self._clock.monotonic_ns()
        for index, conn in enumerate(self._conns):
            if conn.state == _IDLE and now >= conn.retry_at_ns:
                self._connect(index, now)
            elif conn.state == _CONNECTING and now >= conn.deadline_ns:
                timeout_s = self._config.connect_timeout_s
                self._failed(index, f"connect to {conn.address.url} timed out ({timeout_s} s)")
        select_s = self._timeout_s(now)
        if wait_s is not None and wait_s < select_s:
            select_s = max(wait_s, 0.0)
        for key, _ in selector.select(select_s):
            if key.data is None:
                self._drain_wake()
                continue
            conn = self._conns[key.data]
            if conn.state == _CONNECTING:
                self._connected(key.data)
            elif conn.state == _OPEN:
                self._read(key.data)
        with self._cond:
            events = self._arbiter.evaluate()
            if events:
                self._cond.notify_all()  # the switch may have queued the new source's bars
        for event in events:
            self._notify(event)

    def _timeout_s(self, now_ns: int) -> float:
        timeout = self._tick_s
        for conn in self._conns:
            if conn.state == _IDLE:
                timeout = min(timeout, (conn.retry_at_ns - now_ns) / _NS)
            elif conn.state == _CONNECTING:
                timeout = min(timeout, (conn.deadline_ns - now_ns) / _NS)
        return max(timeout, 0.0)

    def _connect(self, index: int, now_ns: int) -> None:
        conn = self._conns[index]
        host, port = conn.address
        try:
            # literal addresses (the loopback default) resolve without a lookup; a name with
            # several addresses (localhost: ::1 and 127.0.0.1) is tried in turn, per attempt
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            family, kind, proto, _, sockaddr = infos[conn.attempt % len(infos)]
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            self._failed(index, f"connect to {conn.address.url}: {exc}")
            return
        sock.setblocking(False)
        err = sock.connect_ex(sockaddr)
        conn.sock = sock
        if err == 0:
            self._opened(index)
        elif err in _IN_PROGRESS:
            conn.state = _CONNECTING
            conn.deadline_ns = now_ns + int(self._config.connect_timeout_s * _NS)
            assert self._selector is not None
            self._selector.register(sock, selectors.EVENT_WRITE, index)
        else:
            self._failed(index, f"connect to {conn.address.url}: {_strerror(err)}")

    def _connected(self, index: int) -> None:
        conn = self._conns[index]
        assert conn.sock is not None and self._selector is not None
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self._selector.unregister(conn.sock)
        if err:
            self._failed(index, f"connect to {conn.address.url}: {_strerror(err)}")
        else:
            self._opened(index)

    def _opened(self, index: int) -> None:
        conn = self._conns[index]
        assert conn.sock is not None and self._selector is not None
        conn.state = _OPEN
        conn.splitter.reset()
        self._selector.register(conn.sock, selectors.EVENT_READ, index)
        with self._cond:
            self._arbiter.connected(index)

    def _failed(self, index: int, detail: str) -> None:
        self._drop_socket(index)
        with self._cond:
            self._arbiter.connect_failed(index, detail)

    def _lost(self, index: int, detail: str) -> None:
        truncated = self._conns[index].splitter.reset() > 0
        self._drop_socket(index)
        with self._cond:
            self._arbiter.disconnected(index, detail, truncated=truncated)

    def _drop_socket(self, index: int) -> None:
        # close, then schedule the next attempt with the capped doubling delay
        conn = self._conns[index]
        if conn.sock is not None:
            assert self._selector is not None
            # a connect that failed at once was never registered
            with contextlib.suppress(KeyError):
                self._selector.unregister(conn.sock)
            conn.sock.close()
            conn.sock = None
        conn.state = _IDLE
        delay_s = self._config.backoff_s(conn.attempt)
        conn.attempt += 1
        conn.retry_at_ns = self._clock.monotonic_ns() + int(delay_s * _NS)

    def _read(self, index: int) -> None:
        conn = self._conns[index]
        assert conn.sock is not None
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(index, f"read from {conn.address.url} failed: {exc}")
            return
        if not data:
            self._lost(index, f"{conn.address.url} closed the connection")
            return
        conn.attempt = 0  # the feed talks: the next reconnect starts from the first delay
        items = decode_lines(conn.splitter.feed(data), self._config.max_line_bytes)
        for start in range(0, len(items), APPLY_BATCH):  # decoded outside the lock
            with self._cond:
                if self._arbiter.receive(index, items[start : start + APPLY_BATCH]):
                    self._cond.notify()

    def _notify(self, event: SwitchEvent) -> None:
        if self._on_switch is None:
            return
        try:
            self._on_switch(event)
        except Exception:  # the callback's bug must not stop the feed
            _log.exception("on_switch callback failed for %s", event)

    def _wake(self) -> None:
        if self._wake_w is not None:
            # full (already woken) or closed: either way the thread wakes or has ended
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")

    def _drain_wake(self) -> None:
        assert self._wake_r is not None
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:  # BlockingIOError: drained
            pass

    def _shutdown(self) -> None:
        for conn in self._conns:
            if conn.sock is not None:
                conn.sock.close()
                conn.sock = None
            conn.state = _IDLE
        if self._selector is not None:
            self._selector.close()


def _address(address: str | FeedAddress, allow_remote: bool) -> FeedAddress:
    url = address.url if isinstance(address, FeedAddress) else address
    return parse_feed_url(url, allow_remote=allow_remote)


def _strerror(err: int) -> str:
    return f"{os.strerror(err)} ({errno.errorcode.get(err, err)})"
