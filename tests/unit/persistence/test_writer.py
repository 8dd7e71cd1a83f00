"""StoreWriter: batches written on its thread, read back through Store."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from ultrathink.core.enums import DenyReason, OrderStatus, OrderType, Side, TimeInForce
from ultrathink.core.events import Fill, OrderDenied, OrderEvent, OrderRequest
from ultrathink.errors import ConfigError, PersistenceError
from ultrathink.persistence import PositionRecord, Store, StoreWriter, WriteBatch, verify_audit


def _request(oid: str, ts_ns: int, **kw) -> OrderRequest:
    return OrderRequest(oid, ts_ns, kw.pop("symbol", "SPX"), kw.pop("side", Side.BUY), 10.0, **kw)


def _mixed_batch(run_id: int) -> WriteBatch:
    """One of every record kind."""
    return WriteBatch(
        run_id,
        requests=[
            _request("A", 10, order_type=OrderType.LIMIT, limit_price=99.5, tag="entry"),
            _request(
                "B",
                11,
                side=Side.SELL,
                order_type=OrderType.STOP,
                stop_price=90.0,
                tif=TimeInForce.DAY,
                reduce_only=True,
            ),
            _request("C", 12, symbol="NDX"),
        ],
        denials=[OrderDenied(12, "C", "NDX", DenyReason.MAX_POSITION, "limit 5, was 10")],
        approvals=["A", "B"],
        events=[
            OrderEvent(13, "A", "SPX", OrderStatus.ACCEPTED, 0.0),
            OrderEvent(14, "A", "SPX", OrderStatus.PARTIALLY_FILLED, 4.0),
            OrderEvent(15, "A", "SPX", OrderStatus.FILLED, 10.0),
            OrderEvent(13, "B", "SPX", OrderStatus.ACCEPTED, 0.0),
        ],
        fills=[
            Fill(14, "A", "F1", "SPX", Side.BUY, 4.0, 99.0, 0.4, 1.5),
            Fill(15, "A", "F2", "SPX", Side.BUY, 6.0, 99.5, 0.6),
        ],
        equity=(np.array([10, 11, 12]), np.array([1e5, 1e5 + 0.1, 99_999.9]), np.ones(3)),
        positions=[("SPX", 10.0, 99.3, 0.0, 99.5)],
        audit_extra=[(9, "run.started", "sma_cross on spx")],
    )


def test_round_trip_of_every_record_kind(db_path: Path, new_run) -> None:
    run_id = new_run(db_path)

    with StoreWriter(db_path) as writer:
        writer.put(_mixed_batch(run_id))

    with Store(db_path) as store:
        orders = store.load_orders(run_id).set_index("client_order_id")
        fills = store.load_fills(run_id)
        n_fills = store.count_fills(run_id)
        ts_ns, equity, cash = store.load_equity(run_id)
        positions = store.load_positions(run_id)
        counts = store.order_status_counts(run_id)
        events = store.load_order_events(run_id)

    assert n_fills == len(fills)

    assert orders.loc["A", ["status", "filled_qty", "limit_price", "tag"]].tolist() == [
        "FILLED", 10.0, 99.5, "entry",
    ]  # fmt: skip
    assert orders.loc["A", "avg_fill_price"] == pytest.approx(0.4 * 99.0 + 0.6 * 99.5)
    assert orders.loc["A", "updated_ns"] == 15
    b_columns = ["status", "order_type", "stop_price", "tif", "reduce_only"]
    assert orders.loc["B", b_columns].tolist() == ["ACCEPTED", "STOP", 90.0, "DAY", True]
    assert np.isnan(orders.loc["B", "avg_fill_price"])
    assert orders.loc["C", ["status", "reason"]].tolist() == [
        "DENIED", "MAX_POSITION: limit 5, was 10",
    ]  # fmt: skip
    assert fills == [
        Fill(14, "A", "F1", "SPX", Side.BUY, 4.0, 99.0, 0.4, 1.5),
        Fill(15, "A", "F2", "SPX", Side.BUY, 6.0, 99.5, 0.6, 0.0),
    ]
    assert ts_ns.tolist() == [10, 11, 12] and equity[1] == 1e5 + 0.1 and cash.tolist() == [1.0] * 3
    assert positions == [PositionRecord("SPX", 10.0, 99.3, 0.0, 99.5)]
    assert counts == {"ACCEPTED": 1, "DENIED": 1, "FILLED": 1}
    assert events["status"].tolist() == ["ACCEPTED", "ACCEPTED", "PARTIALLY_FILLED", "FILLED"]
    assert verify_audit(db_path).ok


def test_audit_rows_of_a_batch_are_in_time_order(db_path: Path, new_run, raw_sql) -> None:
    run_id = new_run(db_path)

    with StoreWriter(db_path) as writer:
        writer.put(_mixed_batch(run_id))

    rows = raw_sql(
        db_path, "SELECT ts_ns, kind, client_order_id FROM audit_log WHERE seq > 1 ORDER BY seq"
    )
    # at equal times: extra rows, risk decisions, fills, events, the equity chunk; the
    # positions come last
    assert rows == [
        (9, "run.started", None),
        (10, "risk.approved", "A"),
        (11, "risk.approved", "B"),
        (12, "risk.denied", "C"),
        (12, "equity.chunk", None),
        (13, "order.ACCEPTED", "A"),
        (13, "order.ACCEPTED", "B"),
        (14, "fill", "A"),
        (14, "order.PARTIALLY_FILLED", "A"),
        (15, "fill", "A"),
        (15, "order.FILLED", "A"),
        (12, "position", None),
    ]


def test_orders_end_in_the_status_of_their_last_event_across_batches(
    db_path: Path, new_run
) -> None:
    run_id = new_run(db_path)
    accepted = OrderEvent(20, "A", "SPX", OrderStatus.ACCEPTED, 0.0)
    cancelled = OrderEvent(50, "A", "SPX", OrderStatus.CANCELLED, 6.0, "user")
    halted = OrderDenied(60, "B", "SPX", DenyReason.TRADING_HALTED, "kill")
    later = [
        WriteBatch(run_id, approvals=["A"], events=[accepted]),
        WriteBatch(
            run_id,
            events=[OrderEvent(30, "A", "SPX", OrderStatus.PARTIALLY_FILLED, 4.0)],
            fills=[Fill(30, "A", "F1", "SPX", Side.BUY, 4.0, 100.0, 0.0)],
        ),
        WriteBatch(run_id, fills=[Fill(40, "A", "F2", "SPX", Side.BUY, 2.0, 103.0, 0.0)]),
        WriteBatch(run_id, events=[cancelled]),
        WriteBatch(run_id, denials=[halted]),
    ]

    with StoreWriter(db_path, max_queue_batches=1) as writer:
        writer.put(WriteBatch(run_id, requests=[_request("A", 10), _request("B", 11)]))
        for batch in later:
            writer.put(batch)

    with Store(db_path) as store:
        orders = store.load_orders(run_id).set_index("client_order_id")
    assert orders.loc["A", ["status", "filled_qty", "reason", "updated_ns"]].tolist() == [
        "CANCELLED", 6.0, "user", 50,
    ]  # fmt: skip
    assert orders.loc["A", "avg_fill_price"] == pytest.approx((4 * 100.0 + 2 * 103.0) / 6)
    assert orders.loc["B", ["status", "reason"]].tolist() == ["DENIED", "TRADING_HALTED: kill"]
    assert verify_audit(db_path).ok


def test_many_orders_round_trip(db_path: Path, new_run, order_batch) -> None:
    run_id = new_run(db_path)

    with StoreWriter(db_path, max_queue_batches=2) as writer:
        for first in range(0, 1000, 250):
            writer.put(order_batch(run_id, first, 250))

    with Store(db_path) as store:
        orders = store.load_orders(run_id)
        fills = store.load_fills(run_id)
        counts = store.order_status_counts(run_id)
    assert counts == {"FILLED": 1000}
    assert orders["client_order_id"].is_monotonic_increasing
    assert (orders["filled_qty"] == orders["quantity"]).all()
    assert [f.fill_id for f in fills] == [f"F-{run_id}-{i:09d}" for i in range(1000)]
    assert verify_audit(db_path).n_rows == 1 + 4000  # run.created; 4 rows per filled order


def test_equity_chunks_round_trip_exactly(db_path: Path, new_run) -> None:
    run_a, run_b = new_run(db_path), new_run(db_path)
    rng = np.random.default_rng(7)
    chunks = [
        (np.arange(n, dtype=np.int64) + 1000 * k, rng.normal(1e5, 50, n), rng.normal(5e4, 9, n))
        for k, n in enumerate([5, 0, 1, 1000])
    ]
    chunks[0][1][:3] = [np.nan, np.inf, -0.0]  # specials survive the bytes

    with StoreWriter(db_path) as writer:
        for chunk in chunks:
            writer.put(WriteBatch(run_a, equity=chunk))
            writer.put(WriteBatch(run_b, equity=(chunk[0], chunk[2], chunk[1])))

    with Store(db_path) as store:
        got_a, got_b = store.load_equity(run_a), store.load_equity(run_b)
    for i in range(3):
        expected = np.concatenate([c[i] for c in chunks])
        assert got_a[i].dtype == expected.dtype
        assert got_a[i].tobytes() == expected.tobytes()
    assert np.array_equal(got_b[1], np.concatenate([c[2] for c in chunks]))
    assert got_a[0].flags.writeable


def test_positions_are_upserted(db_path: Path, new_run) -> None:
    run_id = new_run(db_path)

    with StoreWriter(db_path) as writer:
        writer.put(WriteBatch(run_id, positions=[("SPX", 5.0, 100.0, 0.0, 101.0)]))
        writer.put(
            WriteBatch(
                run_id, positions=[("SPX", 0.0, 0.0, 7.5, 102.0), ("NDX", 1.0, 2.0, 0.0, 2.0)]
            )
        )

    with Store(db_path) as store:
        assert store.load_positions(run_id) == [
            PositionRecord("NDX", 1.0, 2.0, 0.0, 2.0),
            PositionRecord("SPX", 0.0, 0.0, 7.5, 102.0),
        ]


def test_a_store_reads_committed_batches_while_the_writer_is_open(
    db_path: Path, new_run, order_batch
) -> None:
    run_id = new_run(db_path)

    with StoreWriter(db_path) as writer, Store(db_path) as store:
        writer.put(order_batch(run_id, 0, 10))
        writer.flush()
        first = store.order_status_counts(run_id)
        writer.put(order_batch(run_id, 10, 5))
        writer.flush()
        second = store.order_status_counts(run_id)

    assert (first, second) == ({"FILLED": 10}, {"FILLED": 15})


def test_a_failed_batch_is_rolled_back_and_raised_on_flush(
    db_path: Path, new_run, order_batch
) -> None:
    run_id = new_run(db_path)
    good = order_batch(run_id, 0, 3)
    duplicate_fill = order_batch(run_id, 3, 2)._replace(fills=[good.fills[0]] * 2)
    writer = StoreWriter(db_path)
    writer.put(good)
    writer.put(duplicate_fill)

    with pytest.raises(PersistenceError, match=r"failed.*IntegrityError.*UNIQUE") as info:
        writer.flush()
    with pytest.raises(PersistenceError, match="failed"):
        writer.put(order_batch(run_id, 5, 1))
    writer.close()  # already reported: does not raise again

    assert isinstance(info.value.__cause__, sqlite3.IntegrityError)
    with Store(db_path) as store:
        assert store.order_status_counts(run_id) == {"FILLED": 3}
    assert verify_audit(db_path).ok


def test_an_unreported_failure_is_raised_by_close(db_path: Path, new_run) -> None:
    run_id = new_run(db_path)
    writer = StoreWriter(db_path)
    with closing(sqlite3.connect(db_path)) as blocker:
        blocker.execute("BEGIN IMMEDIATE")  # holds the writer back until both batches are queued
        writer.put(WriteBatch(run_id, approvals=["never-requested"]))
        writer.put(WriteBatch(run_id, requests=[_request("X", 1)]))  # discarded: after a failure
        blocker.rollback()

    with pytest.raises(PersistenceError, match=r"1 later batch\(es\) discarded.*never requested"):
        writer.close()
    with Store(db_path) as store:
        assert store.order_status_counts(run_id) == {}


def test_records_of_an_unknown_run_are_refused(db_path: Path) -> None:
    writer = StoreWriter(db_path)
    writer.put(WriteBatch(999, requests=[_request("X", 1)]))

    with pytest.raises(PersistenceError, match="FOREIGN KEY"):
        writer.close()


def test_unequal_equity_arrays_are_refused(db_path: Path, new_run) -> None:
    writer = StoreWriter(db_path)
    writer.put(WriteBatch(new_run(db_path), equity=(np.arange(3), np.ones(2), np.ones(3))))

    with pytest.raises(PersistenceError, match="equal lengths, were 3, 2, 3"):
        writer.flush()
    writer.close()


def test_float_equity_timestamps_are_refused(db_path: Path, new_run) -> None:
    writer = StoreWriter(db_path)
    writer.put(WriteBatch(new_run(db_path), equity=(np.array([1.5]), np.ones(1), np.ones(1))))

    with pytest.raises(PersistenceError, match="ts_ns must be integer nanoseconds, was float64"):
        writer.close()


def test_put_and_flush_after_close_are_errors(db_path: Path, new_run) -> None:
    writer = StoreWriter(db_path)
    writer.flush()  # nothing queued: returns
    writer.close()
    writer.close()

    with pytest.raises(PersistenceError, match="is closed"):
        writer.put(WriteBatch(new_run(db_path)))
    with pytest.raises(PersistenceError, match="is closed"):
        writer.flush()


def test_a_writer_on_a_non_database_fails_at_construction(tmp_path: Path) -> None:
    bogus = tmp_path / "x.db"
    bogus.write_bytes(b"garbage" * 1000)

    with pytest.raises(PersistenceError, match=r"x\.db is not a usable SQLite database"):
        StoreWriter(bogus)


def test_queue_capacity_must_be_positive(db_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_queue_batches must be >= 1, was 0"):
        StoreWriter(db_path, max_queue_batches=0)
