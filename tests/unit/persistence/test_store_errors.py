"""What a failed store write says (``persistence/store.py``, ``persistence/writable.py``).

Real SQLite: ``PRAGMA max_page_count`` makes a write fail with SQLITE_FULL, after which
SQLite has rolled the transaction back itself; a read-only store is a read-only bind mount
(root) or a directory without write bits (anyone else).
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from ultrathink.errors import PersistenceError
from ultrathink.persistence import Store, verify_audit
from ultrathink.stress.chaos import ultrathink_command
from ultrathink.stress.child import readonly_view
from ultrathink.stress.invariants import TRACEBACK

BIG = {"blob": "x" * 400_000}  # ~100 pages of run parameters


def nearly_full(db_path: Path, new_run) -> Store:
    """A store with one run whose file may grow by two pages at most."""
    new_run(db_path)
    store = Store(db_path)
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages + 2}")
    return store


def test_a_write_sqlite_rolled_back_itself_reports_its_own_error(db_path: Path, new_run) -> None:
    store = nearly_full(db_path, new_run)

    with pytest.raises(PersistenceError) as info:
        store.create_run("backtest", "s", BIG, {}, "d", "h", "v", 2_000)

    assert str(info.value) == f"cannot write to {db_path}: database or disk is full"
    assert "cannot rollback" not in str(info.value)
    assert not store._conn.in_transaction
    store._conn.execute("PRAGMA max_page_count = 1000000")  # room again: the store goes on
    assert store.create_run("backtest", "s", BIG, {}, "d", "h", "v", 3_000) == 2
    store.close()
    assert verify_audit(db_path).ok


def test_any_error_inside_a_transaction_surfaces_past_a_rollback_that_cannot_run(
    db_path: Path, new_run
) -> None:
    store = nearly_full(db_path, new_run)

    with pytest.raises(KeyboardInterrupt, match="stop"), store._transaction("test"):
        try:
            store._conn.execute("INSERT INTO runs (kind, strategy, params_json, config_json,"
                                " data_name, data_hash, code_version, started_ns, status) "
                                "VALUES ('backtest', ?, '{}', '{}', 'd', 'h', 'v', 1, "
                                "'running')", ("x" * 400_000,))  # fmt: skip
        except sqlite3.OperationalError:  # SQLITE_FULL: SQLite ended the transaction
            assert not store._conn.in_transaction
            raise KeyboardInterrupt("stop") from None

    store.close()


@pytest.fixture
def read_only_store(tmp_path: Path, new_run):
    source = tmp_path / "source"
    db = source / "stress.db"
    new_run(db)
    try:
        with readonly_view(source, tmp_path / "view") as how:
            yield tmp_path / "view" / "stress.db", how
    except OSError as exc:
        pytest.skip(f"no way to make a directory read-only here: {exc}")


def test_opening_a_read_only_store_for_writing_says_so_in_one_line(read_only_store) -> None:
    db, how = read_only_store

    with pytest.raises(PersistenceError) as info:
        Store(db)

    message = str(info.value)
    assert message.startswith(f"store {db} is read-only (")
    if how == "a read-only bind mount":
        assert "is on a read-only filesystem)" in message
    assert "commands that only read it still work" in message and "\n" not in message
    with Store(db, readonly=True) as store:  # and it still reads
        assert [r.run_id for r in store.list_runs()] == [1]


def test_a_paper_session_on_a_read_only_store_prints_that_error(read_only_store) -> None:
    db, _how = read_only_store
    argv = [*ultrathink_command(), "paper", "--data", "synthetic:n_bars=50,seed=1",
            "--strategy", "sma_cross", "--db", str(db), "--speed", "max"]  # fmt: skip

    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)

    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and TRACEBACK not in proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: store {db} is read-only ("), proc.stderr
