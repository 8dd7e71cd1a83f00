"""The single database writer: a daemon thread fed by a bounded queue.

The kernel never touches SQLite: it calls :meth:`StoreWriter.put`, which is one
``queue.put`` (a full queue blocks the kernel: back-pressure instead of unbounded memory).
The writer thread owns its connection and writes each batch in one transaction. It
checkpoints the WAL when its queue runs empty rather than every 1,000 pages in the middle
of a burst (checkpoints fsync: ~20% of the write time in the 100,000-order benchmark).

Failure is sticky: after a batch fails (the transaction is rolled back), later batches are
discarded and every ``put``/``flush`` raises :class:`PersistenceError`, chained to the
original error; ``close`` raises it too unless it was already reported. Nothing is lost
silently.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
from pathlib import Path
from types import TracebackType
from typing import NoReturn, cast

from ultrathink.errors import ConfigError, PersistenceError
from ultrathink.persistence.apply import write_batch
from ultrathink.persistence.db import connect, migrate
from ultrathink.persistence.records import WriteBatch

_STOP = object()
_LIVENESS_POLL_S = 0.5
# The writer copies the WAL into the database when its queue is empty; SQLite's automatic
# checkpoint (with its fsyncs) is only the backstop for long bursts: 4096 pages = 64 MiB.
WAL_AUTOCHECKPOINT_PAGES = 4096


class StoreWriter:
    """Write :class:`WriteBatch` records to a SQLite store from a dedicated thread.

    Parameters
    ----------
    path : str or Path
        Database file, created and migrated if needed.
    max_queue_batches : int
        Queue capacity in batches; ``put`` blocks while the queue is full.

    Raises
    ------
    ConfigError
        If ``max_queue_batches`` is not positive.
    PersistenceError
        If the database cannot be opened or migrated.
    """

    def __init__(self, path: str | Path, *, max_queue_batches: int = 64) -> None:
        if max_queue_batches < 1:
            raise ConfigError(f"max_queue_batches must be >= 1, was {max_queue_batches}")
        self.path = Path(path)
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_queue_batches)
        self._error: BaseException | None = None
        self._error_reported = False
        self._n_discarded = 0
        self._closed = False
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(started,), name="ultrathink-store-writer", daemon=True
        )
        self._thread.start()
        started.wait()
        if self._error is not None:
            self._thread.join()
            self._closed = True
            self._error_reported = True
            if isinstance(self._error, PersistenceError):
                raise self._error
            raise PersistenceError(
                f"cannot start the store writer of {self.path}: {self._error}"
            ) from self._error

    def put(self, batch: WriteBatch) -> None:
        """Queue ``batch`` for writing; blocks only while the queue is full.

        Raises
        ------
        PersistenceError
            If the writer is closed or an earlier batch failed.
        """
        if self._error is not None or self._closed:
            self._raise_state()
        self._enqueue(batch)

    def flush(self) -> None:
        """Block until every batch queued so far is committed.

        Raises
        ------
        PersistenceError
            If the writer is closed or a batch failed.
        """
        if self._closed:
            self._raise_state()
        done = threading.Event()
        self._enqueue(done)
        while not done.wait(_LIVENESS_POLL_S):
            self._check_alive()
        if self._error is not None:
            self._raise_state()

    def close(self) -> None:
        """Write everything queued, stop the thread and close its connection; idempotent.

        Raises
        ------
        PersistenceError
            If a batch failed and that failure was not reported yet.
        """
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self._enqueue(_STOP)
        self._thread.join()
        if self._error is not None and not self._error_reported:
            self._raise_state()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _enqueue(self, item: object) -> None:
        # Blocks while the queue is full, but never on a writer thread that has died.
        while True:
            try:
                self._queue.put(item, timeout=_LIVENESS_POLL_S)
                return
            except queue.Full:
                self._check_alive()

    def _check_alive(self) -> None:
        if not self._thread.is_alive():
            self._error = self._error or PersistenceError("the writer thread stopped")
            self._raise_state()

    def _raise_state(self) -> NoReturn:
        if self._error is None:
            raise PersistenceError(f"store writer of {self.path} is closed")
        self._error_reported = True
        raise PersistenceError(
            f"store writer of {self.path} failed, {self._n_discarded} later batch(es) "
            f"discarded: {type(self._error).__name__}: {self._error}"
        ) from self._error

    def _run(self, started: threading.Event) -> None:
        try:
            conn = self._open()
        except BaseException as exc:
            self._error = exc
            return
        finally:
            started.set()
        try:
            self._consume(conn)
        except BaseException as exc:  # not expected: write errors are caught per batch
            self._error = self._error or exc
        finally:
            conn.close()

    def _open(self) -> sqlite3.Connection:
        return open_for_writing(self.path)

    def _consume(self, conn: sqlite3.Connection) -> None:
        get, is_idle = self._queue.get, self._queue.empty
        n_unchecked = 0  # batches committed since the last checkpoint
        while True:
            item = get()
            if item is _STOP:
                return
            if isinstance(item, threading.Event):
                item.set()
            elif self._error is not None:
                self._n_discarded += 1
            else:
                try:
                    write_batch(conn, cast(WriteBatch, item))
                    n_unchecked += 1
                except BaseException as exc:  # sticky: reported on the next call
                    self._error = exc
            if n_unchecked and is_idle():
                n_unchecked = 0
                checkpoint(conn)


def open_for_writing(path: str | Path) -> sqlite3.Connection:
    """Open and migrate the store for a writer (large WAL, checkpointed when idle)."""
    conn = connect(path)
    try:
        migrate(conn)
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
    except BaseException:
        conn.close()
        raise
    return conn


def checkpoint(conn: sqlite3.Connection) -> None:
    """Passive WAL checkpoint, called by a writer when it has nothing queued."""
    # Best effort: a busy reader only delays the checkpoint to the next idle moment.
    with contextlib.suppress(sqlite3.Error):
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
