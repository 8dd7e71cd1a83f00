"""The venue journal: the paper broker's durable state, raw rows and idempotent submits."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ultrathink.core.enums import OrderStatus, OrderType, Side, TimeInForce
from ultrathink.core.events import Fill, OrderEvent, OrderRequest
from ultrathink.errors import PersistenceError
from ultrathink.execution.costs import PaperBrokerConfig
from ultrathink.execution.journal import ORDER_COLUMNS, SCHEMA_VERSION, VenueJournal, order_row
from ultrathink.execution.orders import Order
from ultrathink.execution.paper import PaperBroker
from ultrathink.testing.fakes import MIN_NS, RecordingSink, Venue

S = OrderStatus
PaperVenue = Venue[PaperBroker]
PARTIAL = PaperBrokerConfig(commission_bps=1.0, fee_per_order=1.0, max_volume_pct=10.0)


def journal_venue(config: PaperBrokerConfig, journal: VenueJournal | None = None) -> PaperVenue:
    """A paper broker (optionally journaled), its clock and sink: 100-unit orders, thin bars."""
    return Venue.paper(config, journal, quantity=100.0, volume=500.0)


def request(coid: str, ts_ns: int = 0, quantity: float = 100.0, **kw: Any) -> OrderRequest:
    return OrderRequest(coid, ts_ns, kw.pop("symbol", "AAA"), Side.BUY, quantity, **kw)


def slots(order: Order | None) -> dict[str, object]:
    assert order is not None
    return {name: getattr(order, name) for name in Order.__slots__}


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read with a second, read-only connection: what another process would see."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "venue" / "journal.sqlite"


def scripted_session(venue: PaperVenue) -> None:
    """Orders of every type and fate over a few bars, with partial fills and slippage."""
    venue.bar(0)
    venue.submit("MKT", 30.0)
    venue.submit("LMT", 300.0, order_type=OrderType.LIMIT, limit_price=99.5)
    venue.submit("STP", 40.0, order_type=OrderType.STOP, stop_price=100.5)
    venue.submit("DAY", 80.0, order_type=OrderType.LIMIT, limit_price=99.5, tif=TimeInForce.DAY)
    venue.submit("BAD", -1.0)
    venue.submit("CXL", 10.0, order_type=OrderType.LIMIT, limit_price=50.0)
    for i in range(1, 4):
        venue.bar(i, h=101.0 + i, lo=99.0 - i)
    venue.broker.cancel("CXL", "strategy changed its mind")
    venue.bar(4)


# -- the journal itself ------------------------------------------------------------------------


def test_journal_round_trip_restores_orders_of_every_type_and_status(path: Path) -> None:
    journal = VenueJournal(path)
    venue = journal_venue(PARTIAL.model_copy(update={"latency_ms": 5.0}), journal)
    scripted_session(venue)
    live = {coid: slots(o) for coid, o in venue.broker._orders.items()}
    journal.close()

    state = VenueJournal(path).load()

    assert {coid: slots(o) for coid, o in state.orders.items()} == live
    assert list(state.orders) == ["MKT", "LMT", "STP", "DAY", "BAD", "CXL"]
    assert {o.status for o in state.orders.values()} == {
        S.FILLED,
        S.PARTIALLY_FILLED,
        S.EXPIRED,
        S.REJECTED,
        S.CANCELLED,
    }
    assert state.orders["STP"].is_triggered
    assert state.orders["LMT"].eligible_ns == 5_000_000


def test_journal_round_trip_keeps_fills_in_order_reasons_and_last_fill_bars(path: Path) -> None:
    journal = VenueJournal(path)
    venue = journal_venue(PARTIAL, journal)
    scripted_session(venue)
    journal.close()

    state = VenueJournal(path).load()

    assert state.fills == venue.sink.fills
    assert [f.fill_id for f in state.fills if f.client_order_id == "LMT"] == [
        "LMT-F1",
        "LMT-F2",
        "LMT-F3",
        "LMT-F4",
    ]
    assert state.reasons["BAD"] == "quantity must be > 0, was -1.0"
    assert state.reasons["CXL"] == "strategy changed its mind"
    assert state.reasons["DAY"].startswith("DAY order not (fully) filled")
    assert state.reasons["MKT"] == ""
    assert state.last_fill_ts == {"MKT": MIN_NS, "LMT": 4 * MIN_NS, "STP": MIN_NS, "DAY": MIN_NS}


def test_record_commits_before_returning(path: Path) -> None:
    journal = VenueJournal(path)
    order = Order(request("A"))
    order.accept(0)

    journal.record(order, updated_ns=7)

    assert rows(path, "SELECT client_order_id, status, updated_ns FROM venue_orders") == [
        ("A", "ACCEPTED", 7)
    ]


def test_duplicate_fill_id_raises_and_stores_nothing_of_the_call(path: Path) -> None:
    journal = VenueJournal(path)
    order = Order(request("A"))
    order.accept(0)
    order.fill(MIN_NS, 10.0, 100.0)
    fill = Fill(MIN_NS, "A", "A-F1", "AAA", Side.BUY, 10.0, 100.0, 0.0)
    journal.record(order, fill)
    order.fill(2 * MIN_NS, 10.0, 101.0)

    with pytest.raises(
        PersistenceError, match=r"journal\.sqlite refused order A with fill A-F1 .*only once"
    ):
        journal.record(order, fill._replace(ts_ns=2 * MIN_NS))

    state = journal.load()
    assert state.fills == [fill]
    assert state.orders["A"].filled_qty == 10.0
    assert state.last_fill_ts == {"A": MIN_NS}


def test_nan_quantity_of_a_rejected_order_round_trips(path: Path) -> None:
    journal = VenueJournal(path)
    order = Order(request("A", quantity=float("nan")))
    order.reject(0, "quantity must be > 0, was nan")
    journal.record(order, reason="quantity must be > 0, was nan")

    restored = journal.load().orders["A"]

    assert restored.quantity != restored.quantity  # NaN
    assert restored.status is S.REJECTED and not restored.is_open


def test_journal_uses_wal_mode(path: Path) -> None:
    VenueJournal(path).close()

    assert rows(path, "PRAGMA journal_mode") == [("wal",)]


def test_reopening_a_journal_keeps_its_content(path: Path) -> None:
    venue = journal_venue(PARTIAL, VenueJournal(path))
    scripted_session(venue)

    assert len(VenueJournal(path).load().orders) == 6


# -- refusing files that are not a venue journal ------------------------------------------------


def test_a_file_that_is_not_sqlite_is_refused_with_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_bytes(b"this is not a database, just some text " * 100)

    with pytest.raises(PersistenceError, match=r"notes\.txt is not a usable SQLite.*move it away"):
        VenueJournal(bad)


def test_a_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "store.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE runs (id INTEGER)")
    conn.commit()
    conn.close()

    with pytest.raises(PersistenceError, match=r"store\.sqlite .*not a venue journal.*runs"):
        VenueJournal(other)


def test_another_schema_version_is_refused(path: Path) -> None:
    VenueJournal(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()

    with pytest.raises(
        PersistenceError, match=rf"schema version 99.*reads version {SCHEMA_VERSION}"
    ):
        VenueJournal(path)


# -- the broker writes to its venue before telling the engine ------------------------------------


class JournalCheckingSink(RecordingSink):
    """Asserts, from a second connection, that each reported change is already committed."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def on_order_event(self, event: OrderEvent) -> None:
        stored = rows(
            self.path,
            "SELECT status, filled_qty, reason FROM venue_orders "
            f"WHERE client_order_id = '{event.client_order_id}'",
        )
        assert stored == [(event.status.value, event.filled_qty, event.reason)]
        super().on_order_event(event)

    def on_fill(self, fill: Fill, order: Order) -> None:
        stored = rows(self.path, f"SELECT * FROM venue_fills WHERE fill_id = '{fill.fill_id}'")
        assert [row[1:] for row in stored] == [tuple(fill)]
        super().on_fill(fill, order)


def test_every_change_is_committed_before_the_sink_hears_of_it(path: Path) -> None:
    venue = journal_venue(PARTIAL, VenueJournal(path))
    venue.sink = JournalCheckingSink(path)
    venue.broker._sink = venue.sink

    scripted_session(venue)

    assert {e.status for e in venue.sink.events} == {
        S.ACCEPTED,
        S.REJECTED,
        S.PARTIALLY_FILLED,
        S.FILLED,
        S.CANCELLED,
        S.EXPIRED,
    }
    assert len(venue.sink.fills) == 7


# -- idempotent submit -----------------------------------------------------------------------


@pytest.mark.parametrize("journaled", [False, True])
def test_submitting_a_known_client_order_id_returns_the_order_and_reports_nothing(
    path: Path, journaled: bool
) -> None:
    venue = journal_venue(PARTIAL, VenueJournal(path) if journaled else None)
    first = venue.submit("A")
    rejected = venue.submit("R", -1.0)

    again = venue.submit("A", 999.0)
    rejected_again = venue.submit("R", -1.0)

    assert again is first and rejected_again is rejected
    assert [(e.client_order_id, e.status) for e in venue.sink.events] == [
        ("A", S.ACCEPTED),
        ("R", S.REJECTED),
    ]
    assert venue.broker.n_open == 1 and again.quantity == 100.0
    if journaled:
        assert rows(path, "SELECT COUNT(*) FROM venue_orders") == [(2,)]


# -- replaying a bar ------------------------------------------------------------------------


def test_a_bar_fed_twice_fills_an_order_once_even_without_a_journal() -> None:
    venue = journal_venue(PARTIAL)
    venue.bar(0)
    venue.submit("L", 120.0, order_type=OrderType.LIMIT, limit_price=100.0)
    venue.bar(1)

    venue.bar(1)
    venue.bar(2)

    assert [f.fill_id for f in venue.sink.fills] == ["L-F1", "L-F2"]
    assert [f.ts_ns for f in venue.sink.fills] == [MIN_NS, 2 * MIN_NS]


# -- crashes (restarts replay the session: see test_exec_journal_replay.py) --------------------


def test_dropping_the_broker_between_two_orders_loses_nothing_committed(path: Path) -> None:
    venue = journal_venue(PARTIAL, VenueJournal(path))
    venue.bar(0)
    venue.submit("A", 10.0)
    venue.bar(1)
    venue.submit("B", 10.0, order_type=OrderType.LIMIT, limit_price=90.0)
    del venue

    state = VenueJournal(path).load()

    assert [(o.client_order_id, o.status) for o in state.orders.values()] == [
        ("A", S.FILLED),
        ("B", S.ACCEPTED),
    ]
    assert [f.fill_id for f in state.fills] == ["A-F1"]


# -- raw rows: what a restart's sync compares and writes ----------------------------------------


def test_raw_rows_are_the_stored_rows_in_submission_and_execution_order(path: Path) -> None:
    journal = VenueJournal(path)
    venue = journal_venue(PARTIAL, journal)
    scripted_session(venue)

    orders, fills = journal.raw_rows()

    assert list(orders) == ["MKT", "LMT", "STP", "DAY", "BAD", "CXL"]
    assert orders == {
        r[0]: r for r in rows(path, f"SELECT {', '.join(ORDER_COLUMNS)} FROM venue_orders")
    }
    assert [Fill(*f) for f in fills] == venue.sink.fills
    assert orders["STP"][ORDER_COLUMNS.index("is_triggered")] == 1  # as SQLite stores a bool


def test_order_row_is_the_stored_row_of_an_order(path: Path) -> None:
    journal = VenueJournal(path)
    order = Order(request("A", tif=TimeInForce.DAY, order_type=OrderType.LIMIT, limit_price=9.5))
    order.accept(3)
    order.fill(MIN_NS, 10.0, 9.5)
    fill = Fill(MIN_NS, "A", "A-F1", "AAA", Side.BUY, 10.0, 9.5, 0.1)

    journal.record(order, fill, "why", updated_ns=MIN_NS + 1)

    row = order_row(order, MIN_NS, "why", MIN_NS + 1)
    assert len(row) == len(ORDER_COLUMNS)
    stored = journal.raw_rows()[0]["A"]
    assert stored == tuple(int(v) if isinstance(v, bool) else v for v in row)


def test_write_rows_stores_prebuilt_records_like_record_does(tmp_path: Path) -> None:
    by_record, by_rows = VenueJournal(tmp_path / "a.sqlite"), VenueJournal(tmp_path / "b.sqlite")
    order = Order(request("A", quantity=20.0))
    order.accept(0)
    batch: list[tuple[tuple[object, ...], Fill | None]] = [(order_row(order, None, "", 0), None)]
    by_record.record(order, updated_ns=0)
    order.fill(MIN_NS, 5.0, 100.0)
    fill = Fill(MIN_NS, "A", "A-F1", "AAA", Side.BUY, 5.0, 100.0, 0.0)
    batch.append((order_row(order, MIN_NS, "", MIN_NS), fill))
    by_record.record(order, fill)

    by_rows.write_rows(batch)
    by_rows.write_rows([])  # nothing to write: no transaction, no error

    assert by_rows.raw_rows() == by_record.raw_rows()
    assert by_rows.load().last_fill_ts == {"A": MIN_NS}


def test_write_rows_is_one_transaction(path: Path) -> None:
    journal = VenueJournal(path)
    order = Order(request("A"))
    order.accept(0)
    order.fill(MIN_NS, 10.0, 100.0)
    fill = Fill(MIN_NS, "A", "A-F1", "AAA", Side.BUY, 10.0, 100.0, 0.0)
    journal.record(order, fill)
    other = Order(request("B"))
    other.accept(0)

    with pytest.raises(PersistenceError, match=r"cannot write venue journal"):
        journal.write_rows(
            [(order_row(other, None, "", 0), None), (order_row(order, 1, "", 1), fill)]
        )

    orders, fills = journal.raw_rows()
    assert list(orders) == ["A"] and len(fills) == 1  # B was not kept either


# -- determinism -------------------------------------------------------------------------------


def test_a_journal_changes_no_fill_and_no_event(path: Path) -> None:
    config = PARTIAL.model_copy(update={"slippage_bps": 2.0, "slippage_vol_mult": 0.05})
    plain, journaled = journal_venue(config), journal_venue(config, VenueJournal(path))

    for venue in (plain, journaled):
        scripted_session(venue)

    assert journaled.sink.fills == plain.sink.fills
    assert journaled.sink.events == plain.sink.events
    assert journaled.broker.positions() == plain.broker.positions()
