"""An inline ``FeedClient`` (``threaded=False``): the consumer's own calls read the sockets.

The threaded client's behaviour is tested in ``test_feed_client.py`` and
``test_feed_failover.py``; these tests check what changes when nobody reads but the consumer:
no thread, bars only while the consumer asks, a paused consumer's backlog read and shed by
the queue's policy at its next ``drain``, and failover judged while it waits. A paper
session's kernel reads its feed this way (``engine.feed_bars``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tests.unit.feed.feed_fixtures import DEADLINE_S, make_bar, make_bars, publish, take
from tests.unit.feed.test_feed_client import BAD_LINES, _random_bars

from ultrathink.feed import FeedClient, FeedPublisher

Publisher = Callable[..., FeedPublisher]
Client = Callable[..., FeedClient]


def _pump_until(feed: FeedClient, predicate: Callable[[], bool], what: str) -> None:
    """Read ``feed`` (as a consumer that takes no bars would) until ``predicate`` holds."""
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {feed.stats()}"
        feed.pump(0.01)


def _feed_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ultrathink-feed"]


def test_an_inline_client_reads_on_the_callers_thread_bit_for_bit(
    publisher: Publisher, client: Client
) -> None:
    pub = publisher()
    feed = client(pub.url, threaded=False)
    assert _feed_threads() == []
    assert feed.stats().sources[0].connects == 0  # nothing is read until the consumer asks
    _pump_until(feed, lambda: pub.stats().clients == 1, "the connection")
    bars = _random_bars(2_000, seed=5)
    pub.publish_bars(bars[:1_000], first_seq=0)
    for i, bar in enumerate(bars[1_000:]):
        pub.publish_bar(bar, 1_000 + i)
    assert take(feed, len(bars)) == bars
    assert _feed_threads() == []
    stats = feed.stats()
    assert stats.delivered == len(bars) and stats.unaccounted == 0 and stats.seq_gaps == 0


def test_an_inline_client_counts_each_malformed_message_and_goes_on(
    publisher: Publisher, client: Client
) -> None:
    pub = publisher()
    feed = client(pub.url, cfg={"max_line_bytes": 256, "max_bad": 1_000}, symbols=["SPY"],
                  threaded=False)  # fmt: skip
    _pump_until(feed, lambda: pub.stats().clients == 1, "the connection")
    pub.publish_bar(make_bar(1))
    for line, _ in BAD_LINES:
        pub.send_raw(line)
    pub.publish_bar(make_bar(2))
    assert [b.ts_ns for b in take(feed, 2)] == [make_bar(1).ts_ns, make_bar(2).ts_ns]
    expected: dict[str, int] = {}
    for _, reason in BAD_LINES:
        expected[reason] = expected.get(reason, 0) + 1
    _pump_until(feed, lambda: feed.stats().malformed == expected, "every bad message counted")
    stats = feed.stats()
    assert stats.received == 2 + len(BAD_LINES) and stats.unaccounted == 0


def test_a_paused_inline_consumer_reads_its_backlog_and_the_queue_sheds_by_its_policy(
    publisher: Publisher, client: Client
) -> None:
    pub = publisher()
    feed = client(pub.url, cfg={"queue_size": 8}, threaded=False)
    _pump_until(feed, lambda: pub.stats().clients == 1, "the connection")
    bars = make_bars(0, 200, symbols=["A", "B", "C"])
    pub.publish_bars(bars)
    assert pub.wait_drained(DEADLINE_S)
    assert feed.stats().received == 0  # the consumer is away: the bytes wait in the socket
    kept: list = []
    while len(kept) < 8:  # the next drains read the backlog, shedding as the queue fills
        kept += feed.drain()
        assert feed.stats().received <= len(bars)
    stats = feed.stats()
    assert stats.received == len(bars) and stats.shed == {"conflated": len(bars) - 8}
    assert {b.symbol: b for b in kept} == {b.symbol: b for b in bars[-3:]}  # latest wins
    assert [b.ts_ns for b in kept] == sorted(b.ts_ns for b in kept)
    assert stats.unaccounted == 0 and stats.delivered == 8


def test_an_inline_client_fails_over_on_a_stalled_primary_while_its_consumer_waits(
    publisher: Publisher, client: Client
) -> None:
    primary, backup = publisher(heartbeat_s=0.02), publisher(heartbeat_s=0.02)
    feed = client(primary.url, backup.url, cfg={"stall_s": 1.0, "failback_s": 3600.0},
                  threaded=False)  # fmt: skip
    _pump_until(feed, lambda: primary.stats().clients == 1 and backup.stats().clients == 1, "both")
    both = [primary, backup]
    seq = publish(both, make_bars(0, 10), 0)
    got = take(feed, 20)
    primary.pause()  # hung: sends nothing more, not even heartbeats
    seq = publish(both, make_bars(10, 20), seq)
    got += take(feed, 20)  # the consumer's waits judge the stall and switch
    _pump_until(feed, lambda: feed.source == "backup", "the failover on stall")
    publish(both, make_bars(20, 30), seq)
    got += take(feed, 20)
    assert got == make_bars(0, 30)
    assert [e.reason for e in feed.events] == ["stall"] and feed.events[0].gapless
    assert feed.stats().unaccounted == 0


def test_closing_an_inline_client_closes_its_sockets_and_keeps_its_queue(
    publisher: Publisher, client: Client
) -> None:
    pub = publisher()
    feed = client(pub.url, threaded=False)
    _pump_until(feed, lambda: pub.stats().clients == 1, "the connection")
    pub.publish_bars(make_bars(0, 3, symbols=["A"]))
    _pump_until(feed, lambda: feed.stats().queued == 3, "three bars queued")
    feed.close()
    assert pub.wait_for_clients(0, DEADLINE_S)  # the socket is closed: the publisher sees it
    assert feed.get(timeout=0) == make_bar(0, "A", 100.0)
    assert feed.drain() == make_bars(1, 3, symbols=["A"])
    assert feed.get() is None  # closed and empty: returns at once
    feed.close()  # twice is harmless


def test_drain_without_read_takes_only_what_is_queued(publisher: Publisher, client: Client) -> None:
    pub = publisher()
    feed = client(pub.url, threaded=False)
    _pump_until(feed, lambda: pub.stats().clients == 1, "the connection")
    bars = make_bars(0, 50)
    pub.publish_bars(bars, first_seq=0)
    _pump_until(feed, lambda: feed.stats().queued == len(bars), "the bars read and queued")
    pub.publish_bars(make_bars(50, 60), first_seq=len(bars))  # in the socket, not read yet
    assert feed.drain(read=False) == bars  # the queue only: nothing more is read
    assert feed.stats().received == len(bars)
    assert take(feed, 20) == make_bars(50, 60)
