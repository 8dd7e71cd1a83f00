"""Append-only line logs (the feed journal, the session input log): open one to append.

A log is lines, each written with one unbuffered ``write``, so each is in the OS when the
write returns. The last line can still be torn: a write that filled the disk wrote part of
it, and Linux stops a write between two pages when the writer is killed (a line that spans
a page boundary). Readers ignore a torn last line. ``open_append`` cuts it off before a
restarted session appends, so that the first new line starts a line of its own instead of
completing the torn one into a damaged line in the middle of the log.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

__all__ = ["open_append", "write_all"]

_CHUNK = 65_536


def open_append(path: Path) -> BinaryIO:
    """Open ``path`` to append lines (created with its folder if missing), unbuffered, after
    cutting a torn last line.

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
    return log  # FileIO: every write is one system call


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
