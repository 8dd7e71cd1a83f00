"""The client's socket-free core on a ``TestClock``: health, switches, no gap, no duplicate.

Time is advanced by the test, so every threshold is checked exactly (at ``stall_s`` nothing
happens, one nanosecond later the switch does), and a Hypothesis test drives random message
streams, disconnects and clock steps through it to check the accounting identity and that
the consumer sees each (symbol, ts) once, in order.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.feed.feed_fixtures import make_bar, make_bars

from ultrathink.core.clock import TestClock
from ultrathink.core.events import Bar
from ultrathink.feed import BarMessage, FeedArbiter, FeedConfig, Heartbeat, MessageError
from ultrathink.feed.protocol import Item

NS = 1_000_000_000
P, B = 0, 1


class Rig:
    """An arbiter with a primary and a backup, both connected, on a ``TestClock``."""

    def __init__(self, **cfg: object) -> None:
        self.clock = TestClock(1_000 * NS)
        config = FeedConfig(**{"stall_s": 1.0, "failback_s": 5.0, **cfg})  # type: ignore[arg-type]
        self.arb = FeedArbiter(config, ["tcp://127.0.0.1:1", "tcp://127.0.0.1:2"], self.clock)
        self.arb.connected(P)
        self.arb.connected(B)

    def send(self, source: int, bars: list[Bar], first_seq: int | None = None) -> int:
        items: list[Item] = [
            BarMessage(bar, None if first_seq is None else first_seq + i)
            for i, bar in enumerate(bars)
        ]
        return self.arb.receive(source, items)

    def hb(self, *sources: int) -> None:
        for source in sources:
            self.arb.receive(source, [Heartbeat(self.clock.now_ns())])

    def after(self, seconds: float) -> list[str]:
        self.clock.advance_ns(int(seconds * NS))
        return [f"{e.from_source}>{e.to_source}:{e.reason}" for e in self.arb.evaluate()]

    def taken(self) -> list[Bar]:
        return self.arb.take_many(1_000_000)


def test_the_active_feed_is_delivered_and_the_standbys_copies_are_duplicates() -> None:
    rig = Rig()
    bars = make_bars(0, 5)
    assert rig.send(P, bars) == 10
    assert rig.send(B, bars) == 0
    assert rig.taken() == bars
    stats = rig.arb.stats()
    assert (stats.delivered, stats.duplicates, stats.held, stats.unaccounted) == (10, 10, 0, 0)


def test_a_stall_fails_over_after_stall_s_and_delivers_what_the_primary_missed() -> None:
    rig = Rig()
    rig.send(P, make_bars(0, 3))
    rig.send(B, make_bars(0, 5))  # the primary stalls after bar 2; the backup goes on
    assert rig.arb.stats().held == 4
    assert rig.after(0.5) == []
    rig.hb(B)
    assert rig.after(0.5) == []  # silent exactly stall_s: not yet
    assert rig.after(1e-9) == ["primary>backup:stall"]
    event = rig.arb.events[0]
    assert event.gapless and "stall_s 1.0" in event.detail and event.ts_ns == rig.clock.now_ns()
    rig.send(B, make_bars(5, 6))
    assert rig.taken() == make_bars(0, 6)  # no gap, no duplicate
    assert rig.arb.stats().failovers == 1 and rig.arb.source == "backup"


def test_bars_the_active_skipped_are_filled_from_the_standby_before_its_next_bar() -> None:
    rig = Rig()
    rig.send(P, make_bars(0, 2))
    rig.send(B, make_bars(0, 5))  # a hiccup shorter than stall_s: the primary lost 2..4
    assert rig.after(0.5) == []
    rig.send(P, make_bars(5, 6))
    rig.send(B, make_bars(5, 6))
    delivered, expected = rig.taken(), make_bars(0, 6)
    for symbol in ("SPY", "QQQ"):
        assert [b for b in delivered if b.symbol == symbol] == [
            b for b in expected if b.symbol == symbol
        ]
    stats = rig.arb.stats()
    assert stats.filled == 6 and stats.duplicates == 6 and stats.held == 0
    assert stats.unaccounted == 0 and rig.arb.source == "primary"


def test_heartbeats_keep_a_quiet_source_healthy() -> None:
    rig = Rig()
    for _ in range(20):
        rig.hb(P, B)
        assert rig.after(0.9) == []
    assert rig.arb.source == "primary" and rig.arb.stats().heartbeats == 40


def test_a_disconnect_fails_over_at_once_but_only_to_a_live_backup() -> None:
    rig = Rig()
    rig.send(P, make_bars(0, 2))
    rig.arb.disconnected(P, "closed by peer")
    assert rig.after(0) == []  # the backup has sent nothing yet: not known to be alive
    rig.hb(B)
    assert rig.after(0) == ["primary>backup:disconnect"]
    assert rig.arb.events[0].detail == "closed by peer"


def test_bad_data_beyond_max_bad_within_the_window_fails_over() -> None:
    rig = Rig(max_bad=2, bad_window_s=10.0, stall_s=100.0)
    rig.hb(P, B)
    bad = MessageError("not_json", "x")
    rig.arb.receive(P, [bad])
    rig.after(5.0)
    rig.arb.receive(P, [bad])
    assert rig.after(5.5) == []  # the first one left the window
    rig.arb.receive(P, [bad])
    assert rig.after(0) == []  # two within 10 s (at 5 and 10.5 s): at the limit
    rig.arb.receive(P, [MessageError("unknown_symbol", "X")])
    assert rig.after(0) == []  # an unknown symbol says nothing about the data's quality
    rig.arb.receive(P, [MessageError("ohlc_inconsistent", "h < c")])
    assert rig.after(0) == ["primary>backup:bad_data"]
    assert "ohlc_inconsistent" in rig.arb.events[0].detail
    assert rig.arb.stats().malformed == {"not_json": 3, "unknown_symbol": 1, "ohlc_inconsistent": 1}


def test_failback_waits_for_failback_s_of_health_and_a_stream_that_joins() -> None:
    rig = Rig()
    rig.send(P, make_bars(0, 2))
    rig.send(B, make_bars(0, 2))
    rig.arb.disconnected(P, "gone")
    assert rig.after(0) == ["primary>backup:disconnect"]
    rig.arb.connected(P)
    rig.send(P, make_bars(3, 4))  # back, but ahead: bar 2 would be skipped
    rig.hb(B)
    assert rig.after(0.9) == []
    rig.send(P, make_bars(4, 6))
    rig.hb(B)
    assert rig.after(0.9) == []
    rig.send(B, make_bars(2, 3))  # the backup delivers bar 2
    rig.hb(P)
    assert rig.after(0.9) == []
    rig.hb(P, B)
    assert rig.after(0.9) == []
    rig.send(B, make_bars(3, 4))  # now the primary's first bar is delivered: it joins
    rig.hb(P, B)
    assert rig.after(0.9) == []  # healthy only 4.5 s so far
    rig.hb(P, B)
    assert rig.after(0.6) == ["backup>primary:recovered"]
    assert rig.arb.events[-1].gapless
    assert rig.taken() == make_bars(0, 6)
    assert rig.arb.stats().failbacks == 1


def test_a_primary_ahead_of_what_was_delivered_does_not_fail_back_until_it_joins() -> None:
    rig = Rig(failback_s=1.0)
    rig.send(B, make_bars(0, 2))
    rig.send(P, make_bars(0, 2))
    rig.arb.disconnected(P, "gone")
    rig.hb(B)
    assert rig.after(0) == ["primary>backup:disconnect"]
    rig.arb.connected(P)
    rig.send(P, make_bars(3, 5))  # bar 2 of both symbols is not in the primary's stream
    for _ in range(4):
        rig.hb(P, B)
        assert rig.after(0.9) == []  # healthy long enough, but it would skip bar 2
    rig.send(B, make_bars(2, 3))
    assert rig.after(0) == []
    rig.send(B, make_bars(3, 4))
    assert rig.after(0) == ["backup>primary:recovered"]
    assert rig.taken() == make_bars(0, 5)


def test_unknown_symbols_are_dropped_and_counted() -> None:
    clock = TestClock(0)
    arb = FeedArbiter(FeedConfig(), ["tcp://127.0.0.1:1"], clock, symbols=["SPY"])
    arb.connected(P)
    arb.receive(P, [BarMessage(make_bar(1, "QQQ"), None), BarMessage(make_bar(1, "SPY"), None)])
    assert arb.take_many(10) == [make_bar(1, "SPY")]
    assert arb.stats().malformed == {"unknown_symbol": 1}


def test_a_connection_repeating_or_going_back_is_bad_data_but_a_new_one_may_resend() -> None:
    rig = Rig()
    rig.send(P, [make_bar(1), make_bar(2), make_bar(2), make_bar(1), make_bar(3)])
    assert rig.arb.stats().malformed == {"duplicate": 1, "out_of_order": 1}
    rig.arb.disconnected(P, "gone")
    rig.arb.connected(P)
    rig.send(P, [make_bar(1), make_bar(2), make_bar(3), make_bar(4)])  # a replay on reconnect
    stats = rig.arb.stats()
    assert stats.malformed == {"duplicate": 1, "out_of_order": 1} and stats.duplicates == 3
    assert [b.ts_ns for b in rig.taken()] == [make_bar(i).ts_ns for i in (1, 2, 3, 4)]
    assert stats.sources[0].reconnects == 1


def test_a_partial_line_at_disconnect_is_counted_truncated() -> None:
    rig = Rig()
    rig.arb.disconnected(P, "gone", truncated=True)
    stats = rig.arb.stats()
    assert stats.malformed == {"truncated": 1} and stats.received == 1 and stats.unaccounted == 0


def test_a_full_standby_buffer_sheds_and_the_loss_makes_a_failover_not_gapless() -> None:
    rig = Rig(standby_buffer=3)
    rig.hb(P)
    rig.send(B, make_bars(0, 5, symbols=["SPY"]))  # nothing delivered yet: all held
    stats = rig.arb.stats()
    assert stats.shed == {"standby_overflow": 2} and stats.held == 3
    rig.arb.disconnected(P, "gone")
    assert rig.after(0) == ["primary>backup:disconnect"]
    assert not rig.arb.events[0].gapless  # bars 0 and 1 were lost and never delivered
    assert rig.taken() == make_bars(2, 5, symbols=["SPY"])
    assert rig.arb.stats().unaccounted == 0


def test_seq_gaps_are_counted_per_connection() -> None:
    rig = Rig()
    rig.send(P, make_bars(0, 2, symbols=["SPY"]), first_seq=10)
    rig.send(P, make_bars(2, 4, symbols=["SPY"]), first_seq=13)
    assert rig.arb.stats().seq_gaps == 1
    rig.arb.receive(P, [MessageError("ohlc_inconsistent", "x", "SPY", make_bar(4).ts_ns, 15)])
    rig.send(P, make_bars(5, 6, symbols=["SPY"]), first_seq=16)
    assert rig.arb.stats().seq_gaps == 1  # a rejected bar still counts in the sequence


def test_the_switch_callback_time_comes_from_the_clock() -> None:
    rig = Rig()
    rig.hb(B)
    rig.arb.disconnected(P, "gone")
    rig.clock.set_ns(2_000 * NS)
    rig.hb(B)
    rig.after(0)
    assert rig.arb.events[0].ts_ns == 2_000 * NS


# -- property: accounting and exactly-once under random streams, failures and time ---------

SYMBOLS = ("A", "B")
NOISE = st.one_of(
    st.tuples(st.just("bar"), st.sampled_from(SYMBOLS), st.integers(0, 30)),
    st.tuples(st.just("hb"), st.none(), st.none()),
    st.tuples(st.just("bad"), st.sampled_from(["not_json", "unknown_symbol"]), st.none()),
)
SOURCE = st.sampled_from([P, B])
STEP = st.one_of(
    # the next bars of the live sequence, to both feeds (either first) or to one only
    st.tuples(st.just("feed"), st.sampled_from(["PB", "BP", "P", "B"]), st.integers(1, 4)),
    st.tuples(st.just("feed"), st.sampled_from(["PB", "BP"]), st.integers(1, 4)),
    st.tuples(st.just("noise"), SOURCE, st.lists(NOISE, max_size=6)),
    st.tuples(st.just("hb"), st.sampled_from(["PB", "P", "B"]), st.none()),
    st.tuples(st.just("drop"), SOURCE, st.booleans()),
    st.tuples(st.just("connect"), SOURCE, st.none()),
    st.tuples(st.just("wait"), st.sampled_from([0.0, 0.3, 1.1, 2.5]), st.none()),
    st.tuples(st.just("take"), st.integers(0, 5), st.none()),
)


def _noise(messages: list[tuple[str, object, object]]) -> list[Item]:
    items: list[Item] = []
    for kind, a, b in messages:
        if kind == "bar":
            assert isinstance(a, str) and isinstance(b, int)
            items.append(BarMessage(make_bar(b, a), None))
        elif kind == "hb":
            items.append(Heartbeat(0))
        else:
            items.append(MessageError(str(a), "generated"))
    return items


def _apply(rig: Rig, step: tuple[str, object, object], sequence: list[Bar]) -> list[Bar]:
    kind, a, b = step
    sources = {"P": P, "B": B}
    if kind == "feed":
        assert isinstance(a, str) and isinstance(b, int)
        n = len(sequence) // 2
        bars = make_bars(n, n + b, symbols=SYMBOLS)
        sequence.extend(bars)
        for bar in bars:
            for name in a:
                rig.send(sources[name], [bar])
    elif kind == "noise":
        assert isinstance(a, int) and isinstance(b, list)
        rig.arb.receive(a, _noise(b))
    elif kind == "hb":
        assert isinstance(a, str)
        rig.hb(*(sources[name] for name in a))
    elif kind == "drop":
        assert isinstance(a, int)
        rig.arb.disconnected(a, "dropped", truncated=bool(b))
    elif kind == "connect":
        assert isinstance(a, int)
        rig.arb.connected(a)
    elif kind == "wait":
        assert isinstance(a, float)
        rig.after(a)
    else:
        assert isinstance(a, int)
        return rig.arb.take_many(a)
    return []


@settings(max_examples=400, deadline=None)
@given(
    steps=st.lists(STEP, max_size=80),
    queue_size=st.integers(1, 8),
    standby_buffer=st.integers(1, 8),
)
def test_every_message_is_accounted_for_and_each_bar_delivered_once_in_order(
    steps: list[tuple[str, object, object]], queue_size: int, standby_buffer: int
) -> None:
    rig = Rig(queue_size=queue_size, standby_buffer=standby_buffer, max_bad=1, failback_s=2.0)
    delivered: list[Bar] = []
    sequence: list[Bar] = []
    for step in steps:
        delivered.extend(_apply(rig, step, sequence))
        stats = rig.arb.stats()
        assert stats.unaccounted == 0, stats
        assert stats.queued <= queue_size and stats.queue_high_water <= queue_size
        assert all(s.held <= standby_buffer for s in stats.sources)
        assert stats.failovers - stats.failbacks == (stats.source == "backup")
    delivered.extend(rig.taken())
    for symbol in SYMBOLS:
        ts = [bar.ts_ns for bar in delivered if bar.symbol == symbol]
        assert ts == sorted(set(ts)), "a bar delivered twice or out of order"
    assert rig.arb.stats().delivered == len(delivered)


# -- property: with one feed up at any time, the consumer gets every bar exactly once ------

OUTAGE = st.one_of(
    st.tuples(st.just("bars"), st.sampled_from(["PB", "BP"]), st.integers(1, 5)),
    st.tuples(st.just("pause"), SOURCE, st.none()),  # the feed loses what it is sent
    st.tuples(st.just("drop"), SOURCE, st.none()),  # disconnected until "up"
    st.tuples(st.just("up"), SOURCE, st.none()),  # resumed or reconnected
    st.tuples(st.just("wait"), st.integers(1, 12), st.none()),  # quarter seconds
)


class _Feeds:
    """Two publishers sending the same bars and heartbeats; a source may be paused or down."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.state = {P: "up", B: "up"}
        self.sequence: list[Bar] = []

    def step(self, kind: str, a: object, b: object) -> None:
        if kind == "bars":
            assert isinstance(a, str) and isinstance(b, int)
            n = len(self.sequence) // 2
            bars = make_bars(n, n + b, symbols=SYMBOLS)
            self.sequence.extend(bars)
            for bar in bars:
                for source in (P, B) if a == "PB" else (B, P):
                    if self.state[source] == "up":
                        self.rig.send(source, [bar])
        elif kind in ("pause", "drop"):
            assert isinstance(a, int)
            if self.state[1 - a] == "up" and self.state[a] == "up":  # one feed stays up
                self.state[a] = kind
                if kind == "drop":
                    self.rig.arb.disconnected(a, "dropped")
        elif kind == "up":
            assert isinstance(a, int)
            if self.state[a] == "drop":
                self.rig.arb.connected(a)
            self.state[a] = "up"
        else:
            assert isinstance(a, int)
            self.wait(a)

    def wait(self, quarters: int) -> None:
        for _ in range(quarters):  # publishers heartbeat every 0.25 s while up
            self.rig.hb(*(s for s in (P, B) if self.state[s] == "up"))
            self.rig.after(0.25)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(OUTAGE, max_size=60))
def test_with_one_feed_always_up_no_bar_is_lost_or_repeated(
    steps: list[tuple[str, object, object]],
) -> None:
    rig = Rig(stall_s=1.0, failback_s=0.5, queue_size=10_000, standby_buffer=10_000)
    feeds = _Feeds(rig)
    delivered: list[Bar] = []
    for kind, a, b in steps:
        feeds.step(kind, a, b)
        delivered.extend(rig.taken())
    for source in (P, B):
        feeds.step("up", source, None)
    feeds.wait(8)  # a failover still due happens now
    feeds.step("bars", "PB", 1)  # the active feed's next bar fills any hole before it
    delivered.extend(rig.taken())
    for symbol in SYMBOLS:  # order across symbols is arrival order (a filled hole comes late)
        assert [b for b in delivered if b.symbol == symbol] == [
            b for b in feeds.sequence if b.symbol == symbol
        ]
    assert len(delivered) == len(feeds.sequence)
    stats = rig.arb.stats()
    assert stats.unaccounted == 0 and not stats.shed
    assert all(event.gapless for event in rig.arb.events if event.reason == "recovered")
