"""Where a paper session keeps its files, and the OS lock that makes it one process per run.

Every paper run of a store has a session directory next to the store::

    <db directory>/<db file name>.sessions/run-<id>/
        lock           held (flock) by the one live process of the run; released when it dies
        venue.sqlite   the paper venue's journal (execution/journal.py)
        inputs.jsonl   the session's input log (engine/inputs.py)
        control.json   url + token of the control endpoint while it serves (mode 0600)
        feed.ndjson    a feed session's bars, as received
        stale-<time>/  a deleted store's files found by a new run of the same id (moved aside)

The lock is an advisory ``flock`` on ``lock``: the kernel releases it when the process
exits, however it exits (``kill -9`` included), so a crashed run can be resumed at once and a
live one can never be resumed, or attached to, twice. This module imports only the standard
library: ``ultrathink ctl`` uses it to find live sessions.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from ultrathink.errors import ConfigError

LOCK_NAME = "lock"
VENUE_JOURNAL_NAME = "venue.sqlite"
INPUTS_NAME = "inputs.jsonl"
CONTROL_FILE_NAME = "control.json"
#: a live feed session's bars, as received (``engine/feed_bars.py``)
FEED_JOURNAL_NAME = "feed.ndjson"
#: Session directories of paper sessions that are not stored: ``nostore-<pid>``.
NOSTORE_PREFIX = "nostore-"


def sessions_root(db_path: Path) -> Path:
    """The directory holding every session directory of the store at ``db_path``."""
    return db_path.parent / f"{db_path.name}.sessions"


def session_dir(db_path: Path, run_id: int) -> Path:
    """The session directory of run ``run_id`` of the store at ``db_path``."""
    return sessions_root(db_path) / f"run-{run_id}"


#: what a session writes; found in the directory of a run the store has just created, they
#: belong to a store that was deleted (run ids start again at 1)
SESSION_FILES = (VENUE_JOURNAL_NAME, INPUTS_NAME, FEED_JOURNAL_NAME)


def archive_stale(directory: Path, stamp: str) -> Path | None:
    """Move a new run's leftover session files into ``directory/stale-<stamp>/``.

    A store deleted without its ``.sessions`` directory leaves ``run-1/`` ... behind, and the
    next store's run 1 would find another store's venue journal. The files are kept, not
    deleted: returns where they went (None when there were none). Call it with the run's
    lock held.
    """
    # with their SQLite sidecars (venue.sqlite-wal, -shm): an old WAL next to a new journal
    # would be replayed into it
    found = sorted(p for name in SESSION_FILES for p in directory.glob(name + "*"))
    if not found:
        return None
    target = directory / f"stale-{stamp}"
    n = 1
    try:
        while True:
            try:
                target.mkdir()
                break
            except FileExistsError:
                n += 1
                target = directory / f"stale-{stamp}-{n}"
        for path in found:
            path.rename(target / path.name)
    except OSError as exc:
        raise ConfigError(
            f"{directory} holds another store's session files and they cannot be moved "
            f"aside ({exc}); move or delete them, then start the session again"
        ) from None
    return target


class RunLock:
    """The exclusive OS lock of one run's session (see the module docstring).

    Parameters
    ----------
    directory : Path
        The run's session directory (created if missing).
    run_id : int or None
        For messages (None: a session that is not stored).
    """

    def __init__(self, directory: Path, run_id: int | None) -> None:
        self.path = directory / LOCK_NAME
        self.run_id = run_id
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock now, or raise ``ConfigError`` naming the process that holds it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot create the session lock {self.path}: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"process {holder}" if holder else "another process"
            what = f"run {self.run_id}" if self.run_id is not None else "this session"
            raise ConfigError(
                f"{what} is live in {who} (lock {self.path}): one process per run; "
                "stop that session first (`ultrathink ctl halt`, then Ctrl-C), or wait for it "
                "to end"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Release the lock (idempotent); the process exiting releases it too."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def is_live(directory: Path) -> bool:
    """True when a process holds the lock of the session in ``directory``."""
    path = directory / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class LiveSession(NamedTuple):
    """A live session of a store, as its control file describes it (run id None: the
    session is not stored)."""

    run_id: int | None
    directory: Path
    control_file: Path
    content: dict[str, Any]


def live_sessions(db_path: Path) -> list[LiveSession]:
    """Sessions of the store whose process is alive and whose control endpoint serves."""
    root = sessions_root(db_path)
    out = []
    for directory in sorted(root.iterdir()) if root.is_dir() else ():
        name = directory.name
        run_id = int(name[4:]) if name.startswith("run-") and name[4:].isdigit() else None
        if run_id is None and not name.startswith(NOSTORE_PREFIX):
            continue
        control = directory / CONTROL_FILE_NAME
        if not control.is_file() or not is_live(directory):
            continue
        try:
            content = json.loads(control.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(content, dict):
            out.append(LiveSession(run_id, directory, control, content))
    return sorted(out, key=lambda s: (s.run_id is None, s.run_id or 0, s.directory.name))


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return ""
