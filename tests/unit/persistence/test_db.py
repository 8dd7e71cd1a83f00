"""Connections and migrations."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from ultrathink.errors import PersistenceError
from ultrathink.persistence import Store, verify_audit
from ultrathink.persistence.db import (
    Migration,
    connect,
    insert_many,
    load_migrations,
    migrate,
    schema_version,
    split_statements,
)

TABLES = {
    "runs", "orders", "fills", "positions", "equity_chunks", "audit_log", "audit_head",
    "audit_legacy", "schema_version", "sweeps", "sweep_points",
}  # fmt: skip


def _objects(conn: sqlite3.Connection, kind: str) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = ?", (kind,)).fetchall()
    return {name for (name,) in rows}


def test_connect_creates_the_directory_and_sets_the_pragmas(db_path: Path) -> None:
    with closing(connect(db_path)) as conn:
        pragmas = [
            conn.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        ]

    assert db_path.is_file()
    assert pragmas == ["wal", 1, 1, 5000]  # synchronous 1 = NORMAL


def test_connect_without_create_refuses_a_missing_file(db_path: Path) -> None:
    with pytest.raises(PersistenceError, match=r"does not exist"):
        connect(db_path, create=False)
    assert not db_path.exists()


def test_migrate_creates_the_schema_and_is_idempotent(db_path: Path) -> None:
    with closing(connect(db_path)) as conn:
        first = migrate(conn)
        second = migrate(conn)
        tables = _objects(conn, "table")
        views = _objects(conn, "view")
        triggers = _objects(conn, "trigger")
        versions = conn.execute("SELECT version, name FROM schema_version").fetchall()

    assert first == second == len(load_migrations()) == 3
    assert tables >= TABLES
    assert views == {"order_events"}
    assert {"audit_log_no_update", "audit_log_no_delete", "audit_legacy_no_update"} <= triggers
    assert versions == [(1, "initial"), (2, "economic_audit"), (3, "sweeps")]


def test_migration_2_records_the_runs_that_predate_the_economic_audit(db_path: Path) -> None:
    with closing(connect(db_path)) as conn:
        migrate(conn, load_migrations()[:1])
        for _ in range(3):
            conn.execute(
                "INSERT INTO runs (kind, strategy, params_json, config_json, data_name, "
                "data_hash, code_version, started_ns, status) "
                "VALUES ('backtest', 's', '{}', '{}', 'd', 'h', 'v', 0, 'completed')"
            )
        migrate(conn)
        [(max_run_id,)] = conn.execute("SELECT max_run_id FROM audit_legacy").fetchall()
        with pytest.raises(sqlite3.IntegrityError, match="written once by migration 2"):
            conn.execute("UPDATE audit_legacy SET max_run_id = 99")

    assert max_run_id == 3


def test_store_reopens_a_migrated_database(db_path: Path) -> None:
    Store(db_path).close()
    with Store(db_path) as store:
        assert store.list_runs() == []


def test_a_database_newer_than_the_code_is_refused(db_path: Path) -> None:
    with closing(connect(db_path)) as conn:
        migrate(conn)
        conn.execute("INSERT INTO schema_version (version, name) VALUES (4, 'future')")

    with pytest.raises(PersistenceError) as info:
        Store(db_path)
    with pytest.raises(PersistenceError, match="schema version 4"):
        Store(db_path, readonly=True)

    message = str(info.value)
    assert str(db_path) in message
    assert "schema version 4" in message
    assert "knows versions up to 3" in message
    assert "upgrade ultrathink" in message


def test_a_failing_migration_leaves_nothing_behind(db_path: Path) -> None:
    broken = [
        *load_migrations(),
        Migration(4, "broken", "CREATE TABLE extra (x INTEGER);\nCREATE TABLE runs (y);\n"),
    ]
    with closing(connect(db_path)) as conn:
        with pytest.raises(PersistenceError, match=r"cannot migrate .*already exists"):
            migrate(conn, broken)
        assert schema_version(conn) == 3
        assert "extra" not in _objects(conn, "table")
        assert not conn.in_transaction


@pytest.mark.parametrize("opener", [Store, verify_audit, connect], ids=lambda f: f.__name__)
def test_a_file_that_is_not_sqlite_is_a_clean_error(tmp_path: Path, opener) -> None:
    bogus = tmp_path / "notes.db"
    bogus.write_bytes(b"definitely not a database\n" * 200)

    with pytest.raises(PersistenceError) as info:
        opener(bogus)

    assert str(bogus) in str(info.value)
    assert "not a usable SQLite database" in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


def test_split_statements_keeps_triggers_whole() -> None:
    script = """
    -- a comment; with a semicolon
    CREATE TABLE t (x);
    CREATE TRIGGER t_no_delete BEFORE DELETE ON t
    BEGIN
        SELECT RAISE(ABORT, 'no; never');
    END;
    -- trailing comment
    """

    statements = list(split_statements(script))

    assert len(statements) == 2
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")


def test_split_statements_rejects_an_unterminated_statement() -> None:
    with pytest.raises(PersistenceError, match="incomplete SQL statement"):
        list(split_statements("CREATE TABLE t (x);\nCREATE TABLE u (y)"))


@pytest.mark.parametrize("n_rows", [0, 1, 99, 100, 101, 350])
def test_insert_many_inserts_every_row_in_order(db_path: Path, n_rows: int) -> None:
    rows = [(i, f"r{i}", i / 3) for i in range(n_rows)]
    with closing(connect(db_path)) as conn:
        conn.execute("CREATE TABLE t (a INTEGER, b TEXT, c REAL)")
        insert_many(conn, "INSERT INTO t (a, b, c)", 3, rows)
        stored = conn.execute("SELECT a, b, c FROM t ORDER BY rowid").fetchall()

    assert stored == rows
