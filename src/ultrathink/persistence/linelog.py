"""Append-only line logs (the feed journal, the session input log): open one to append.

A log is lines, each written with one unbuffered ``write``, so each is in the OS when the
write returns. The last line can still be torn: a write that filled the disk wrote part of
it, and Linux stops a write between two pages when the writer is killed (a line that spans
a page boundary). Readers ignore a torn last line. ``open_append`` cuts it off before a
restarted session appends, so that the first new line starts a line of its own instead of
completing the torn one into a damaged line in the middle of the log.

**Writeback.** ``LineLog`` asks the OS to start writing what was appended to the disk every
``WRITEBACK_BYTES`` (``sync_file_range(..., SYNC_FILE_RANGE_WRITE)``, as RocksDB's
``bytes_per_sync`` does), from a thread of its own. Left alone, Linux writes a file's dirty
pages back once they are 30 s old (``vm.dirty_expire_centisecs``), all of them at once: at
20,000 bars/s the feed journal grows 3 MB a second, and every 30.7 s ext4 allocated blocks
for some 90 MB while the kernel thread's next ``write`` waited in
``ext4_da_get_block_prep``, 6 to 27 ms (the stalls of the 5-min load, docs/stress.md). The
call only starts writeback: it neither waits for the disk nor makes anything durable (the
log's promise stays "in the OS when the write returns"), so its errors are ignored; a
failing disk shows in the writes themselves. The thread, not the writer, makes the call:
made inline, each call of 1 MiB took up to 1.6 ms of the writer's time. Where the call is
missing (not Linux), the log writes as before.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["WRITEBACK_BYTES", "LineLog", "open_append", "write_all"]

_CHUNK = 65_536

#: the writeback of a log starts each time this much more was appended
WRITEBACK_BYTES = 1 << 20

_SYNC_FILE_RANGE_WRITE = 2  # linux/fs.h
_PAGE = mmap.PAGESIZE


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_START_WRITEBACK = _sync_file_range()


class LineLog:
    """An open line log: ``append`` writes whole, and the OS's writeback keeps up behind it.

    Not thread-safe for appends: one writer (the kernel's thread) appends and closes.
    """

    __slots__ = (
        "_closed",
        "_end",
        "_file",
        "_lock",
        "_started",
        "_thread",
        "_unflushed",
        "_wake",
        "every",
    )

    def __init__(self, file: BinaryIO, every: int = WRITEBACK_BYTES) -> None:
        self._file = file
        self.every = every
        self._unflushed = 0
        self._end = file.tell()  # the file's end
        self._started = self._end - self._end % _PAGE  # where the next writeback starts
        self._lock = threading.Lock()  # the file stays open while the thread uses its fd
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def append(self, data: bytes) -> None:
        """Write every byte of ``data`` (in the OS when this returns).

        Raises
        ------
        OSError
            A write failed (a full disk, ...) or took no bytes.
        """
        write_all(self._file, data)
        self._end += len(data)
        self._unflushed += len(data)
        if self._unflushed >= self.every and _START_WRITEBACK is not None:
            self._unflushed = 0
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._writeback, name="linelog-writeback", daemon=True
                )
                self._thread.start()
            self._wake.set()

    def _writeback(self) -> None:
        assert _START_WRITEBACK is not None
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                if self._closed:
                    return
                # whole pages only: the writer's next append would wait for a last, partial
                # page that is being written back (folio_wait_bit_common)
                end = self._end - self._end % _PAGE
                if end > self._started:
                    _START_WRITEBACK(
                        self._file.fileno(),
                        self._started,
                        end - self._started,
                        _SYNC_FILE_RANGE_WRITE,
                    )
                    self._started = end

    def close(self) -> None:
        """Stop the writeback thread and close the file (idempotent)."""
        with self._lock:
            self._closed = True
            self._wake.set()
            self._file.close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> LineLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_append(path: Path, *, writeback_every: int = WRITEBACK_BYTES) -> LineLog:
    """Open ``path`` to append lines (created with its folder if missing), unbuffered, after
    cutting a torn last line; its writeback starts every ``writeback_every`` bytes.

    Raises
    ------
    OSError
        The folder or the file cannot be made, opened, read or cut.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    log = open(path, "a+b", buffering=0)  # noqa: SIM115 - the caller holds it open
    try:
        end = log.seek(0, os.SEEK_END)
        complete = _complete_length(log.fileno(), end)
        if complete < end:
            log.truncate(complete)
    except BaseException:
        log.close()
        raise
    return LineLog(log, writeback_every)  # FileIO: every write is one system call


def write_all(log: BinaryIO, data: bytes) -> None:
    """Write every byte of ``data`` to the unbuffered ``log`` (a write may take fewer).

    Raises
    ------
    OSError
        A write failed (a full disk, ...) or took no bytes.
    """
    view = memoryview(data)
    while view:
        written = log.write(view)
        if not written:
            raise OSError("the write took no bytes")
        view = view[written:]


def _complete_length(fd: int, end: int) -> int:
    # the length up to and including the last newline: 0 when there is none
    pos = end
    while pos > 0:
        start = max(0, pos - _CHUNK)
        chunk = os.pread(fd, pos - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        pos = start
    return 0
