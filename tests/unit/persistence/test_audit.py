"""The hash-chained audit log: verification and tamper detection."""

from __future__ import annotations

import itertools
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from ultrathink.errors import AuditError, ConfigError, PersistenceError
from ultrathink.persistence import StoreWriter, WriteBatch, verify_audit
from ultrathink.persistence import audit as audit_module
from ultrathink.persistence.audit import GENESIS_HASH, append_audit, canonical, row_hash
from ultrathink.persistence.db import connect, migrate

# 2 runs created, 1 extra row, 20 filled orders (approval, ACCEPTED, fill, FILLED) and
# 10 accepted only (approval, ACCEPTED).
N_ROWS = 2 + 1 + 4 * 20 + 2 * 10
# Batch rows are in time order: order i of run 1's first batch has its approval at seq
# 4 + 4i, ACCEPTED at 5 + 4i, its fill at 6 + 4i and FILLED at 7 + 4i.
APPROVAL_9, FILL_6, EXTRA = 40, 30, 3


@pytest.fixture
def chain(db_path: Path, new_run, order_batch) -> Path:
    """A store whose audit chain spans several batches of two runs."""
    run_a, run_b = new_run(db_path), new_run(db_path, kind="paper")
    with StoreWriter(db_path) as writer:
        writer.put(WriteBatch(run_a, audit_extra=[(1, "run.started", "a")]))
        writer.put(order_batch(run_a, 0, 10))
        writer.put(order_batch(run_b, 0, 10, filled=False))
        writer.put(order_batch(run_a, 10, 10))
    return db_path


def _fields(db: Path, raw_sql, seq: int) -> tuple:
    [row] = raw_sql(db, f"SELECT * FROM audit_log WHERE seq = {seq}")
    return row


def test_a_clean_chain_verifies(chain: Path, raw_sql) -> None:
    report = verify_audit(chain)

    [(head_seq, head_hash)] = raw_sql(chain, "SELECT seq, hash FROM audit_head")
    assert (report.ok, report.n_rows, report.problems) == (True, N_ROWS, [])
    assert (report.last_seq, report.last_hash) == (head_seq, head_hash) == (N_ROWS, head_hash)
    assert len(report.last_hash) == 64


def test_the_chain_links_each_row_to_the_previous_one(chain: Path, raw_sql) -> None:
    rows = raw_sql(chain, "SELECT * FROM audit_log ORDER BY seq LIMIT 3")

    assert rows[0][10] == GENESIS_HASH
    for previous, row in itertools.pairwise(rows):
        assert row[10] == previous[11]
    for row in rows:
        assert row[11] == row_hash(row[10], row[:10])


def test_update_and_delete_are_rejected_by_triggers(chain: Path, raw_sql) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="append-only: UPDATE"):
        raw_sql(chain, "UPDATE audit_log SET detail = 'x' WHERE seq = 2")
    with pytest.raises(sqlite3.IntegrityError, match="append-only: DELETE"):
        raw_sql(chain, "DELETE FROM audit_log WHERE seq = 2")
    with pytest.raises(sqlite3.IntegrityError, match="only move forward"):
        raw_sql(chain, "UPDATE audit_head SET seq = 1")
    assert verify_audit(chain).ok


EDITED = f"seq {APPROVAL_9}: hash does not match the row's content (row edited)"


@pytest.mark.parametrize(
    ("column", "value", "consequences"),
    [("quantity", "quantity + 1", []), ("status", "'FILLED'", []), ("detail", "'forged'", []),
     ("ts_ns", "ts_ns - 1", []),
     # the approval moves out of its order's rows: the order is left without one
     ("run_id", "NULL", ["run 1 order O-1-000000009: audited (seq 41) without a risk decision "
                         "(no risk.approved or risk.denied row)"])],
)  # fmt: skip
def test_an_edited_row_is_reported_with_its_seq(
    chain: Path, raw_sql, column, value, consequences
) -> None:
    raw_sql(
        chain,
        "DROP TRIGGER audit_log_no_update",
        f"UPDATE audit_log SET {column} = {value} WHERE seq = {APPROVAL_9}",
    )

    report = verify_audit(chain)

    # the edited row no longer vouches for anything: its mismatches with the tables are not
    # reported again
    assert not report.ok
    assert report.problems == [EDITED, *consequences]


def test_a_deleted_middle_row_is_reported(chain: Path, raw_sql) -> None:
    raw_sql(
        chain, "DROP TRIGGER audit_log_no_delete", f"DELETE FROM audit_log WHERE seq = {FILL_6}"
    )

    report = verify_audit(chain)

    assert report.problems == [
        "seq 31: gap after seq 29 (1 row(s) missing)",
        "seq 31: prev_hash does not link to the hash of seq 29 (row deleted, inserted or "
        "reordered)",
        "run 1 fill F-1-000000006 (order O-1-000000006): no fill audit row; the fill was "
        "inserted behind the audit's back, or its audit row was deleted",
    ]


def test_a_forged_row_in_place_of_a_deleted_one_is_reported(chain: Path, raw_sql) -> None:
    # The forger recomputes the forged row's own hash from its predecessor; the successor's
    # prev_hash still names the original row.
    original = _fields(chain, raw_sql, EXTRA)
    forged = (*original[:9], "forged detail")
    forged_row = (*forged, original[10], row_hash(original[10], forged))
    raw_sql(chain, "DROP TRIGGER audit_log_no_delete", f"DELETE FROM audit_log WHERE seq = {EXTRA}")
    raw_sql(chain, "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            params=forged_row)  # fmt: skip

    report = verify_audit(chain)

    assert report.problems == [
        "seq 4: prev_hash does not link to the hash of seq 3 (row deleted, inserted or reordered)"
    ]


def test_a_row_appended_behind_the_writers_back_is_reported(chain: Path, raw_sql) -> None:
    last = _fields(chain, raw_sql, N_ROWS)
    forged = (N_ROWS + 1, *last[1:9], "appended")
    raw_sql(chain, "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            params=(*forged, last[11], row_hash(last[11], forged)))  # fmt: skip

    report = verify_audit(chain)

    assert report.problems == [
        f"audit_head is at seq {N_ROWS} but the last row is seq {N_ROWS + 1}: rows were deleted "
        "from the end, or appended without moving the head",
        # the appended row is intact, so the order's last audited state is now its
        "run 1 order O-1-000000019: reason '' vs audited 'appended' (orders vs its last "
        f"audited state, seq {N_ROWS + 1} order.FILLED)",
    ]


def test_a_deleted_last_row_is_reported_through_the_head(chain: Path, raw_sql) -> None:
    raw_sql(
        chain, "DROP TRIGGER audit_log_no_delete", f"DELETE FROM audit_log WHERE seq = {N_ROWS}"
    )

    report = verify_audit(chain)

    assert not report.ok
    assert report.problems[0].startswith(
        f"audit_head is at seq {N_ROWS} but the last row is seq {N_ROWS - 1}"
    )


def test_reordered_rows_are_reported(chain: Path, raw_sql) -> None:
    # seq 20 and 21: order 4's approval and its ACCEPTED event
    raw_sql(
        chain,
        "DROP TRIGGER audit_log_no_update",
        "UPDATE audit_log SET seq = -1 WHERE seq = 20",
        "UPDATE audit_log SET seq = 20 WHERE seq = 21",
        "UPDATE audit_log SET seq = 21 WHERE seq = -1",
    )

    problems = verify_audit(chain).problems

    assert {p.split(":")[0] for p in problems} == {"seq 20", "seq 21", "seq 22"}
    assert "seq 20: hash does not match the row's content (row edited)" in problems


def _rewrite_chain(db: Path, raw_sql, edit) -> None:
    # What a forger with write access does: edit rows, re-hash the chain, move the head.
    rows = raw_sql(db, "SELECT * FROM audit_log ORDER BY seq")
    raw_sql(db, "DROP TRIGGER audit_log_no_delete", "DELETE FROM audit_log")
    prev = GENESIS_HASH
    for row in rows:
        fields = edit(row[:10])
        prev_hash, prev = prev, row_hash(prev, fields)
        raw_sql(db, "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params=(*fields, prev_hash, prev))  # fmt: skip
    raw_sql(db, "UPDATE audit_head SET hash = ?", params=(prev,))


def test_a_rewrite_of_the_whole_chain_and_head_is_the_documented_limit(
    chain: Path, raw_sql
) -> None:
    # Unanchored chains cannot catch a consistent rewrite: compare with a published head.
    published = verify_audit(chain).last_hash
    _rewrite_chain(chain, raw_sql, lambda f: (*f[:9], "rewritten") if f[3] == "run.started" else f)

    report = verify_audit(chain)
    anchored = verify_audit(chain, expect_head=published)

    assert report.ok
    assert report.last_hash != published
    assert anchored.problems == [
        f"expected head {published} is not in the chain: the log was rewritten or truncated "
        "since that hash was published, or it belongs to another store"
    ]


def test_a_rewrite_that_changes_the_economic_record_is_caught_by_the_tables(
    chain: Path, raw_sql
) -> None:
    # A rewritten chain verifies, but then it no longer says what the tables say.
    _rewrite_chain(chain, raw_sql, lambda f: (*f[:8], f[8] * 1.1, f[9]) if f[3] == "fill" else f)

    problems = verify_audit(chain).problems

    assert len(problems) == 20
    assert problems[0].startswith(
        "run 1 fill F-1-000000000 (order O-1-000000000): price 100.0 vs audited 110."
    )
    assert problems[0].endswith("(fills vs its fill audit row, seq 6)")


def test_text_containing_the_separator_cannot_shift_between_fields() -> None:
    honest = (1, 2, 3, "order.FILLED", "A\x1fB", "SPX", None, 1.0, None, "")
    shifted = (1, 2, 3, "order.FILLED", "A", "B\x1fSPX", None, 1.0, None, "")

    assert canonical(honest) != canonical(shifted)
    assert canonical((1, 2)) == "1\x1f2"
    assert canonical(honest).startswith("E")


def test_awkward_values_are_hashed_as_sqlite_stores_them(db_path: Path) -> None:
    rows = [
        (1, None, "op.note", None, None, None, float("nan"), -0.0, "tab\x1fbed \\ text"),
        (2, None, "op.note", "id", "SPX", "X", 3, 1e300, None),  # int quantity: stored as REAL
        (3, None, "op.note", "id", "SPX", "X", float("inf"), 0.1 + 0.2, "ünïcode"),
    ]
    with closing(connect(db_path)) as conn:
        migrate(conn)
        conn.execute("BEGIN IMMEDIATE")
        head = append_audit(conn, rows)
        conn.execute("COMMIT")
        report = verify_audit(conn)

    assert report.ok, report.problems
    assert (report.last_seq, report.last_hash) == head


def test_a_missing_head_is_an_audit_error(chain: Path, raw_sql) -> None:
    raw_sql(chain, "DROP TRIGGER audit_head_no_delete", "DELETE FROM audit_head")

    report = verify_audit(chain)
    with closing(connect(chain)) as conn, pytest.raises(AuditError, match="audit_head is missing"):
        append_audit(conn, [(1, None, "x", None, None, None, None, None, None)])

    assert report.problems == [f"audit_head is missing but audit_log has {N_ROWS} rows"]


def test_the_problem_list_is_capped(chain: Path, raw_sql, monkeypatch) -> None:
    monkeypatch.setattr(audit_module, "MAX_PROBLEMS", 3)
    raw_sql(chain, "DROP TRIGGER audit_log_no_update", "UPDATE audit_log SET detail = 'x'")

    report = verify_audit(chain)

    assert len(report.problems) == 4
    assert report.problems[-1] == f"... and {N_ROWS - 3} more problems"


def test_two_writers_on_one_file_keep_one_chain(db_path: Path, new_run, order_batch) -> None:
    run_a, run_b = new_run(db_path), new_run(db_path)

    with StoreWriter(db_path) as first, StoreWriter(db_path) as second:
        for i in range(5):
            first.put(order_batch(run_a, 10 * i, 10))
            second.put(order_batch(run_b, 10 * i, 10))

    report = verify_audit(db_path)
    assert (report.ok, report.n_rows) == (True, 2 + 4 * 100)
    assert report.counts == {
        "runs": 2, "orders": 100, "fills": 100, "equity_chunks": 0, "positions": 0
    }  # fmt: skip


def test_verify_of_a_missing_file_does_not_create_it(tmp_path: Path) -> None:
    with pytest.raises(PersistenceError, match="does not exist"):
        verify_audit(tmp_path / "nope.db")
    assert not (tmp_path / "nope.db").exists()


def test_verify_of_a_database_without_audit_log_is_an_audit_error(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE t (x)")

    with pytest.raises(AuditError, match="no such table: audit_log"):
        verify_audit(other)


def test_the_head_can_be_checked_against_a_published_hash(chain: Path, raw_sql) -> None:
    [(seq_10, hash_10)] = raw_sql(chain, "SELECT seq, hash FROM audit_log WHERE seq = 10")
    head = verify_audit(chain).last_hash

    at_head = verify_audit(chain, expect_head=head.upper())
    earlier = verify_audit(chain, expect_head=hash_10)  # rows appended since are fine
    unknown = verify_audit(chain, expect_head="ab" * 32)

    assert (at_head.ok, at_head.anchor_seq) == (True, N_ROWS)
    assert (earlier.ok, earlier.anchor_seq) == (True, seq_10)
    assert (unknown.ok, unknown.anchor_seq) == (False, None)
    assert unknown.problems[0].startswith(f"expected head {'ab' * 32} is not in the chain")


@pytest.mark.parametrize("bad", ["", "xyz", "ab" * 31, "g" * 64])
def test_a_malformed_expected_head_is_a_config_error(chain: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match=r"expect_head must be the 64 hexadecimal digits"):
        verify_audit(chain, expect_head=bad)
