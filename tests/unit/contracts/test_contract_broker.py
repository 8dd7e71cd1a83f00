"""The Broker contract over every broker: paper (bare, journaled, replay-journaled), faulty."""

from __future__ import annotations

from pathlib import Path

from ultrathink.core.clock import Clock
from ultrathink.execution.broker import Broker, ExecutionSink
from ultrathink.execution.costs import PaperBrokerConfig
from ultrathink.execution.journal import VenueJournal
from ultrathink.execution.journal_replay import ReplayJournal
from ultrathink.execution.paper import PaperBroker
from ultrathink.stress.faults import FaultyBroker
from ultrathink.testing.contracts import BrokerContract
from ultrathink.testing.fakes import Venue

#: a retail-like venue that fills thin bars in parts (10% of a bar's volume)
COSTLY = PaperBrokerConfig(
    commission_bps=1.0, fee_per_order=1.0, slippage_bps=2.0, slippage_vol_mult=0.05,
    max_volume_pct=10.0,
)  # fmt: skip


class PaperContract(BrokerContract):
    """The paper-broker variants (this suite found open_orders() grouped by symbol: fixed)."""


class TestPaperBroker(PaperContract):
    def make_broker(self, clock: Clock, sink: ExecutionSink, tmp_path: Path) -> Broker:
        return PaperBroker(PaperBrokerConfig(), clock, sink)


class TestJournaledPaperBroker(PaperContract):
    def make_broker(self, clock: Clock, sink: ExecutionSink, tmp_path: Path) -> Broker:
        journal = VenueJournal(tmp_path / "venue" / "venue.sqlite")
        self.on_teardown(journal.close)
        return PaperBroker(COSTLY, clock, sink, journal)


class TestReplayJournaledPaperBroker(PaperContract):
    def make_broker(self, clock: Clock, sink: ExecutionSink, tmp_path: Path) -> Broker:
        journal = ReplayJournal(VenueJournal(tmp_path / "venue.sqlite"), replaying=False)
        self.on_teardown(journal.close)
        return PaperBroker(COSTLY, clock, sink, journal)


class TestFaultyBrokerWithoutFaults(PaperContract):
    def make_broker(self, clock: Clock, sink: ExecutionSink, tmp_path: Path) -> Broker:
        inner = PaperBroker(PaperBrokerConfig(max_volume_pct=10.0), clock, sink)
        return FaultyBroker(inner, fail_rate=0.0, seed=7)


def test_a_journaled_venue_keeps_every_order_the_contract_session_made(tmp_path: Path) -> None:
    journal = VenueJournal(tmp_path / "venue.sqlite")
    venue = Venue.paper(COSTLY, journal)
    venue.bar(0)
    venue.submit("A", 12.0)
    venue.submit("R", 0.0)
    for i in range(1, 5):
        venue.bar(i, volume=50.0)
    state = journal.load()
    journal.close()

    assert list(state.orders) == ["A", "R"]
    assert [f.fill_id for f in state.fills] == [f.fill_id for f in venue.sink.fills]
