"""The store writer as a separate process: SQLite and hashing off the kernel's GIL.

A writer *thread* shares the GIL with the kernel, so every microsecond it spends building
rows, binding parameters and hashing the audit chain is a microsecond the kernel does not
run: on the 1,000,000-bar ``sma_cross`` benchmark (39,000 orders) that was ~1 s of a ~3 s
run. This writer runs in its own process and receives batches over a pipe in the compact
columnar form of ``codec``, so the kernel pays ~1 µs per order to hand a batch off and the
writing happens on the other core.

The child is a plain ``python -m ultrathink.persistence.process_writer`` subprocess talking
over two inherited pipe file descriptors with ``multiprocessing.connection`` framing — not
``multiprocessing.Process``: ``spawn`` re-imports the parent's ``__main__`` (a user script
without a ``__main__`` guard would run twice) and ``fork`` is unsafe in a threaded process.

Semantics match ``StoreWriter``: ``put`` returns once the batch is in the pipe (bounded by
``max_pending`` unacknowledged batches: back-pressure, not unbounded memory), ``flush``
waits for every batch to commit, failures are sticky and raised as ``PersistenceError`` on
the next call, and ``close`` drains, stops and joins the process.

The child runs in a session (process group) of its own and ignores SIGINT: a terminal's
Ctrl-C reaches the terminal's foreground process group, and the parent, which handles it (an
interrupted run is written to the end), still needs its writer.
The child ends when told to stop, when its parent goes away (end of the pipe), or on SIGTERM.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any

from ultrathink.errors import ConfigError, PersistenceError
from ultrathink.persistence.codec import decode_batch, encode_batch
from ultrathink.persistence.records import WriteBatch

_START_TIMEOUT_S = 60.0


class ProcessStoreWriter:
    """Write ``WriteBatch`` records to a SQLite store from a dedicated process.

    Parameters
    ----------
    path : str or Path
        Database file, created and migrated if needed (by the child).
    max_pending : int
        Batches that may be in flight before ``put`` waits for the child to catch up.
    """

    def __init__(self, path: str | Path, *, max_pending: int = 8) -> None:
        if max_pending < 1:
            raise ConfigError(f"max_pending must be >= 1, was {max_pending}")
        self.path = Path(path)
        self._max_pending = max_pending
        self._pending = 0
        self._error: str | None = None
        self._error_reported = False
        self._closed = False
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "ultrathink.persistence.process_writer", str(self.path),
             str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, close_fds=True,
            start_new_session=True,  # out of the terminal's process group: no Ctrl-C at all
        )  # fmt: skip
        os.close(to_child_r)
        os.close(from_child_w)
        self._out = Connection(to_child_w, readable=False)
        self._in = Connection(from_child_r, writable=False)
        # ``Connection.poll`` builds, fills and closes a selector on every call (~100 µs of
        # Python); ``put`` looks for acknowledgements on every batch, so it asks this one
        self._acks = select.poll()
        self._acks.register(from_child_r, select.POLLIN)
        self._expect_ready()

    def _expect_ready(self) -> None:
        if not self._in.poll(_START_TIMEOUT_S):
            self._kill()
            raise PersistenceError(f"store writer process for {self.path} did not start")
        kind, detail = self._recv()
        if kind != "ready":
            self._kill()
            self._error_reported = True
            raise PersistenceError(f"cannot start the store writer of {self.path}: {detail}")

    def put(self, batch: WriteBatch) -> None:
        """Send ``batch`` to the writer process; waits only when too many are in flight."""
        self._check_open()
        self._drain(block=False)
        while self._pending >= self._max_pending and self._error is None:
            self._drain(block=True)
        if self._error is not None:
            self._raise_state()
        self._send(("batch", encode_batch(batch)))
        self._pending += 1

    def flush(self) -> None:
        """Block until every batch sent so far is committed (or one failed)."""
        self._check_open()
        self._send(("flush", None))
        self._pending += 1
        while self._pending:
            self._drain(block=True)
        if self._error is not None:
            self._raise_state()

    def close(self) -> None:
        """Drain, stop and join the writer process; idempotent."""
        if self._closed:
            return
        try:
            if self._alive():
                self.flush_quietly()
                self._send(("stop", None))
                self._proc.wait(timeout=_START_TIMEOUT_S)
        finally:
            self._closed = True
            self._kill()
            self._out.close()
            self._in.close()
        if self._error is not None and not self._error_reported:
            self._raise_state()

    def flush_quietly(self) -> None:
        """Wait for in-flight batches without raising (errors stay sticky)."""
        try:
            self._send(("flush", None))
            self._pending += 1
            while self._pending and self._alive():
                self._drain(block=True)
        except (OSError, EOFError):
            self._error = self._error or "writer process died"

    def __enter__(self) -> ProcessStoreWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed or self._error is not None:
            self._raise_state()

    def _send(self, message: tuple[str, Any]) -> None:
        try:
            self._out.send(message)
        except (OSError, EOFError) as exc:
            self._error = self._error or f"writer process is gone: {exc}"
            self._raise_state()

    def _recv(self) -> tuple[str, Any]:
        try:
            return self._in.recv()
        except (OSError, EOFError):
            return ("error", f"writer process exited (code {self._proc.poll()})")

    def _drain(self, *, block: bool) -> None:
        while self._pending and (self._in.poll(0.5) if block else self._acks.poll(0)):
            kind, detail = self._recv()
            self._pending -= 1
            if kind == "error":
                self._error = self._error or detail
                if detail and "exited" in str(detail):
                    self._pending = 0
            if not block:
                continue
            return
        if block and self._pending and not self._alive():
            self._error = self._error or f"writer process exited (code {self._proc.poll()})"
            self._pending = 0

    def _raise_state(self) -> None:
        if self._error is None:
            raise PersistenceError(f"store writer of {self.path} is closed")
        self._error_reported = True
        raise PersistenceError(f"store writer of {self.path} failed: {self._error}")

    def _alive(self) -> bool:
        return self._proc.poll() is None

    def _kill(self) -> None:
        if self._alive():
            self._proc.kill()
        self._proc.wait(timeout=5)


def _serve(path: str, inbox: Connection, outbox: Connection) -> None:
    """Child process: open the store, then write each batch in one transaction."""
    from ultrathink.persistence.apply import write_batch
    from ultrathink.persistence.writer import checkpoint, open_for_writing

    try:
        db = open_for_writing(path)
    except BaseException as exc:  # report, then exit: the parent raises PersistenceError
        outbox.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    outbox.send(("ready", None))
    failed: str | None = None
    n_unchecked = 0  # batches committed since the last checkpoint
    try:
        while True:
            kind, payload = inbox.recv()
            if kind == "stop":
                return
            if kind == "batch" and failed is None:
                try:
                    write_batch(db, decode_batch(payload))
                    n_unchecked += 1
                except BaseException as exc:  # sticky: later batches are discarded
                    failed = f"{type(exc).__name__}: {exc}"
            outbox.send(("error", failed) if failed else ("ok", None))
            if n_unchecked and not inbox.poll():
                n_unchecked = 0
                checkpoint(db)
    except (EOFError, OSError):
        return  # parent went away
    finally:
        db.close()


if __name__ == "__main__":  # the child: python -m ultrathink.persistence.process_writer DB R W
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C (see above)
    _serve(
        sys.argv[1],
        Connection(int(sys.argv[2]), writable=False),
        Connection(int(sys.argv[3]), readable=False),
    )
