"""Whether a store's place can be written, and the error that says why not.

SQLite, asked to write where it may not, says only "unable to open database file" or
"attempt to write a readonly database": ``Store`` turns that into one line naming the
reason (a read-only mount, a file or directory it may not write) and what still works.
"""

from __future__ import annotations

import os
from pathlib import Path

from ultrathink.errors import PersistenceError


def read_only_reason(path: Path) -> str | None:
    """Why ``path`` (a store file, existing or to be created) cannot be written, or None.

    A read-only filesystem (``statvfs`` ``ST_RDONLY``: a read-only mount), or a file or
    directory this process may not write (``os.access``: modes for a user, the immutable
    attribute for root too). The directory matters as much as the file: SQLite writes its
    ``-wal`` and ``-shm`` files beside the store.
    """
    directory = path.parent
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return f"{directory} is on a read-only filesystem"
    except OSError:
        return None
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path.name} is not writable"
    if not os.access(directory, os.W_OK):
        return f"its directory {directory} is not writable"
    return None


def read_only_error(path: Path) -> PersistenceError | None:
    """The error for a store at ``path`` opened for writing where nothing may be written;
    None when its place is writable (the failure is something else)."""
    why = read_only_reason(path)
    if why is None:
        return None
    return PersistenceError(
        f"store {path} is read-only ({why}): nothing can run or resume on it; commands that "
        "only read it still work (runs, report, audit verify); make it writable, or copy it "
        "to a writable place"
    )
