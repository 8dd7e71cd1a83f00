"""``FeedProcess``: a ``FeedClient`` in a process of its own, read by the consumer from a pipe.

Why a second process: a paper session's kernel reads its feed inline, on its own thread
(``FeedClient(threaded=False)``): at 20,000 bars/s, reading the sockets, decoding and
checking each line and the arbiter's accounting took about a fifth of the kernel thread's
time (docs/stress.md), on the one core its Python interpreter can use. A second thread does
not help (it shares the GIL: the threaded client halved the rate); a second interpreter does.
The child runs an inline ``FeedClient`` (sockets, decoding, health, failover, the bounded
conflating queue and its shedding policy: all unchanged) and writes the bars it delivers to
its standard output in batches; the consumer's side is one ``os.read`` and one
``pickle.loads`` per batch.

Wire between the two (ours, private): frames of ``<kind:u8><length:u32 LE><payload>`` on the
child's stdout; a payload is a pickle (the two ends are the same code, so the format has no
version). Kinds: ``READY`` (after the client started), ``BARS`` (a list of bar tuples),
``SWITCH`` (a list of ``SwitchEvent``), ``STATS`` (a ``FeedStats``, every
``STATS_EVERY_S`` and after a switch), ``FINAL`` (the last ``FeedStats``, after the stop) and
``ERROR`` (the child's failure, as text). The consumer stops the child by closing its stdin;
a child whose parent died finds its stdin at EOF, or its stdout broken, and exits.

What is kept of the in-process client's semantics:

* **one bounded buffer that sheds by policy.** The child writes a batch only while the pipe
  has room; while the consumer is behind, it keeps reading its sockets, and its queue sheds by
  the ``feed.conflation`` policy, counted. In flight between the two are at most a pipe's
  capacity of bars (64 KiB, a few hundred) and one batch (``BATCH`` bars).
* **switch events in order with the bars.** A switch is framed before the bars drained
  after it, and the consumer's ``on_switch`` runs when that frame is read, on its thread.
* **every bar accounted for.** ``stats()`` is the child's latest snapshot, with the bars that
  reached this side but were not yet taken moved from ``delivered`` back to ``queued``, so
  ``FeedStats.unaccounted`` stays 0; ``close`` reads every frame up to ``FINAL``.

Ctrl-C in a terminal reaches the whole process group: the child ignores SIGINT and stops when
its consumer closes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from ultrathink.core.events import Bar
from ultrathink.errors import DataSourceError
from ultrathink.feed.address import FeedAddress
from ultrathink.feed.config import FeedConfig
from ultrathink.feed.stats import FeedStats, SwitchEvent

__all__ = ["FeedProcess"]

READY, BARS, SWITCH, STATS, FINAL, ERROR = range(6)
_HEADER = struct.Struct("<BI")
_LEN = struct.Struct("<I")
#: bars per BARS frame, at most
BATCH = 512
#: a STATS frame at least this often while bars flow
STATS_EVERY_S = 0.1
_TICK_S = 0.02  # the child's longest wait for its sockets: how soon it sees a stop
_FULL_WAIT_S = 0.0005  # the pipe full: read the sockets this long, then try the pipe again
_READ_BYTES = 1 << 20
#: how long a child whose output ended may take to exit before it is reported without its
#: exit status (the pipe's EOF can be seen before the kernel has reaped the child)
_EXIT_WAIT_S = 10.0
_PICKLE = pickle.HIGHEST_PROTOCOL


class FeedProcess:
    """Receive bars like ``FeedClient(threaded=False)``, from a child process that reads the feed.

    Parameters
    ----------
    primary, backup : FeedAddress or str, and the same or None
        As ``FeedClient``'s (checked by the caller: loopback unless allowed there).
    config : FeedConfig or None
        The child client's settings.
    symbols : iterable of str or None
        Deliver only these symbols.
    on_switch : callable or None
        Called with each ``SwitchEvent`` on the consumer's thread, when its frame is read.
    start_timeout_s : float
        How long ``start`` waits for the child to be ready.
    """

    def __init__(
        self,
        primary: str | FeedAddress,
        backup: str | FeedAddress | None = None,
        *,
        config: FeedConfig | None = None,
        symbols: Iterable[str] | None = None,
        on_switch: Callable[[SwitchEvent], None] | None = None,
        start_timeout_s: float = 60.0,
    ) -> None:
        self._urls = [_url(primary)] + ([] if backup is None else [_url(backup)])
        self._config = config if config is not None else FeedConfig()
        self._symbols = None if symbols is None else sorted(symbols)
        self._on_switch = on_switch
        self._start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._fd = -1
        self._buf = bytearray()
        self._bars: deque[Bar] = deque()
        self._received = 0  # bars read from the pipe, in all
        self._stats: FeedStats | None = None
        self._events: list[SwitchEvent] = []
        self._final = False
        self._closed = False
        self._error: str | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> FeedProcess:
        """Start the child and wait until its client runs (``start_timeout_s`` at most).

        Raises
        ------
        DataSourceError
            The child failed to start (its error is in the message).
        """
        if self._proc is not None:
            raise RuntimeError("a FeedProcess starts once; make a new one to read again")
        spec = {"urls": self._urls, "symbols": self._symbols, "config": self._config}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "ultrathink.feed.process"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True, bufsize=0,
        )  # fmt: skip
        assert self._proc.stdin is not None and self._proc.stdout is not None
        blob = pickle.dumps(spec, _PICKLE)
        self._proc.stdin.write(_LEN.pack(len(blob)) + blob)
        self._proc.stdin.flush()
        self._fd = self._proc.stdout.fileno()
        os.set_blocking(self._fd, False)
        deadline = time.monotonic() + self._start_timeout_s
        while self._stats is None:  # the READY frame, or the child's error (raised)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._kill()
                raise DataSourceError(
                    f"the feed process was not ready in {self._start_timeout_s} s"
                )
            self._read(remaining)
            self._raise_error()
        return self

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the child: it stops reading, sends its last counters and exits.

        Bars already read can still be taken; ``get`` then returns None. Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        deadline = time.monotonic() + timeout_s
        while not self._final and self._fd >= 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._read(remaining):
                break
        try:
            proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            self._kill()
        self._close_fd()

    # -- the consumer's side ---------------------------------------------------------------
    def drain(self, max_n: int = 1_000_000) -> list[Bar]:
        """Every bar that has arrived (at most ``max_n``), oldest first, without waiting."""
        if not self._closed:
            self._read(0.0)
        bars = self._bars
        if len(bars) <= max_n:
            out = list(bars)
            bars.clear()
            return out
        pop = bars.popleft
        return [pop() for _ in range(max_n)]

    def get(self, timeout: float | None = None) -> Bar | None:
        """The next bar; wait up to ``timeout`` s (None: until one comes or the child ends)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._bars:
            if self._closed or self._fd < 0:
                return None
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            self._read(remaining)
        return self._bars.popleft()

    def pump(self, wait_s: float | None = 0.0) -> None:
        """Read what has arrived, waiting up to ``wait_s`` for it (None: one tick)."""
        if not self._closed:
            self._read(_TICK_S if wait_s is None else wait_s)

    def stats(self) -> FeedStats:
        """The child's latest counters, bars read but not taken counted as queued.

        Each snapshot is framed after every bar it counts as delivered, so when it is read
        this side has received exactly its ``delivered``; of those, the ones not taken yet
        move to ``queued`` (bars received after it are in neither: a later snapshot counts
        them).
        """
        stats = self._stats
        if stats is None:
            raise RuntimeError("the feed process has not started")
        taken = self._received - len(self._bars)
        here = stats.delivered - taken
        if here <= 0:
            return stats
        return dataclasses.replace(
            stats, delivered=stats.delivered - here, queued=stats.queued + here
        )

    @property
    def events(self) -> tuple[SwitchEvent, ...]:
        """The source switches so far, oldest first."""
        return tuple(self._events)

    # -- frames ----------------------------------------------------------------------------
    def _read(self, wait_s: float | None) -> bool:
        # read what the pipe holds (waiting up to wait_s for something), apply every whole
        # frame; False at EOF
        fd = self._fd
        if fd < 0:
            return False
        try:
            data = os.read(fd, _READ_BYTES)
        except BlockingIOError:
            if wait_s is not None and wait_s <= 0:
                return True
            ready, _, _ = select.select([fd], [], [], wait_s)
            if not ready:
                return True
            try:
                data = os.read(fd, _READ_BYTES)
            except BlockingIOError:
                return True
        if not data:
            self._eof()
            return False
        buf = self._buf
        buf += data
        at, size, header = 0, len(buf), _HEADER.size
        while size - at >= header:
            kind, length = _HEADER.unpack_from(buf, at)
            end = at + header + length
            if size < end:
                break
            self._apply(kind, bytes(buf[at + header : end]))
            at = end
        del buf[:at]  # once per read, not once per frame
        return True

    def _apply(self, kind: int, payload: bytes) -> None:
        if kind == BARS:
            new = tuple.__new__
            bars = [new(Bar, t) for t in pickle.loads(payload)]
            self._bars.extend(bars)
            self._received += len(bars)
        elif kind in (STATS, READY, FINAL):
            self._stats = pickle.loads(payload)
            self._final = kind == FINAL
        elif kind == SWITCH:
            for event in pickle.loads(payload):
                self._events.append(event)
                if self._on_switch is not None:
                    self._on_switch(event)
        elif kind == ERROR:
            self._error = payload.decode("utf-8", "replace")
        else:
            self._error = f"an unknown frame kind {kind} from the feed process"

    def _eof(self) -> None:
        self._close_fd()
        if not self._final and self._error is None and not self._closed:
            proc, code = self._proc, None
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = proc.wait(_EXIT_WAIT_S)
            self._error = f"it ended without its last counters ({_exit_text(code)})"
        self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            self._kill()
            raise DataSourceError(f"the feed process failed: {error}")

    def _close_fd(self) -> None:
        proc = self._proc
        if self._fd >= 0 and proc is not None and proc.stdout is not None:
            proc.stdout.close()
        self._fd = -1

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}, exit code {code}"
        except ValueError:
            pass
    if code is None:
        return f"its output closed, still running after {_EXIT_WAIT_S:g} s: stopped"
    return f"exit code {code}"


def _url(address: str | FeedAddress) -> str:
    return address.url if isinstance(address, FeedAddress) else address


# -- the child ------------------------------------------------------------------------------


def _child() -> int:
    # stdout carries frames only: anything printed goes to stderr
    out = os.dup(1)
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the consumer stops it, not a Ctrl-C
    try:
        (size,) = _LEN.unpack(_read_exactly(0, _LEN.size))
        spec = pickle.loads(_read_exactly(0, size))
    except Exception as exc:  # reported, then exit
        _write_all(out, _frame(ERROR, f"bad start spec: {exc!r}".encode()))
        return 2
    try:
        return _serve(out, spec)
    except BrokenPipeError:
        return 0  # the consumer is gone
    except BaseException as exc:  # a bug: the consumer raises it
        with contextlib.suppress(OSError):
            _write_all(out, _frame(ERROR, repr(exc).encode()))
        return 1


def _serve(out: int, spec: dict[str, Any]) -> int:
    from ultrathink.feed.client import FeedClient

    switches: list[SwitchEvent] = []
    urls = spec["urls"]
    client = FeedClient(
        urls[0], urls[1] if len(urls) > 1 else None, config=spec["config"],
        symbols=spec["symbols"], on_switch=switches.append, threaded=False,
    )  # fmt: skip
    client.start()
    ctl = sys.stdin.fileno()
    os.set_blocking(ctl, False)
    _write_all(out, _pickled(READY, client.stats()))
    os.set_blocking(out, False)
    pending = memoryview(b"")
    stats_due = time.monotonic() + STATS_EVERY_S
    ctl_due = 0.0
    more = False  # the last batch was full: the queue may hold more, do not wait to read
    try:
        while True:
            now = time.monotonic()
            if now >= ctl_due:  # a read of stdin per tick, not per loop: the loop is hot
                if _stopped(ctl):
                    break
                ctl_due = now + _TICK_S
            if pending:
                with contextlib.suppress(BlockingIOError):  # full: the consumer is behind
                    pending = pending[os.write(out, pending) :]
            client.pump(_FULL_WAIT_S if pending else 0.0 if more else _TICK_S)
            if pending:
                continue
            frames = []
            if switches:
                frames.append(_pickled(SWITCH, switches))
                switches.clear()
                stats_due = 0.0
            bars = client.drain(BATCH, read=False)  # pump just read the sockets
            more = len(bars) == BATCH
            if bars:
                frames.append(_pickled(BARS, [tuple(b) for b in bars]))
            now = time.monotonic()
            if now >= stats_due:
                frames.append(_pickled(STATS, client.stats()))
                stats_due = now + STATS_EVERY_S
            if frames:
                pending = memoryview(b"".join(frames))
    finally:
        client.close()
    os.set_blocking(out, True)
    if pending:
        _write_all(out, pending)
    rest = client.drain()  # taken from the queue after the stop: still the consumer's
    tail = [_pickled(SWITCH, switches)] if switches else []
    for start in range(0, len(rest), BATCH):
        tail.append(_pickled(BARS, [tuple(b) for b in rest[start : start + BATCH]]))
    tail.append(_pickled(FINAL, client.stats()))
    _write_all(out, b"".join(tail))
    return 0


def _stopped(ctl: int) -> bool:
    # the consumer closed our stdin (or died): stop
    try:
        return os.read(ctl, 4096) == b""
    except BlockingIOError:
        return False


def _frame(kind: int, payload: bytes) -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


def _pickled(kind: int, value: object) -> bytes:
    return _frame(kind, pickle.dumps(value, _PICKLE))


def _read_exactly(fd: int, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, n - got)
        if not chunk:
            raise EOFError(f"stdin ended after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


if __name__ == "__main__":
    sys.exit(_child())
