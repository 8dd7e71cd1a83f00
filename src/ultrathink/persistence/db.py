"""SQLite connections and schema migrations.

Every connection is opened in WAL mode (readers never block the writer and vice versa),
``synchronous=NORMAL`` (a commit does not fsync; a power loss can lose the last
transactions but never corrupts the file), foreign keys on and a 5 s busy timeout.
Connections run in autocommit mode (``isolation_level=None``): every transaction is an
explicit ``BEGIN IMMEDIATE`` ... ``COMMIT`` so that it takes the write lock up front.

Migrations are the numbered ``migrations/NNNN_name.sql`` files shipped with the package,
applied in order, each in its own transaction together with its ``schema_version`` row.

Read-only connections (``connect(path, readonly=True)``) serve readers of a store they may
not write: a file without write permission, a directory without it, read-only media. They
open the file through a ``file:...?mode=ro`` URI, never migrate, and refuse writes. A WAL
database needs its ``-shm`` index even to be read; when SQLite cannot create it (a read-only
directory without a ``-shm`` file), the connection falls back to ``immutable=1``. The
trade-off: an immutable connection takes no locks and ignores the ``-wal``/``-shm`` files, so
it sees only what has been checkpointed into the main file, and a process writing the file
meanwhile can make it read stale or torn pages. The fallback is therefore refused when a
non-empty ``-wal`` file exists (committed transactions the main file does not hold yet); it
is safe for a store nobody can write, which is what a read-only directory gives.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from importlib import resources
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple, ParamSpec, TypeVar

from ultrathink.errors import PersistenceError

BUSY_TIMEOUT_MS = 5000
# 16 KiB pages: about 15% faster appends than 4 KiB (measured); only affects new files.
PAGE_SIZE_BYTES = 16384
# Rows per multi-row INSERT: one statement run per 100 rows instead of per row cuts the
# SQLite time of bulk inserts by ~30% (measured); capped by the bound-variable limit.
ROWS_PER_INSERT = 100
_MAX_VARIABLES = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999

Row = tuple[Any, ...]

_MIGRATION_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")


class Migration(NamedTuple):
    """One schema migration: its version number, name and SQL script."""

    version: int
    name: str
    sql: str


def connect(
    path: str | Path, *, create: bool = True, readonly: bool = False, immutable: bool = False
) -> sqlite3.Connection:
    """Open a SQLite database with the store's settings.

    Parameters
    ----------
    path : str or Path
        Database file; its parent directory is created when ``create`` is true.
    create : bool
        When false, a missing file is an error instead of a new empty database.
    readonly : bool
        Open read-only (``mode=ro``; implies ``create=False``): nothing is created or
        migrated, writes fail. Falls back to ``immutable=1`` when the WAL index cannot be
        created (see the module docstring for the trade-off).
    immutable : bool
        Open read-only with ``immutable=1`` straight away: for files nothing can change
        (read-only media, a copy). Refused when a non-empty ``-wal`` file exists.

    Returns
    -------
    sqlite3.Connection
        An autocommit connection (in WAL mode unless read-only), owned by the calling thread.

    Raises
    ------
    PersistenceError
        If the file cannot be opened or is not a SQLite database.
    """
    path = Path(path)
    if readonly or immutable:
        return _connect_readonly(path, immutable=immutable)
    if not create:
        _require_file(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise PersistenceError(f"cannot open database {path}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE_BYTES}")
        conn.execute("PRAGMA journal_mode = WAL").fetchone()
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise _unusable(path, exc) from exc
    return conn


# Errors of a read-only open that mean "the WAL index (-shm) cannot be created or used".
_NO_WAL_INDEX = frozenset(
    {"SQLITE_CANTOPEN", "SQLITE_READONLY_DIRECTORY", "SQLITE_READONLY_CANTINIT",
     "SQLITE_READONLY_CANTLOCK", "SQLITE_READONLY_RECOVERY"}
)  # fmt: skip


def _connect_readonly(path: Path, *, immutable: bool) -> sqlite3.Connection:
    _require_file(path)
    if not immutable:
        conn = _open_uri(path, "mode=ro")
        try:
            return _probe(conn)
        except sqlite3.OperationalError as exc:
            conn.close()
            if getattr(exc, "sqlite_errorname", "") not in _NO_WAL_INDEX:
                raise _unusable(path, exc) from exc
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise _unusable(path, exc) from exc
    _refuse_pending_wal(path)
    conn = _open_uri(path, "mode=ro&immutable=1")
    try:
        return _probe(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise _unusable(path, exc) from exc


def _open_uri(path: Path, query: str) -> sqlite3.Connection:
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?{query}"
    try:
        return sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise PersistenceError(f"cannot open database {path} read-only: {exc}") from exc


def _probe(conn: sqlite3.Connection) -> sqlite3.Connection:
    # The first read opens the WAL index and checks the header: errors surface here.
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA query_only = ON")
    conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    return conn


def _refuse_pending_wal(path: Path) -> None:
    wal = path.with_name(path.name + "-wal")
    try:
        n_bytes = wal.stat().st_size
    except OSError:
        return
    if n_bytes:
        raise PersistenceError(
            f"cannot read {path} read-only: its write-ahead log {wal.name} holds {n_bytes} "
            "bytes the main file may not have yet, and SQLite cannot create the log's index "
            f"({path.name}-shm) in {path.parent}; let a process with write access open the "
            "store once (it checkpoints the log), or copy the files to a writable directory"
        )


def _require_file(path: Path) -> None:
    if path.is_dir():
        raise PersistenceError(f"database {path} is a directory, not a file; check the --db path")
    if not path.is_file():
        raise PersistenceError(f"database {path} does not exist; check the --db path")


def _unusable(path: Path, exc: sqlite3.Error) -> PersistenceError:
    return PersistenceError(
        f"{path} is not a usable SQLite database ({exc}); "
        "move it away or choose another database path"
    )


_P = ParamSpec("_P")
_R = TypeVar("_R")


def read_errors(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorate a reading method of an object with a ``path``: SQLite errors of a damaged
    or foreign file become a one-line ``PersistenceError`` naming it, never a traceback.

    ``sqlite3.ProgrammingError`` (e.g. a closed connection: a bug of the caller) passes.
    """

    @functools.wraps(method)
    def read(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except sqlite3.ProgrammingError:
            raise
        except sqlite3.DatabaseError as exc:
            path = getattr(args[0], "path", "the store")
            raise PersistenceError(
                f"cannot read {path}: {exc}; the file is damaged or not an ultrathink store: "
                "restore it from a backup, or check the --db path"
            ) from exc

    return read


def insert_many(conn: sqlite3.Connection, head: str, n_cols: int, rows: Sequence[Row]) -> None:
    """Insert ``rows`` with ``head`` (``"INSERT INTO t (a, b)"``), many rows per statement.

    Multi-row ``VALUES`` lists cost SQLite one statement run per ``ROWS_PER_INSERT`` rows
    instead of one per row.
    """
    k = min(ROWS_PER_INSERT, _MAX_VARIABLES // n_cols)
    n_full = len(rows) - len(rows) % k
    if n_full:
        flat = chain.from_iterable
        conn.executemany(
            _values_sql(head, n_cols, k),
            [tuple(flat(rows[i : i + k])) for i in range(0, n_full, k)],
        )
    if n_full < len(rows):
        conn.executemany(_values_sql(head, n_cols, 1), rows[n_full:])


@lru_cache(maxsize=64)
def _values_sql(head: str, n_cols: int, n_rows: int) -> str:
    one = "(" + ", ".join(["?"] * n_cols) + ")"
    return f"{head} VALUES " + ", ".join([one] * n_rows)


def database_path(conn: sqlite3.Connection) -> str:
    """Return the file name of the connection's main database (for error messages)."""
    row = conn.execute("PRAGMA database_list").fetchone()
    return str(row[2]) if row is not None and row[2] else ":memory:"


def load_migrations() -> list[Migration]:
    """Return the packaged migrations ordered by version (1, 2, ... without gaps)."""
    migrations = []
    for entry in resources.files("ultrathink.persistence").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match is not None:
            sql = entry.read_text(encoding="utf-8")
            migrations.append(Migration(int(match.group(1)), match.group(2), sql))
    migrations.sort()
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise PersistenceError(f"migration versions must be 1..N without gaps, were {versions}")
    return migrations


def schema_version(conn: sqlite3.Connection) -> int:
    """Return the schema version of the database (0 for a new, empty database)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(conn: sqlite3.Connection, migrations: list[Migration] | None = None) -> int:
    """Apply the pending migrations, each in its own transaction; idempotent.

    Parameters
    ----------
    conn : sqlite3.Connection
        A connection from :func:`connect`.
    migrations : list of Migration, optional
        The migrations to apply; default: the packaged ones.

    Returns
    -------
    int
        The schema version after migrating.

    Raises
    ------
    PersistenceError
        If the database is newer than this code, or a migration fails.
    """
    migrations = load_migrations() if migrations is None else migrations
    known = migrations[-1].version if migrations else 0
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL)"
        )
        for migration in migrations:
            _apply(conn, migration, known)
        return _check_version(conn, known)
    except sqlite3.Error as exc:
        raise PersistenceError(f"cannot migrate database {database_path(conn)}: {exc}") from exc


def require_schema(conn: sqlite3.Connection) -> int:
    """Check, without migrating, that the database is a store this code can read.

    Returns
    -------
    int
        The schema version (1 .. the newest packaged migration).

    Raises
    ------
    PersistenceError
        If the database has no ultrathink schema, or a schema newer than this code.
    """
    try:
        current = _check_version(conn, len(load_migrations()))
    except sqlite3.DatabaseError as exc:
        raise _unusable(Path(database_path(conn)), exc) from exc
    if current == 0:
        raise PersistenceError(
            f"database {database_path(conn)} has no ultrathink schema; check the --db path, "
            "or open it writable once to create the schema"
        )
    return current


def _apply(conn: sqlite3.Connection, migration: Migration, known: int) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Re-read inside the write lock: another process may have migrated meanwhile.
        current = _check_version(conn, known)
        if migration.version > current:
            for statement in split_statements(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, name) VALUES (?, ?)",
                (migration.version, migration.name),
            )
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _check_version(conn: sqlite3.Connection, known: int) -> int:
    current = schema_version(conn)
    if current > known:
        raise PersistenceError(
            f"database {database_path(conn)} has schema version {current}, but this version "
            f"of ultrathink knows versions up to {known}; upgrade ultrathink or use another "
            "database path"
        )
    return current


def split_statements(script: str) -> Iterator[str]:
    """Yield the complete SQL statements of ``script`` (triggers stay whole)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            buffer = ""
            if _has_code(statement):
                yield statement
    if _has_code(buffer):
        raise PersistenceError(f"incomplete SQL statement in migration: {buffer.strip()[:80]}")


def _has_code(sql: str) -> bool:
    lines = (line.split("--", 1)[0].strip() for line in sql.splitlines())
    return any(line and line != ";" for line in lines)
