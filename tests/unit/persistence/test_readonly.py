"""Read-only stores: a file or directory without write permission, or a WAL index that cannot
be created. Reading (listing runs, loading, verifying) works; writing is refused.

As root, ``chmod`` does not stop writes, so the tests that need the permission check itself
skip; the read-only code paths are exercised regardless: ``mode=ro`` by every test, and the
``immutable=1`` fallback through a ``-shm`` path that cannot be created even by root (a
symlink into a missing directory).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from ultrathink.errors import PersistenceError
from ultrathink.persistence import Store, StoreWriter, verify_audit
from ultrathink.persistence.db import connect, load_migrations, migrate, schema_version

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def finished(db_path: Path, new_run, order_batch) -> Path:
    """A store with one finished run of 5 filled orders; the writer closed (WAL merged)."""
    run_id = new_run(db_path)
    with StoreWriter(db_path) as writer:
        writer.put(order_batch(run_id, 0, 5))
    with Store(db_path) as store:
        store.finish_run(run_id, "completed", {"final_equity": 1.5}, 9_999)
    return db_path


@pytest.fixture
def read_only(finished: Path) -> Iterator[Path]:
    """The store with its file chmod 444 and its directory chmod 555 (restored afterwards)."""
    directory = finished.parent
    files = list(directory.iterdir())
    for path in files:
        path.chmod(0o444)
    directory.chmod(0o555)
    try:
        yield finished
    finally:
        directory.chmod(0o755)
        for path in directory.iterdir():
            path.chmod(0o644)


def _break_wal_index(db: Path) -> None:
    # A -shm path nobody can create, root included: SQLite cannot build the WAL index.
    shm = db.with_name(db.name + "-shm")
    shm.unlink(missing_ok=True)
    shm.symlink_to(db.parent / "missing-directory" / "shm")


def test_a_read_only_store_lists_loads_and_verifies(read_only: Path) -> None:
    with Store(read_only, readonly=True) as store:
        runs = store.list_runs()
        counts = store.order_status_counts(runs[0].run_id)
        head = store.audit_head()
    report = verify_audit(read_only)

    assert [(r.run_id, r.status) for r in runs] == [(1, "completed")]
    assert counts == {"FILLED": 5}
    assert (report.ok, report.problems) == (True, [])
    assert (report.last_seq, report.last_hash) == head


@pytest.mark.skipif(IS_ROOT, reason="root ignores file permissions: chmod cannot stop writes")
def test_a_writable_open_of_a_read_only_store_fails_and_the_read_only_one_creates_nothing(
    read_only: Path,
) -> None:
    before = sorted(p.name for p in read_only.parent.iterdir())

    with pytest.raises(PersistenceError, match=r"is read-only \(.* is not writable\)"):
        Store(read_only)
    with Store(read_only, readonly=True) as store:
        assert len(store.list_runs()) == 1

    assert sorted(p.name for p in read_only.parent.iterdir()) == before


def test_without_a_wal_index_the_store_is_read_as_immutable(finished: Path) -> None:
    _break_wal_index(finished)
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):  # what mode=ro meets
        uri = f"file:{finished}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True)) as plain:
            plain.execute("SELECT COUNT(*) FROM runs").fetchone()

    with Store(finished, readonly=True) as store:
        runs = store.list_runs()
    report = verify_audit(finished)

    assert [r.status for r in runs] == ["completed"]
    assert report.ok, report.problems


def test_the_immutable_fallback_refuses_a_log_that_was_not_checkpointed(
    db_path: Path, new_run, tmp_path: Path
) -> None:
    # A copy taken while a connection keeps committed transactions in the -wal file only.
    new_run(db_path)
    copy = tmp_path / "copy" / "u.db"
    copy.parent.mkdir()
    with closing(connect(db_path)) as conn:
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("UPDATE runs SET strategy = 'only-in-the-wal'")
        for suffix in ("", "-wal"):
            copy.with_name(copy.name + suffix).write_bytes(
                db_path.with_name(db_path.name + suffix).read_bytes()
            )
    _break_wal_index(copy)

    with pytest.raises(PersistenceError, match=r"u\.db-wal holds \d+ bytes") as info:
        Store(copy, readonly=True)
    with pytest.raises(PersistenceError, match="write-ahead log"):
        connect(copy, immutable=True)

    assert "\n" not in str(info.value)
    with Store(db_path, readonly=True) as store:  # with an index: the log is read
        assert store.get_run(1).strategy == "only-in-the-wal"


def test_a_read_only_store_refuses_writes(finished: Path) -> None:
    with Store(finished, readonly=True) as store:
        with pytest.raises(PersistenceError, match=r"open read-only; create_run needs write"):
            store.create_run("backtest", "s", {}, {}, "d", "h", "v", 0)
        with pytest.raises(PersistenceError, match=r"finish_run needs write access"):
            store.finish_run(1, "failed", {}, 1)
        with pytest.raises(PersistenceError, match=r"reopen_run needs write access"):
            store.reopen_run(1)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store._conn.execute("DELETE FROM runs")  # the connection itself is read-only

    assert verify_audit(finished).ok


def test_a_read_only_open_does_not_migrate(db_path: Path) -> None:
    with closing(connect(db_path)) as conn:
        migrate(conn, load_migrations()[:1])

    with Store(db_path, readonly=True) as store:
        assert store.list_runs() == []
    with closing(connect(db_path)) as conn:
        assert schema_version(conn) == 1


@pytest.mark.parametrize(
    ("setup", "match"),
    [("missing", "does not exist"), ("directory", "is a directory"),
     ("garbage", "not a usable SQLite database"), ("no-schema", "has no ultrathink schema")],
)  # fmt: skip
def test_a_read_only_open_of_a_non_store_is_a_clean_error(
    tmp_path: Path, setup: str, match: str
) -> None:
    path = tmp_path / "u.db"
    if setup == "directory":
        path.mkdir()
    elif setup == "garbage":
        path.write_bytes(b"not a database\n" * 500)
    elif setup == "no-schema":
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("CREATE TABLE t (x)")

    with pytest.raises(PersistenceError, match=match) as info:
        Store(path, readonly=True)

    assert "\n" not in str(info.value)
    assert not (tmp_path / "u.db-wal").exists()


def test_a_damaged_store_read_through_the_api_is_a_clean_error(finished: Path) -> None:
    with closing(sqlite3.connect(finished)) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        [(root,)] = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'fills'")
    with finished.open("r+b") as f:  # the fills table's root page, nothing else
        f.seek((root - 1) * page_size)
        f.write(b"\x07" * page_size)

    with Store(finished, readonly=True) as store:
        runs = store.list_runs()
        with pytest.raises(PersistenceError, match=r"cannot read .*\.db: .*damaged") as info:
            store.load_fills(1)

    assert len(runs) == 1
    assert "\n" not in str(info.value)


def test_a_path_with_uri_characters_opens_read_only(tmp_path: Path, new_run) -> None:
    db = tmp_path / "a b#c?d%20e" / "u.db"
    new_run(db)

    with Store(db, readonly=True) as store:
        assert [r.run_id for r in store.list_runs()] == [1]
    assert verify_audit(db).ok
