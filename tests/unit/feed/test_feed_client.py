"""``FeedClient`` against real ``FeedPublisher``s on 127.0.0.1: data path, bad data, queue.

Failover and failback over sockets are in ``test_feed_failover.py``; the thresholds are
checked exactly, on a ``TestClock``, in ``test_feed_arbiter.py``.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest
from tests.unit.feed.feed_fixtures import (
    DEADLINE_S,
    STEP_NS,
    T0_NS,
    make_bar,
    make_bars,
    take,
    wait_until,
)

from ultrathink.core.events import Bar
from ultrathink.errors import ConfigError
from ultrathink.feed import FeedClient, FeedConfig, FeedPublisher

Publisher = Callable[..., FeedPublisher]
Client = Callable[..., FeedClient]


def _random_bars(n: int, seed: int) -> list[Bar]:
    # prices from random bit patterns: every exponent, subnormals, long mantissas
    rng = np.random.default_rng(seed)
    bits = rng.integers(1, 0x7FEFFFFFFFFFFFFF, size=(n, 3), dtype=np.int64)
    values = bits.view(np.float64)
    bars = []
    for i, (a, c, v) in enumerate(values.tolist()):
        bars.append(Bar(T0_NS + i * STEP_NS, "SPY", a, max(a, c), min(a, c), c, v))
    return bars


def test_bars_round_trip_bit_for_bit(publisher: Publisher, client: Client) -> None:
    pub = publisher()
    feed = client(pub.url)
    assert pub.wait_for_clients(1, DEADLINE_S)
    bars = [*_random_bars(2_000, seed=3), Bar(T0_NS + 10**15, "SPY", 0.1, 0.3, 0.1, 0.2, 0.0)]
    pub.publish_bars(bars[:1_000], first_seq=0)
    for i, bar in enumerate(bars[1_000:]):
        pub.publish_bar(bar, 1_000 + i)
    got = take(feed, len(bars))
    assert got == bars
    pack = struct.Struct("<q5d").pack
    assert [pack(b.ts_ns, *b[2:]) for b in got] == [pack(b.ts_ns, *b[2:]) for b in bars]
    stats = feed.stats()
    assert stats.delivered == len(bars) and stats.malformed == {} and stats.seq_gaps == 0


BAD_LINES = [
    (b"hello\n", "not_json"),
    (b'{"type":"quote","sym":"SPY"}\n', "unknown_type"),
    (b'{"type":"bar","sym":"SPY","ts":1.5,"o":1,"h":1,"l":1,"c":1,"v":1}\n', "bad_field"),
    (b'{"type":"bar","sym":"SPY","ts":9,"o":0,"h":1,"l":1,"c":1,"v":1}\n', "non_positive_price"),
    (b'{"type":"bar","sym":"SPY","ts":9,"o":2,"h":1,"l":1,"c":1,"v":1}\n', "ohlc_inconsistent"),
    (b'{"type":"bar","sym":"SPY","ts":9,"o":1,"h":1,"l":1,"c":1,"v":-1}\n', "negative_volume"),
    (b'{"type":"bar","sym":"XYZ","ts":9,"o":1,"h":1,"l":1,"c":1,"v":1}\n', "unknown_symbol"),
    (b'{"type":"bar","sym":"SPY","ts":' + str(make_bar(1).ts_ns).encode() + b',"o":1,"h":1,'
     b'"l":1,"c":1,"v":1}\n', "duplicate"),
    (b'{"type":"bar","sym":"SPY","ts":' + str(make_bar(0).ts_ns).encode() + b',"o":1,"h":1,'
     b'"l":1,"c":1,"v":1}\n', "out_of_order"),
    (b'{"type":"hb","ts":1,"pad":"' + b"x" * 300 + b'"}\n', "line_too_long"),
]  # fmt: skip


def test_each_malformed_message_is_counted_by_reason_and_the_client_goes_on(
    publisher: Publisher, client: Client
) -> None:
    pub = publisher()
    cfg = {"max_line_bytes": 256, "max_bad": 1_000}
    feed = client(pub.url, cfg=cfg, symbols=["SPY"])
    assert pub.wait_for_clients(1, DEADLINE_S)
    pub.publish_bar(make_bar(1))
    for line, _ in BAD_LINES:
        pub.send_raw(line)
    pub.publish_bar(make_bar(2))  # the client went on
    # a line cut by a disconnect, then the next connection goes on
    pub.send_raw(b'{"type":"hb"')
    pub.drop_connections()
    assert pub.wait_for_accepted(2, DEADLINE_S) and pub.wait_for_clients(1, DEADLINE_S)
    pub.publish_bar(make_bar(3))
    assert [b.ts_ns for b in take(feed, 3)] == [make_bar(i).ts_ns for i in (1, 2, 3)]
    expected = {reason: 0 for _, reason in BAD_LINES}
    for _, reason in BAD_LINES:
        expected[reason] += 1
    expected["truncated"] = 1
    wait_until(lambda: feed.stats().malformed == expected, "every bad message counted")
    stats = feed.stats()
    assert stats.delivered == 3 and stats.unaccounted == 0 and stats.source == "primary"
    assert stats.received == 3 + len(BAD_LINES) + 1


def test_a_consumer_that_does_not_read_keeps_the_latest_bars_within_the_bound(
    publisher: Publisher, client: Client
) -> None:
    pub = publisher()
    feed = client(pub.url, cfg={"queue_size": 8})
    assert pub.wait_for_clients(1, DEADLINE_S)
    bars = make_bars(0, 200, symbols=["A", "B", "C"])
    pub.publish_bars(bars[:300])
    pub.publish_bars(bars[300:])
    wait_until(lambda: feed.stats().received == len(bars), "every bar read")
    stats = feed.stats()
    assert stats.queued == 8 and stats.queue_high_water == 8 and stats.queue_capacity == 8
    assert stats.shed == {"conflated": len(bars) - 8}
    assert stats.received == stats.delivered + stats.shed_total + stats.duplicates + (
        stats.malformed_total + stats.heartbeats + stats.queued + stats.held
    )
    kept = feed.drain()
    # a full queue sheds the oldest bar of the new bar's symbol: each symbol keeps the share
    # it had when the queue filled (3, 3 and 2 of the first 8): its latest bars, in order
    share = Counter(b.symbol for b in bars[:8])
    latest = {s: [b for b in bars if b.symbol == s][-n:] for s, n in share.items()}
    assert kept == [b for b in bars if b in latest[b.symbol]]
    assert {b.symbol: b for b in kept} == {b.symbol: b for b in bars[-3:]}  # latest wins
    after = feed.stats()
    assert after.delivered == 8 and after.queued == 0 and after.unaccounted == 0


def test_without_a_bar_of_its_symbol_the_oldest_bar_is_shed(
    publisher: Publisher, client: Client
) -> None:
    pub = publisher()
    feed = client(pub.url, cfg={"queue_size": 2})
    assert pub.wait_for_clients(1, DEADLINE_S)
    pub.publish_bars([make_bar(1, "A"), make_bar(1, "B"), make_bar(1, "C")])
    wait_until(lambda: feed.stats().received == 3, "three bars read")
    assert feed.stats().shed == {"queue_full": 1}
    assert feed.drain() == [make_bar(1, "B"), make_bar(1, "C")]


def test_get_times_out_and_close_wakes_a_waiting_consumer(
    publisher: Publisher, client: Client
) -> None:
    pub = publisher()
    feed = client(pub.url)
    assert pub.wait_for_clients(1, DEADLINE_S)
    assert feed.get(timeout=0) is None and feed.get(timeout=0.01) is None
    got: list[Bar | None] = []
    waiting = threading.Thread(target=lambda: got.append(feed.get()))
    waiting.start()
    pub.publish_bar(make_bar(1))
    wait_until(lambda: got == [make_bar(1)], "the waiting get to return the bar")
    waiting.join(DEADLINE_S)
    consumer = threading.Thread(target=lambda: got.extend(feed))  # the iterator, until close
    consumer.start()
    pub.publish_bar(make_bar(2))
    wait_until(lambda: len(got) == 2, "the iterator to yield")
    feed.close()
    consumer.join(DEADLINE_S)
    assert not consumer.is_alive() and got == [make_bar(1), make_bar(2)]
    assert pub.wait_for_clients(0, DEADLINE_S)  # the socket is closed: the publisher sees it
    feed.close()  # twice is harmless
    assert feed.get() is None


def test_reconnects_with_capped_backoff_until_the_publisher_comes(
    publisher: Publisher,
) -> None:
    with socket.socket() as probe:  # a port nobody listens on (yet)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = FeedConfig(backoff_initial_s=0.01, backoff_max_s=0.05)
    with FeedClient(f"tcp://127.0.0.1:{port}", config=cfg) as feed:
        wait_until(lambda: feed.stats().sources[0].connect_failures >= 3, "refused attempts")
        pub = publisher(port=port)
        assert pub.wait_for_clients(1, DEADLINE_S)
        pub.publish_bar(make_bar(1))
        assert take(feed, 1) == [make_bar(1)]
        stats = feed.stats().sources[0]
        assert stats.connected and stats.connects == 1 and stats.reconnects == 0


def test_backoff_doubles_up_to_the_cap_without_jitter() -> None:
    cfg = FeedConfig(backoff_initial_s=0.05, backoff_max_s=0.3)
    assert [cfg.backoff_s(i) for i in range(6)] == [0.05, 0.1, 0.2, 0.3, 0.3, 0.3]
    assert cfg.backoff_s(10_000) == 0.3


def test_a_switch_callback_that_raises_does_not_stop_the_feed(
    publisher: Publisher, client: Client
) -> None:
    primary, backup = publisher(), publisher()
    seen = []

    def callback(event: object) -> None:
        seen.append(event)
        raise RuntimeError("a bug in the callback")

    feed = client(primary.url, backup.url, on_switch=callback, cfg={"stall_s": 60.0})
    assert primary.wait_for_clients(1, DEADLINE_S) and backup.wait_for_clients(1, DEADLINE_S)
    backup.heartbeat()
    wait_until(lambda: feed.stats().heartbeats == 1, "the backup's heartbeat")
    primary.close()
    wait_until(lambda: feed.source == "backup", "the failover")
    backup.publish_bar(make_bar(1))
    assert take(feed, 1) == [make_bar(1)]
    assert seen == list(feed.events) and len(seen) == 1


def test_bad_addresses_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="must start with tcp://"):
        FeedClient("udp://127.0.0.1:9100")
    with pytest.raises(ConfigError, match="not a loopback address"):
        FeedClient("tcp://127.0.0.1:9100", "tcp://192.0.2.1:9100")
    with pytest.raises(ConfigError, match="a backup must be another publisher"):
        FeedClient("tcp://127.0.0.1:9100", "tcp://127.0.0.1:9100/")
    feed = FeedClient("tcp://192.0.2.1:9100", allow_remote=True)  # built, never started
    feed.close()


def test_a_client_starts_once() -> None:
    feed = FeedClient("tcp://127.0.0.1:9")
    with feed, pytest.raises(RuntimeError, match="starts once"):
        feed.start()
    with pytest.raises(RuntimeError, match="starts once"):
        feed.start()
