"""verify_audit cross-checks the tables against the audit rows: tampering with the economic
record (fills, orders, equity, positions, run summaries) is caught, and named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ultrathink.core.enums import DenyReason, OrderStatus, Side
from ultrathink.core.events import Fill, OrderDenied, OrderEvent, OrderRequest
from ultrathink.errors import AuditError, PersistenceError
from ultrathink.persistence import Store, StoreWriter, WriteBatch, verify_audit

SUMMARY = {
    "final_equity": 100_123.5, "total_return": 0.001235, "n_fills": 11, "n_trades": 5,
    "orders": {"CANCELLED": 1, "DENIED": 1, "FILLED": 10}, "metrics": {"sharpe": 1.5},
}  # fmt: skip


def _equity(first: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ts_ns = np.arange(first, first + n, dtype=np.int64) * 1000
    return ts_ns, 1e5 + np.arange(n) / 3, np.full(n, 5e4)


def _second_batch(run_id: int) -> WriteBatch:
    """A denied order D, and an order P filled 4 of 10 then cancelled; positions."""
    return WriteBatch(
        run_id,
        requests=[
            OrderRequest("D", 900_000, "SPX", Side.SELL, 3.0),
            OrderRequest("P", 900_001, "SPX", Side.BUY, 10.0),
        ],
        denials=[OrderDenied(900_000, "D", "SPX", DenyReason.MAX_POSITION, "limit 5, was 8")],
        approvals=["P"],
        events=[
            OrderEvent(900_002, "P", "SPX", OrderStatus.ACCEPTED, 0.0),
            OrderEvent(900_003, "P", "SPX", OrderStatus.PARTIALLY_FILLED, 4.0),
            OrderEvent(900_009, "P", "SPX", OrderStatus.CANCELLED, 4.0, "user"),
        ],
        fills=[Fill(900_003, "P", "F-P", "SPX", Side.BUY, 4.0, 101.25, 0.2, 1.5)],
        equity=_equity(900, 100),
        positions=[("SPX", 4.0, 101.25, 7.5, 101.0)],
    )


@pytest.fixture
def store_path(db_path: Path, new_run, order_batch) -> Path:
    """A finished run: 10 filled orders, a denied one, a partial fill, 2 chunks, a position."""
    run_id = new_run(db_path)
    with StoreWriter(db_path) as writer:
        writer.put(order_batch(run_id, 0, 10)._replace(equity=_equity(0, 900)))
        writer.put(_second_batch(run_id))
    with Store(db_path) as store:
        store.finish_run(run_id, "completed", SUMMARY, 2_000_000)
    return db_path


def _seq(raw_sql, db: Path, where: str) -> int:
    [(seq,)] = raw_sql(db, f"SELECT seq FROM audit_log WHERE {where}")
    return int(seq)


def test_a_clean_store_verifies_and_says_what_it_checked(store_path: Path) -> None:
    report = verify_audit(store_path)

    assert (report.ok, report.problems, report.notes) == (True, [], [])
    assert report.counts == {
        "runs": 1, "orders": 12, "fills": 11, "equity_chunks": 2, "positions": 1
    }  # fmt: skip


def test_fill_prices_changed_in_the_fills_table_are_named(store_path: Path, raw_sql) -> None:
    raw_sql(store_path, "UPDATE fills SET price = price * 1.1")
    seq = _seq(raw_sql, store_path, "kind = 'fill' AND client_order_id = 'P'")

    problems = verify_audit(store_path).problems

    assert len(problems) == 11
    assert (
        f"run 1 fill F-P (order P): price {101.25 * 1.1!r} vs audited 101.25 (fills vs its "
        f"fill audit row, seq {seq})"
    ) in problems


def test_a_deleted_fill_is_named(store_path: Path, raw_sql) -> None:
    raw_sql(store_path, "DELETE FROM fills WHERE fill_id = 'F-P'")
    seq = _seq(raw_sql, store_path, "kind = 'fill' AND client_order_id = 'P'")

    problems = verify_audit(store_path).problems

    assert problems == [
        f"run 1 fill F-P (order P): audited (seq {seq}) but missing from fills (fill deleted)"
    ]


def test_a_fill_inserted_behind_the_audits_back_is_named(store_path: Path, raw_sql) -> None:
    raw_sql(
        store_path,
        "INSERT INTO fills VALUES (1, 'F-X', 'P', 900005, 'SPX', 'BUY', 6.0, 101.0, 0.0, 0.0)",
    )

    problems = verify_audit(store_path).problems

    assert problems == [
        "run 1 fill F-X (order P): no fill audit row; the fill was inserted behind the audit's "
        "back, or its audit row was deleted"
    ]


def test_a_denied_order_turned_into_filled_is_named(store_path: Path, raw_sql) -> None:
    raw_sql(store_path, "UPDATE orders SET status = 'FILLED', filled_qty = 3.0, reason = '' "
                        "WHERE client_order_id = 'D'")  # fmt: skip
    seq = _seq(raw_sql, store_path, "kind = 'risk.denied'")

    problems = verify_audit(store_path).problems

    assert problems == [
        "run 1 order D: status 'FILLED' vs audited 'DENIED', filled_qty 3.0 vs audited 0.0, "
        "reason '' vs audited 'MAX_POSITION: limit 5, was 8' (orders vs its last audited "
        f"state, seq {seq} risk.denied)"
    ]


def test_a_denied_order_without_its_denial_row_is_named(store_path: Path, raw_sql) -> None:
    raw_sql(store_path, "UPDATE orders SET status = 'DENIED' WHERE client_order_id = 'P'")

    problems = verify_audit(store_path).problems

    assert problems == ["run 1 order P: status DENIED but it has no risk.denied audit row"]


def test_a_filled_order_without_fills_is_named(store_path: Path, raw_sql) -> None:
    # the order's table rows agree with each other and with its events, but not with fills
    raw_sql(
        store_path,
        "UPDATE orders SET avg_fill_price = 100 WHERE client_order_id = 'O-1-000000003'",
    )
    edited = verify_audit(store_path).problems
    raw_sql(store_path, "UPDATE orders SET status = 'FILLED', filled_qty = 10 "
                        "WHERE client_order_id = 'P'")  # fmt: skip

    problems = verify_audit(store_path).problems

    assert edited == [
        f"run 1 order O-1-000000003: avg_fill_price 100.0 but its fills average {100 + 3 / 7!r}"
    ]
    assert problems[1].startswith("run 1 order P: status 'FILLED' vs audited 'CANCELLED'")


def test_an_order_request_changed_behind_the_audits_back_is_named(
    store_path: Path, raw_sql
) -> None:
    raw_sql(store_path, "UPDATE orders SET quantity = 100, side = 'SELL' "
                        "WHERE client_order_id = 'P'")  # fmt: skip
    seq = _seq(raw_sql, store_path, "kind = 'risk.approved' AND client_order_id = 'P'")

    problems = verify_audit(store_path).problems

    assert problems == [
        "run 1 order P: quantity 100.0 vs audited 10.0, side/type/tif 'SELL MARKET GTC' vs "
        f"audited 'BUY MARKET GTC' (orders vs its risk.approved audit row, seq {seq})"
    ]


def test_an_order_inserted_behind_the_audits_back_is_named(store_path: Path, raw_sql) -> None:
    raw_sql(
        store_path,
        "INSERT INTO orders SELECT run_id, 'X', ts_ns, symbol, side, order_type, quantity, "
        "limit_price, stop_price, tif, reduce_only, tag, status, filled_qty, avg_fill_price, "
        "reason, updated_ns FROM orders WHERE client_order_id = 'P'",
    )

    problems = verify_audit(store_path).problems

    assert problems == [
        "run 1 order X: status CANCELLED, filled 4.0, but no audit row records an event or a "
        "risk decision for it (changed behind the audit's back)"
    ]


def test_a_rewritten_final_equity_in_the_summary_is_named(store_path: Path, raw_sql) -> None:
    forged = json.dumps({**SUMMARY, "final_equity": 250_000.0}, sort_keys=True)
    raw_sql(store_path, "UPDATE runs SET summary_json = ?", params=(forged,))
    seq = _seq(raw_sql, store_path, "kind = 'run.finished'")

    problems = verify_audit(store_path).problems

    assert problems == [
        "run 1: summary_json differs, final_equity 250000.0 vs audited 100123.5 (runs vs its "
        f"run.finished audit row, seq {seq})"
    ]


def test_a_finished_run_set_back_to_running_is_named(store_path: Path, raw_sql) -> None:
    raw_sql(store_path, "UPDATE runs SET status = 'running', ended_ns = NULL")

    problems = verify_audit(store_path).problems

    assert len(problems) == 1
    assert problems[0].startswith(
        "run 1: status 'running' vs audited 'completed', ended_ns None vs audited 2000000"
    )


def test_a_run_changed_or_inserted_behind_the_audits_back_is_named(
    store_path: Path, raw_sql
) -> None:
    raw_sql(store_path, "UPDATE runs SET strategy = 'other', data_hash = 'forged'")
    raw_sql(store_path, "INSERT INTO runs SELECT 2, kind, strategy, params_json, config_json, "
                        "data_name, data_hash, code_version, started_ns, ended_ns, status, "
                        "summary_json FROM runs")  # fmt: skip

    problems = verify_audit(store_path).problems

    assert problems == [
        "run 1: data_hash 'forged' vs audited 'hash', strategy 'other' vs audited 'sma_cross' "
        "(runs vs its run.created audit row, seq 1)",
        "run 2: no run.created audit row; the run was inserted behind the audit's back, or its "
        "audit rows were deleted",
    ]


def test_edited_or_deleted_equity_chunks_are_named(store_path: Path, raw_sql) -> None:
    seq_0 = _seq(raw_sql, store_path, "kind = 'equity.chunk' AND ts_ns = 899000")
    seq_1 = _seq(raw_sql, store_path, "kind = 'equity.chunk' AND ts_ns = 999000")
    raw_sql(store_path, "UPDATE equity_chunks SET equity_blob = zeroblob(length(equity_blob)) "
                        "WHERE chunk_no = 0")  # fmt: skip
    raw_sql(store_path, "DELETE FROM equity_chunks WHERE chunk_no = 1")

    problems = verify_audit(store_path).problems

    assert problems == [
        "run 1 equity chunk 0: timestamps, equity or cash differ (sha256) (equity_chunks vs its "
        f"equity.chunk audit row, seq {seq_0})",
        f"run 1 equity chunk 1: audited (seq {seq_1}) but missing from equity_chunks (chunk "
        "deleted)",
    ]


def test_an_edited_or_deleted_position_is_named(store_path: Path, raw_sql) -> None:
    seq = _seq(raw_sql, store_path, "kind = 'position'")
    raw_sql(store_path, "UPDATE positions SET quantity = 40, realized_pnl = 1e6")

    edited = verify_audit(store_path).problems
    raw_sql(store_path, "DELETE FROM positions")
    deleted = verify_audit(store_path).problems

    assert edited == [
        "run 1 position SPX: quantity 40.0 vs audited 4.0, realized_pnl 1000000.0 vs audited "
        f"7.5 (positions vs its last position audit row, seq {seq})"
    ]
    assert deleted == [f"run 1 position SPX: audited (seq {seq}) but missing from positions"]


def test_a_store_whose_audit_rows_were_all_deleted_is_broken(store_path: Path, raw_sql) -> None:
    raw_sql(
        store_path,
        "DROP TRIGGER audit_log_no_delete",
        "DROP TRIGGER audit_head_no_delete",
        "DELETE FROM audit_log",
        "DELETE FROM audit_head",
    )

    report = verify_audit(store_path)

    assert (report.ok, report.n_rows) == (False, 0)
    assert report.problems == [
        "the audit chain is empty but the store has 1 run(s): the audit rows were deleted, or "
        "the runs were written behind the audit's back"
    ]


def test_a_reopened_and_finished_again_run_verifies(store_path: Path, raw_sql) -> None:
    with Store(store_path) as store:
        store.reopen_run(1, ts_ns=3_000_000)
        running = store.verify_audit()
        head = store.finish_run(1, "completed", {**SUMMARY, "n_fills": 12}, 4_000_000)
        finished = store.verify_audit(expect_head=head[1])

    assert running.ok, running.problems
    assert finished.ok, finished.problems
    assert finished.anchor_seq == finished.last_seq == head[0]


def _damage(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(data)


@pytest.mark.parametrize("where", ["pages", "truncated", "header"])
def test_a_damaged_file_is_a_one_line_error(store_path: Path, where: str) -> None:
    size = store_path.stat().st_size
    if where == "pages":
        _damage(store_path, 16384 + 100, b"\xff" * (size - 16384 - 200))
    elif where == "truncated":
        with store_path.open("r+b") as f:
            f.truncate(size // 3)
    else:
        _damage(store_path, 0, b"garbage!" * 8)

    with pytest.raises(PersistenceError) as info:
        verify_audit(store_path)

    message = str(info.value)
    assert "\n" not in message
    assert str(store_path) in message or "audit log" in message
    assert isinstance(info.value, AuditError) or "not a usable SQLite database" in message


@pytest.mark.parametrize(
    ("setup", "match"),
    [("missing", "does not exist"), ("directory", "is a directory"),
     ("empty", "no such table: audit_log")],
)  # fmt: skip
def test_paths_that_are_not_stores_are_clean_errors(tmp_path: Path, setup: str, match) -> None:
    path = tmp_path / "u.db"
    if setup == "directory":
        path.mkdir()
    elif setup == "empty":
        path.write_bytes(b"")

    with pytest.raises(PersistenceError, match=match) as info:
        verify_audit(path)

    assert "\n" not in str(info.value)


def test_values_of_the_wrong_type_are_reported_not_raised(store_path: Path, raw_sql) -> None:
    raw_sql(store_path, "UPDATE orders SET avg_fill_price = 'cheap' WHERE client_order_id = 'P'")
    raw_sql(store_path, "UPDATE runs SET config_json = x'00ff'")

    problems = verify_audit(store_path).problems

    assert [p.split(":")[0] for p in problems] == ["run 1", "run 1 order P"]
    assert problems[0].startswith("run 1: config_sha256 ")
    assert "a value of the wrong type" in problems[1]
