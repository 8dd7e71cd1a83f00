"""The invariant checker on a real paper run, and on tampered copies of its files."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from ultrathink.data import load_data
from ultrathink.stress.inproc import paper_config, paper_run
from ultrathink.stress.invariants import (
    check_any_instant,
    check_process,
    check_run,
    read_rows,
    state_digest,
    venue_diff,
)
from ultrathink.stress.outcome import Invariant
from ultrathink.stress.storage_cases import clear_error
from ultrathink.stress.strategies import Flipper

NAMES = [
    "orders_terminal",
    "orders_match_venue",
    "fills_match_venue",
    "cash_positions_equity",
    "audit_chain",
]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One unpaced paper session of the Flipper on 120 bars: its store."""
    db = tmp_path_factory.mktemp("run") / "stress.db"
    run = paper_run(
        Flipper(every=2, qty=10), load_data("synthetic:n_bars=120,seed=4"), paper_config({}), db
    )
    assert run.error is None and run.run_id == 1
    return db


def tampered(real_run: Path, tmp_path: Path, sql: Callable[[sqlite3.Connection], None]) -> Path:
    """A copy of the run's directory whose store ``sql`` changed."""
    copy = tmp_path / "copy"
    shutil.copytree(real_run.parent, copy)
    db = copy / real_run.name
    conn = sqlite3.connect(db)
    with conn:
        sql(conn)
    conn.close()
    return db


def by_name(invariants: list[Invariant]) -> dict[str, Invariant]:
    return {i.name: i for i in invariants}


def first(conn: sqlite3.Connection, sql: str) -> str:
    return str(conn.execute(sql).fetchone()[0])


def test_a_real_run_passes_every_invariant(real_run: Path) -> None:
    found = by_name(check_run(real_run))

    assert list(found) == NAMES
    assert all(i.ok for i in found.values()), found
    assert "none lost or duplicated" in found["fills_match_venue"].detail
    assert check_any_instant(real_run) == []
    diff = venue_diff(real_run)
    assert diff.n_orders == diff.n_venue_orders > 20 and diff.n_fills == diff.n_venue_fills
    assert not (diff.lost_orders or diff.lost_fills or diff.duplicated_fills)


def test_a_deleted_fill_is_lost(real_run: Path, tmp_path: Path) -> None:
    gone: list[str] = []

    def delete(conn: sqlite3.Connection) -> None:
        gone.append(first(conn, "SELECT fill_id FROM fills ORDER BY ts_ns LIMIT 1"))
        conn.execute("DELETE FROM fills WHERE fill_id = ?", gone)

    found = by_name(check_run(tampered(real_run, tmp_path, delete)))

    assert not found["fills_match_venue"].ok
    assert f"fill {gone[0]} executed at the venue is lost" in found["fills_match_venue"].detail
    assert not found["audit_chain"].ok  # the fill's audit row has no fill now


def test_a_duplicated_fill_is_found(real_run: Path, tmp_path: Path) -> None:
    copied: list[str] = []

    def duplicate(conn: sqlite3.Connection) -> None:
        copied.append(first(conn, "SELECT fill_id FROM fills ORDER BY ts_ns LIMIT 1"))
        conn.execute(
            "INSERT INTO fills SELECT run_id, fill_id || '-dup', client_order_id, ts_ns, symbol, "
            "side, quantity, price, fee, slippage_bps FROM fills WHERE fill_id = ?",
            copied,
        )

    db = tampered(real_run, tmp_path, duplicate)
    found = by_name(check_run(db))

    detail = found["fills_match_venue"].detail
    assert not found["fills_match_venue"].ok
    assert f"fill {copied[0]}-dup is stored but was never executed" in detail
    assert "fills on the bar at" in detail
    assert not found["cash_positions_equity"].ok  # the duplicate moved cash that never moved
    assert venue_diff(db).duplicated_fills


def test_an_order_left_working_is_not_terminal(real_run: Path, tmp_path: Path) -> None:
    reopened: list[str] = []

    def reopen(conn: sqlite3.Connection) -> None:
        reopened.append(first(conn, "SELECT client_order_id FROM orders WHERE status = 'FILLED'"))
        conn.execute("UPDATE orders SET status = 'ACCEPTED' WHERE client_order_id = ?", reopened)

    found = by_name(check_run(tampered(real_run, tmp_path, reopen)))

    assert not found["orders_terminal"].ok
    assert f"{reopened[0]} is ACCEPTED in the store, not working at the venue" in (
        found["orders_terminal"].detail
    )
    assert f"{reopened[0]}: store ACCEPTED" in found["orders_match_venue"].detail


def test_an_edited_audit_row_breaks_the_chain(real_run: Path, tmp_path: Path) -> None:
    def edit(conn: sqlite3.Connection) -> None:
        # the log is append-only through triggers: whoever edits it drops them first
        triggers = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'"
        ).fetchall()
        for (name,) in triggers:
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute("UPDATE audit_log SET detail = 'edited' WHERE seq = 5")

    found = by_name(check_run(tampered(real_run, tmp_path, edit)))

    assert not found["audit_chain"].ok
    assert "seq 5: hash does not match the row's content" in found["audit_chain"].detail
    assert all(found[n].ok for n in NAMES if n != "audit_chain")


def test_the_state_digest_changes_with_the_records(real_run: Path, tmp_path: Path) -> None:
    def nudge(conn: sqlite3.Connection) -> None:
        fill_id = first(conn, "SELECT fill_id FROM fills LIMIT 1")
        conn.execute("UPDATE fills SET fee = fee + 1e-6 WHERE fill_id = ?", (fill_id,))

    assert state_digest(real_run) == state_digest(real_run)
    assert state_digest(tampered(real_run, tmp_path, nudge)) != state_digest(real_run)


def test_a_store_ahead_of_the_venue_is_caught_at_any_instant(
    real_run: Path, tmp_path: Path
) -> None:
    def invent(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO fills SELECT run_id, 'X-F1', client_order_id, ts_ns, symbol, side, "
            "quantity, price, fee, slippage_bps FROM fills LIMIT 1"
        )

    problems = check_any_instant(tampered(real_run, tmp_path, invent))

    assert problems == ["the store has a fill the venue never executed"]


def test_read_rows_of_a_missing_file_or_table_is_empty(tmp_path: Path) -> None:
    assert read_rows(tmp_path / "none.db", "SELECT 1") == []
    sqlite3.connect(tmp_path / "empty.db").close()
    assert read_rows(tmp_path / "empty.db", "SELECT * FROM orders") == []


@pytest.mark.parametrize(
    ("code", "stderr", "ok", "detail"),
    [
        (0, "paper: run 1\n", True, "exited 0, no traceback"),
        (2, "error: bad\n", False, "exited 2, expected (0,): error: bad"),
        (1, "Traceback (most recent call last):\n  x\nMemoryError\n", False, "traceback: Memory"),
        (None, "", False, "did not end"),
    ],
)
def test_check_process(code: int | None, stderr: str, ok: bool, detail: str) -> None:
    found = check_process(code, stderr)

    assert found.name == "no_crash" and found.ok is ok and detail in found.detail


@pytest.mark.parametrize(
    ("code", "stderr", "ok"),
    [
        (2, "paper: run 1\nerror: the disk is full\n", True),
        (1, "error: the disk is full\n", False),
        (2, "error: a\nerror: b\n", False),
        (2, "Traceback (most recent call last):\nerror: x\n", False),
        (2, "error: x\nmore after it\n", False),
    ],
)
def test_a_clear_error_is_one_last_error_line_and_exit_2(code: int, stderr: str, ok: bool) -> None:
    assert clear_error(code, stderr)[0] is ok
