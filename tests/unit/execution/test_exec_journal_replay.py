"""``ReplayJournal``: a restarted paper venue replays, checks itself against its journal, syncs.

A restart runs the session again from its first bar (``engine/recovery.py``). The venue asks
to journal every change exactly as it did the first time; the replay journal keeps those
records in memory, then ``go_live`` checks that the file holds exactly a prefix of them (what
was committed before the kill), writes the rest and from then on writes through. These tests
drive a real ``PaperBroker`` over bars, kill a journaled run after every possible number of
records, and check that the replay leaves the file of a run that was never interrupted.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from ultrathink.core.enums import OrderStatus, OrderType, Side, TimeInForce
from ultrathink.core.events import Fill, OrderEvent, OrderRequest
from ultrathink.errors import PersistenceError
from ultrathink.execution.costs import PaperBrokerConfig
from ultrathink.execution.journal import ORDER_COLUMNS, VenueJournal, order_row
from ultrathink.execution.journal_replay import JournalDivergence, ReplayJournal, SyncReport
from ultrathink.execution.orders import Order
from ultrathink.execution.paper import JournalSink, PaperBroker
from ultrathink.testing.fakes import MIN_NS, RecordingSink, Venue

S = OrderStatus
PaperVenue = Venue[PaperBroker]
# partial fills, both fees, fixed and volatility slippage, latency: every recorded field moves
CONFIG = PaperBrokerConfig(
    commission_bps=1.0,
    fee_per_order=1.0,
    slippage_bps=2.0,
    slippage_vol_mult=0.05,
    latency_ms=5.0,
    max_volume_pct=10.0,
)
STATUS, IS_OPEN, IS_TRIGGERED, REASON, UPDATED = (
    ORDER_COLUMNS.index(c) for c in ("status", "is_open", "is_triggered", "reason", "updated_ns")
)
FILL_ID, FEE = 3, 8  # columns of venue_fills (after its seq)

Row = tuple[Any, ...]
Records = list[tuple[Row, Fill | None]]
Snapshot = tuple[list[tuple[str, Row]], list[Row]]
Reference = tuple[Records, Snapshot, Snapshot]


class Killed(Exception):
    """The process died: the record being written never reached the file."""


class DyingJournal(VenueJournal):
    """A venue journal whose process is killed after ``survive`` committed records."""

    def __init__(self, path: Path, survive: int) -> None:
        super().__init__(path)
        self.left = survive

    def record(self, order: Order, fill: Fill | None = None, reason: str = "", **kw: Any) -> None:
        if self.left == 0:
            raise Killed
        self.left -= 1
        super().record(order, fill, reason, **kw)


class ListeningJournal(VenueJournal):
    """A venue journal that also keeps each record as the row SQLite stores (a reference)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.records: Records = []

    def record(
        self,
        order: Order,
        fill: Fill | None = None,
        reason: str = "",
        *,
        updated_ns: int | None = None,
    ) -> None:
        if updated_ns is None:
            updated_ns = 0 if fill is None else fill.ts_ns
        last_fill = None if fill is None else fill.ts_ns
        self.records.append((stored(order_row(order, last_fill, reason, updated_ns)), fill))
        super().record(order, fill, reason, updated_ns=updated_ns)


class SpyJournal(VenueJournal):
    """A venue journal that remembers what ``write_rows`` was asked to write."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.written: Records = []

    def write_rows(self, rows: Sequence[tuple[Row, Fill | None]]) -> None:
        self.written.extend(rows)
        super().write_rows(rows)


def journal_venue(journal: JournalSink | None, config: PaperBrokerConfig = CONFIG) -> PaperVenue:
    """A paper broker on ``journal``, its clock and sink: 100-unit orders, thin bars."""
    return Venue.paper(config, journal, quantity=100.0, volume=500.0)


def stored(row: Sequence[Any]) -> Row:
    """A row as SQLite gives it back: bools as ints, NaN as NULL."""
    return tuple(
        int(v) if isinstance(v, bool) else (None if isinstance(v, float) and v != v else v)
        for v in row
    )


def snapshot(path: Path) -> Snapshot:
    """Every order row (in submission order) and fill row of the file, read by another process."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        columns = ", ".join(ORDER_COLUMNS)
        orders = conn.execute(f"SELECT {columns} FROM venue_orders ORDER BY rowid").fetchall()
        fills = conn.execute("SELECT * FROM venue_fills ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [(str(r[0]), tuple(r)) for r in orders], [tuple(r) for r in fills]


def first_part(venue: PaperVenue) -> None:
    """The part of the session a crash interrupts: every order type and fate, two symbols."""
    venue.bar(0)
    venue.bar(0, symbol="BBB")
    venue.submit("MKT", 30.0)
    venue.submit("LMT", 300.0, order_type=OrderType.LIMIT, limit_price=99.5)
    venue.submit("STP", 40.0, order_type=OrderType.STOP, stop_price=100.5)
    venue.submit("DAY", 80.0, order_type=OrderType.LIMIT, limit_price=99.5, tif=TimeInForce.DAY)
    venue.submit("BAD", -1.0)
    venue.submit("CXL", 10.0, order_type=OrderType.LIMIT, limit_price=50.0)
    venue.submit("GTS", 10.0, symbol="BBB", order_type=OrderType.STOP, stop_price=100.5)
    venue.submit("SEL", 25.0, side=Side.SELL, symbol="BBB", reduce_only=True, tag="exit")
    venue.submit("NAN", float("nan"))  # rejected; stored as NULL
    venue.bar(1, h=102.0, lo=98.0)
    venue.bar(1, symbol="BBB", volume=0.0)  # GTS triggers with nothing to fill; SEL waits
    for i in range(2, 4):
        venue.bar(i, h=101.0 + i, lo=99.0 - i)
        venue.bar(i, symbol="BBB", h=100.2, volume=100.0)  # below GTS's stop: still triggered
    venue.clock.set_ns(3 * MIN_NS + 30_000_000_000)  # between two bars
    venue.broker.cancel("CXL", "strategy changed its mind")
    venue.bar(4)


def second_part(venue: PaperVenue) -> None:
    """What the session does after going live."""
    venue.submit("NEW", 20.0, order_type=OrderType.STOP, stop_price=100.5)
    venue.submit("OUT", 5.0, side=Side.SELL, symbol="BBB", tif=TimeInForce.IOC)
    venue.bar(5, h=102.0)
    venue.bar(5, symbol="BBB", volume=1_000.0)
    venue.bar(6, volume=5_000.0)


def killed_after(path: Path, k: int) -> None:
    """Run the first part journaled, the process dying after ``k`` committed records."""
    with contextlib.suppress(Killed):
        first_part(journal_venue(DyingJournal(path, k)))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """An uninterrupted run: its first part's records, the file after it and at the end."""
    path = tmp_path_factory.mktemp("reference") / "venue.sqlite"
    journal = ListeningJournal(path)
    venue = journal_venue(journal)
    first_part(venue)
    records = list(journal.records)
    after_first = snapshot(path)
    second_part(venue)
    return records, after_first, snapshot(path)


def last_ts(records: Records) -> int:
    times = [row[UPDATED] for row, _ in records] + [f.ts_ns for _, f in records if f is not None]
    return max(times, default=-1)


# -- the scenario covers what it must --------------------------------------------------------


def test_the_scripted_session_journals_every_kind_of_record(reference: Reference) -> None:
    records, _, (orders, fills) = reference
    statuses = {row[STATUS] for row, _ in records}

    assert statuses == {
        "ACCEPTED",
        "REJECTED",
        "PARTIALLY_FILLED",
        "FILLED",
        "CANCELLED",
        "EXPIRED",
    }
    trigger = [row for row, f in records if f is None and row[0] == "GTS" and row[IS_TRIGGERED]]
    assert len(trigger) == 1  # the stop triggered on a bar without volume
    assert len({f.client_order_id for _, f in records if f is not None}) >= 5
    assert [coid for coid, _ in orders][-2:] == ["NEW", "OUT"]
    assert len(fills) > sum(f is not None for _, f in records)  # the live part fills too


# -- (a) a new session writes through ---------------------------------------------------------


class CommittedFirstSink(RecordingSink):
    """Asserts, from a second connection, that each reported change is already committed."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def on_order_event(self, event: OrderEvent) -> None:
        orders = dict(snapshot(self.path)[0])
        row = orders[event.client_order_id]
        status, filled = ORDER_COLUMNS.index("status"), ORDER_COLUMNS.index("filled_qty")
        assert (row[status], row[filled]) == (event.status.value, event.filled_qty)
        super().on_order_event(event)

    def on_fill(self, fill: Fill, order: Order) -> None:
        assert tuple(fill) in [row[1:] for row in snapshot(self.path)[1]]
        super().on_fill(fill, order)


def test_a_new_session_writes_every_record_through_before_the_engine_hears_of_it(
    tmp_path: Path, reference: Reference
) -> None:
    path = tmp_path / "venue.sqlite"
    journal = ReplayJournal(VenueJournal(path), replaying=False)
    venue = journal_venue(journal)
    venue.sink = CommittedFirstSink(path)
    venue.broker._sink = venue.sink

    first_part(venue)
    second_part(venue)

    assert journal.path == path and not journal.replaying
    assert snapshot(path) == reference[2]
    assert len(venue.sink.fills) == len(reference[2][1])


# -- (b) a replay against every possible crash point -------------------------------------------


def test_going_live_after_a_crash_at_any_record_writes_exactly_the_missing_ones(
    tmp_path: Path, reference: Reference
) -> None:
    records, after_first, at_end = reference
    n = len(records)
    n_orders = len({row[0] for row, _ in records})
    n_fills = sum(f is not None for _, f in records)

    for k in range(n + 1):
        path = tmp_path / f"crash-{k}" / "venue.sqlite"
        killed_after(path, k)
        on_disk = snapshot(path)
        assert len(on_disk[1]) == sum(f is not None for _, f in records[:k]), k

        file = SpyJournal(path)
        journal = ReplayJournal(file, replaying=True)
        venue = journal_venue(journal)
        first_part(venue)
        assert snapshot(path) == on_disk, f"k={k}: the replay wrote before going live"
        assert journal.last_ts_ns() == last_ts(records[:k]), k

        report = journal.go_live()

        assert report == SyncReport(k, n - k, n_orders, n_fills), k
        assert file.written == records[k:], f"k={k}: wrote other records than the missing ones"
        assert snapshot(path) == after_first, k
        assert not journal.replaying
        second_part(venue)  # live again: records go straight to the file
        assert snapshot(path) == at_end, k
        file.close()


def test_the_replay_rebuilds_the_live_venue_and_reports_as_it_did(tmp_path: Path) -> None:
    path = tmp_path / "venue.sqlite"
    live = journal_venue(VenueJournal(path))
    first_part(live)
    journal = ReplayJournal(VenueJournal(path), replaying=True)
    replayed = journal_venue(journal)

    first_part(replayed)

    def slots(order: Order | None) -> dict[str, object]:
        assert order is not None
        return {name: getattr(order, name) for name in Order.__slots__ if name != "quantity"}

    assert [o.client_order_id for o in replayed.broker.open_orders()] == ["LMT", "SEL"]
    assert replayed.broker.n_open == live.broker.n_open == 2 and replayed.broker.wants_bars
    assert replayed.broker.positions() == live.broker.positions()
    for coid in live.broker._orders:
        assert slots(replayed.broker.get_order(coid)) == slots(live.broker.get_order(coid))
    # the engine replays too: it hears the same events and fills as the first time
    assert replayed.sink.events == live.sink.events
    assert replayed.sink.fills == live.sink.fills
    assert journal.go_live().n_written == 0


def test_a_replayed_partial_fill_continues_without_refilling_or_recharging_the_fee(
    tmp_path: Path,
) -> None:
    config = PaperBrokerConfig(commission_bps=1.0, fee_per_order=1.0, max_volume_pct=10.0)
    path = tmp_path / "venue.sqlite"

    def session(venue: PaperVenue) -> None:
        venue.bar(0)
        venue.submit("L", 120.0, order_type=OrderType.LIMIT, limit_price=100.0)
        venue.bar(1)  # fills 50 of 120 (10 % of 500)

    reference = journal_venue(None, config)
    session(reference)
    session(journal_venue(VenueJournal(path), config))  # then killed: nothing closed
    journal = ReplayJournal(VenueJournal(path), replaying=True)
    restarted = journal_venue(journal, config)
    session(restarted)

    assert journal.go_live() == SyncReport(2, 0, 1, 1)
    restarted.bar(2)
    reference.bar(2)

    assert [f.fill_id for f in restarted.sink.fills] == ["L-F1", "L-F2"]
    assert restarted.sink.fills == reference.sink.fills
    assert restarted.sink.fills[1].fee == pytest.approx(50.0 * 100.0 * 1e-4)  # no fee_per_order
    assert restarted.broker.positions() == reference.broker.positions() == {"AAA": 100.0}
    assert [row[FEE] for row in snapshot(path)[1]] == pytest.approx([1.0 + 0.5, 0.5])


def test_going_live_writes_the_expiry_of_a_day_order_killed_after_its_fill(
    tmp_path: Path,
) -> None:
    config = PaperBrokerConfig(max_volume_pct=10.0)
    path = tmp_path / "venue.sqlite"

    def session(venue: PaperVenue) -> None:
        venue.bar(0)
        venue.submit("D", 100.0, tif=TimeInForce.DAY)
        venue.bar(1)  # fills 50, then expires the rest

    with contextlib.suppress(Killed):
        session(journal_venue(DyingJournal(path, 2), config))  # the accept and the fill
    assert dict(snapshot(path)[0])["D"][STATUS] == "PARTIALLY_FILLED"
    journal = ReplayJournal(VenueJournal(path), replaying=True)
    session(journal_venue(journal, config))

    assert journal.go_live() == SyncReport(2, 1, 1, 1)

    row = dict(snapshot(path)[0])["D"]
    assert (row[STATUS], row[IS_OPEN]) == ("EXPIRED", 0)
    assert row[REASON] == "DAY order not (fully) filled on its first eligible bar"
    assert row[UPDATED] == MIN_NS


def test_a_gtc_stop_triggered_without_volume_fills_after_going_live(tmp_path: Path) -> None:
    path = tmp_path / "venue.sqlite"

    def session(venue: PaperVenue) -> None:
        venue.bar(0)
        venue.submit("S", 10.0, order_type=OrderType.STOP, stop_price=100.5)
        venue.bar(1, volume=0.0)  # triggers, nothing to fill

    session(journal_venue(VenueJournal(path)))
    journal = ReplayJournal(VenueJournal(path), replaying=True)
    restarted = journal_venue(journal)
    session(restarted)
    assert journal.go_live() == SyncReport(2, 0, 1, 0)

    restarted.bar(2, h=100.2, volume=1_000.0)  # below the stop: fills only if still triggered

    assert [f.fill_id for f in restarted.sink.fills] == ["S-F1"]
    assert [row[FILL_ID] for row in snapshot(path)[1]] == ["S-F1"]


_KILLED_SESSION = """
import os, signal, sys
from ultrathink.core.clock import TestClock
from ultrathink.core.enums import OrderType, Side
from ultrathink.core.events import Bar, OrderRequest
from ultrathink.execution.costs import PaperBrokerConfig
from ultrathink.execution.journal import VenueJournal
from ultrathink.execution.paper import PaperBroker

class Sink:
    def on_order_event(self, event): pass
    def on_fill(self, fill, order): pass

clock = TestClock(0)
config = PaperBrokerConfig(max_volume_pct=10.0)
broker = PaperBroker(config, clock, Sink(), VenueJournal(sys.argv[1]))
broker.submit(OrderRequest("A", 0, "AAA", Side.BUY, 120.0, OrderType.LIMIT, 100.0))
clock.set_ns(60_000_000_000)
broker.on_bar(Bar(60_000_000_000, "AAA", 100.0, 101.0, 99.0, 100.0, 500.0))
broker.submit(OrderRequest("B", clock.now_ns(), "AAA", Side.SELL, 5.0))
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_session_killed_with_sigkill_resumes_from_everything_committed(tmp_path: Path) -> None:
    path = tmp_path / "venue.sqlite"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_KILLED_SESSION), str(path)],
        check=False,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL

    journal = ReplayJournal(VenueJournal(path), replaying=True)
    venue = journal_venue(journal, PaperBrokerConfig(max_volume_pct=10.0))
    venue.submit("A", 120.0, order_type=OrderType.LIMIT, limit_price=100.0)
    venue.bar(1)
    venue.submit("B", 5.0, side=Side.SELL)

    assert journal.last_ts_ns() == MIN_NS
    assert journal.go_live() == SyncReport(3, 0, 2, 1)
    orders = dict(snapshot(path)[0])
    assert [(coid, row[STATUS]) for coid, row in orders.items()] == [
        ("A", "PARTIALLY_FILLED"),
        ("B", "ACCEPTED"),
    ]
    assert venue.broker.positions() == {"AAA": 50.0}


# -- (c) a journal that is not a prefix of the replay ----------------------------------------------


def _add_an_order(path: Path) -> None:
    journal = VenueJournal(path)
    order = Order(OrderRequest("EXTRA", 0, "AAA", Side.BUY, 1.0))
    order.accept(0)
    journal.record(order, updated_ns=0)
    journal.close()


def _sql(statement: str) -> Callable[[Path], None]:
    def tamper(path: Path) -> None:
        conn = sqlite3.connect(path)
        try:
            assert conn.execute(statement).rowcount == 1
            conn.commit()
        finally:
            conn.close()

    return tamper


_CANCELLED = "status = 'CANCELLED', is_open = 0"


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (_add_an_order, r"EXTRA: disk \('EXTRA'"),
        (_sql("UPDATE venue_fills SET price = price + 0.01 WHERE seq = 1"), r"fill #1 is"),
        (_sql("UPDATE venue_fills SET fee = 0 WHERE seq = 2"), r"fill #2 is"),
        (_sql(f"UPDATE venue_orders SET {_CANCELLED} WHERE client_order_id = 'LMT'"), r"LMT: disk"),
        (_sql("UPDATE venue_orders SET reason = 'x' WHERE client_order_id = 'BAD'"), r"BAD"),
        (_sql("DELETE FROM venue_orders WHERE client_order_id = 'CXL'"), r"CXL: disk None"),
        (_sql("UPDATE venue_orders SET quantity = 31 WHERE client_order_id = 'MKT'"), r"MKT: disk"),
    ],
    ids=[
        "extra-order",
        "fill-price",
        "fill-fee",
        "order-state",
        "order-reason",
        "missing-order",
        "order-request",
    ],
)
def test_a_journal_that_is_not_a_prefix_of_the_replay_diverges_and_nothing_is_written(
    tmp_path: Path, reference: Reference, tamper: Callable[[Path], None], message: str
) -> None:
    records = reference[0]
    # a crash after the second fill: a correct sync would write the rest of the records
    k = next(i for i in range(len(records) + 1) if sum(f is not None for _, f in records[:i]) == 2)
    path = tmp_path / "venue.sqlite"
    killed_after(path, k)
    tamper(path)
    before = snapshot(path)
    journal = ReplayJournal(VenueJournal(path), replaying=True)
    first_part(journal_venue(journal))

    with pytest.raises(JournalDivergence, match=message) as info:
        journal.go_live()

    assert isinstance(info.value, PersistenceError)
    assert "does not match its venue journal" in str(info.value)
    assert snapshot(path) == before


def test_a_journal_with_more_fills_than_the_replay_diverges(tmp_path: Path) -> None:
    path = tmp_path / "venue.sqlite"
    first_part(journal_venue(VenueJournal(path)))
    before = snapshot(path)
    journal = ReplayJournal(VenueJournal(path), replaying=True)
    venue = journal_venue(journal)
    venue.bar(0)  # a replay that stops short of the file: not the session that wrote it
    venue.submit("MKT", 30.0)

    with pytest.raises(JournalDivergence, match=r"the journal has \d+ fills, the replay only 0"):
        journal.go_live()

    assert snapshot(path) == before


def test_a_replay_with_another_configuration_diverges(tmp_path: Path) -> None:
    path = tmp_path / "venue.sqlite"
    first_part(journal_venue(VenueJournal(path)))
    before = snapshot(path)
    journal = ReplayJournal(VenueJournal(path), replaying=True)
    first_part(journal_venue(journal, CONFIG.model_copy(update={"slippage_bps": 3.0})))

    with pytest.raises(JournalDivergence, match="fill #1") as info:
        journal.go_live()

    assert "same version, data and options" in str(info.value)
    assert snapshot(path) == before


# -- (d) last_ts_ns ------------------------------------------------------------------------------


def test_last_ts_ns_is_the_latest_order_update_or_fill_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "venue.sqlite"
    journal = ReplayJournal(VenueJournal(path), replaying=False)
    assert journal.last_ts_ns() == -1  # an empty journal

    venue = journal_venue(journal, PaperBrokerConfig())
    venue.clock.set_ns(5)
    venue.submit("A", 10.0)
    assert journal.last_ts_ns() == 5  # the accept

    venue.bar(1)
    assert journal.last_ts_ns() == MIN_NS  # the fill

    venue.submit("B", 10.0, order_type=OrderType.LIMIT, limit_price=50.0)
    venue.clock.set_ns(MIN_NS + 7)
    venue.broker.cancel("B", "done")
    assert journal.last_ts_ns() == MIN_NS + 7  # a cancel between bars


def test_last_ts_ns_reads_the_file_not_the_replay(tmp_path: Path, reference: Reference) -> None:
    path = tmp_path / "venue.sqlite"
    killed_after(path, 3)  # three submits at t=0
    journal = ReplayJournal(VenueJournal(path), replaying=True)

    first_part(journal_venue(journal))

    assert journal.last_ts_ns() == 0
    journal.go_live()
    assert journal.last_ts_ns() == last_ts(reference[0]) >= 4 * MIN_NS
