"""The single database writer: a daemon thread fed by a bounded queue.

The kernel never touches SQLite: it calls :meth:`StoreWriter.put`, which is one
``queue.put`` (a full queue blocks the kernel: back-pressure instead of unbounded memory).
The writer thread owns its connection and writes each batch in one transaction.

Failure is sticky: after a batch fails (the transaction is rolled back), later batches are
discarded and every ``put``/``flush`` raises :class:`PersistenceError`, chained to the
original error; ``close`` raises it too unless it was already reported. Nothing is lost
silently.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from pathlib import Path
from types import TracebackType
from typing import cast

from ultrathink.errors import ConfigError, PersistenceError
from ultrathink.persistence.apply import write_batch
from ultrathink.persistence.db import connect, migrate
from ultrathink.persistence.records import WriteBatch

_STOP = object()
_LIVENESS_POLL_S = 0.5


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
        self._queue.put(batch)

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
        self._queue.put(done)
        while not done.wait(_LIVENESS_POLL_S):
            if not self._thread.is_alive():
                raise PersistenceError(f"store writer thread of {self.path} died")
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
        self._queue.put(_STOP)
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

    def _raise_state(self) -> None:
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
        finally:
            conn.close()

    def _open(self) -> sqlite3.Connection:
        conn = connect(self.path)
        try:
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _consume(self, conn: sqlite3.Connection) -> None:
        get = self._queue.get
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
                except BaseException as exc:  # sticky: reported on the next call
                    self._error = exc
