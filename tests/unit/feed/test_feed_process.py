"""``FeedProcess``: a feed client in a child process, read through a pipe.

Real processes, sockets and publishers on loopback; nothing sleeps to synchronise (each wait
polls an observable condition). What must hold is what the in-process client guarantees:
every bar once, in order, bit for bit; bad messages counted; a consumer that pauses finds the
queue shed by its policy, not a pipe that buffers without end; failover and its switch event
in order with the bars; the counters account for every message, also at the close; and a
child that dies is an error, not a silent end.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from tests.unit.feed.feed_fixtures import DEADLINE_S, make_bar, make_bars, publish, wait_until
from tests.unit.feed.test_feed_client import BAD_LINES, _random_bars

from ultrathink.core.events import Bar
from ultrathink.errors import DataSourceError
from ultrathink.feed import FeedConfig, FeedPublisher, SwitchEvent
from ultrathink.feed.process import FeedProcess

Publisher = Callable[..., FeedPublisher]


@pytest.fixture
def process() -> Iterator[Callable[..., FeedProcess]]:
    """Start ``FeedProcess`` readers (``config`` keywords as ``cfg``); all closed at the end."""
    started: list[FeedProcess] = []

    def start(*urls: str, cfg: dict[str, Any] | None = None, **kwargs: Any) -> FeedProcess:
        feed = FeedProcess(*urls, config=FeedConfig(**(cfg or {})), **kwargs).start()
        started.append(feed)
        return feed

    yield start
    for feed in started:
        feed.close()


def _take(feed: FeedProcess, n: int, already: int = 0) -> list[Bar]:
    """``n`` bars from ``feed``, which gave ``already`` before."""
    out: list[Bar] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(out) < n:
        assert time.monotonic() < deadline, f"only {len(out)} of {n} bars: {feed.stats()}"
        bar = feed.get(timeout=0.05)
        if bar is not None:
            out.append(bar)
            # mid-stream counters stay consistent: what is delivered was taken, nothing is
            # unaccounted, whatever frames are in flight
            stats = feed.stats()
            assert 0 <= stats.delivered <= already + len(out) and stats.unaccounted == 0, stats
    return out


def _pump_until(feed: FeedProcess, predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {feed.stats()}"
        feed.pump(0.01)


def test_bars_arrive_once_in_order_bit_for_bit_and_are_real_bars(
    publisher: Publisher, process: Callable[..., FeedProcess]
) -> None:
    pub = publisher()
    feed = process(pub.url)
    wait_until(lambda: pub.stats().clients == 1, "the child's connection")
    bars = _random_bars(5_000, seed=7)
    pub.publish_bars(bars[:2_500], first_seq=0)
    for i, bar in enumerate(bars[2_500:]):
        pub.publish_bar(bar, 2_500 + i)
    got = _take(feed, len(bars))
    assert got == bars
    assert all(type(b) is Bar for b in got)
    assert feed.drain() == []
    _pump_until(feed, lambda: feed.stats().delivered == len(bars), "the counters")
    stats = feed.stats()
    assert stats.unaccounted == 0 and stats.seq_gaps == 0 and stats.queued == 0


def test_bad_messages_are_counted_in_the_child_and_the_good_ones_pass(
    publisher: Publisher, process: Callable[..., FeedProcess]
) -> None:
    pub = publisher()
    feed = process(pub.url, cfg={"max_line_bytes": 256, "max_bad": 1_000}, symbols=["SPY"])
    wait_until(lambda: pub.stats().clients == 1, "the child's connection")
    pub.publish_bar(make_bar(1))
    for line, _ in BAD_LINES:
        pub.send_raw(line)
    pub.publish_bar(make_bar(2))
    assert [b.ts_ns for b in _take(feed, 2)] == [make_bar(1).ts_ns, make_bar(2).ts_ns]
    expected: dict[str, int] = {}
    for _, reason in BAD_LINES:
        expected[reason] = expected.get(reason, 0) + 1
    _pump_until(feed, lambda: feed.stats().malformed == expected, "every bad message counted")
    assert feed.stats().unaccounted == 0


def test_a_paused_consumer_finds_the_childs_queue_shed_by_policy_and_every_bar_counted(
    publisher: Publisher, process: Callable[..., FeedProcess]
) -> None:
    pub = publisher()
    feed = process(pub.url, cfg={"queue_size": 16}, symbols=["SPY"])
    wait_until(lambda: pub.stats().clients == 1, "the child's connection")
    n = 60_000  # far more than the pipe and the queue hold: the child must shed
    pub.publish_bars([make_bar(i) for i in range(n)], first_seq=0)
    # the consumer takes nothing until the child has read every line
    _pump_until(feed, lambda: feed.stats().received >= n, "the child to read everything")
    stats = feed.stats()
    assert stats.shed_total > 0, stats
    got = feed.drain()
    while True:
        feed.pump(0.05)
        more = feed.drain()
        if not more and feed.stats().queued == 0:
            break
        got.extend(more)
    stats = feed.stats()
    assert len(got) == stats.delivered and stats.unaccounted == 0
    assert len(got) + stats.shed_total == n
    ts = [b.ts_ns for b in got]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)  # in order, never twice
    assert got[-1] == make_bar(n - 1)  # conflation keeps the newest


def test_failover_is_reported_in_order_with_the_bars_on_the_consumers_thread(
    publisher: Publisher, process: Callable[..., FeedProcess]
) -> None:
    primary, backup = publisher(heartbeat_s=0.02), publisher(heartbeat_s=0.02)
    seen: list[SwitchEvent] = []
    feed = process(
        primary.url, backup.url, cfg={"stall_s": 1.0, "failback_s": 3600.0}, on_switch=seen.append
    )
    assert primary.wait_for_clients(1, DEADLINE_S) and backup.wait_for_clients(1, DEADLINE_S)
    both = [primary, backup]
    seq = publish(both, make_bars(0, 10), 0)
    got = _take(feed, 20)
    primary.pause()  # hung: sends nothing more, not even heartbeats
    seq = publish(both, make_bars(10, 20), seq)
    _pump_until(feed, lambda: bool(seen), "the switch event")
    publish(both, make_bars(20, 30), seq)
    got += _take(feed, 40, already=len(got))
    assert got == make_bars(0, 30)  # no gap, no duplicate
    assert [(e.from_source, e.to_source, e.reason) for e in seen] == [
        ("primary", "backup", "stall")
    ]
    assert feed.events == tuple(seen) and seen[0].gapless
    _pump_until(feed, lambda: feed.stats().failovers == 1, "the failover counted")
    stats = feed.stats()
    assert stats.source == "backup" and stats.unaccounted == 0


def test_close_keeps_what_arrived_and_the_final_counters_account_for_every_bar(
    publisher: Publisher,
) -> None:
    pub = publisher()
    feed = FeedProcess(pub.url, symbols=["SPY"]).start()
    wait_until(lambda: pub.stats().clients == 1, "the child's connection")
    bars = [make_bar(i) for i in range(300)]
    pub.publish_bars(bars, first_seq=0)
    _pump_until(feed, lambda: feed.stats().received == 300, "the child to read them")
    taken = [feed.get(timeout=DEADLINE_S) for _ in range(100)]
    feed.close()
    left = feed.drain()
    assert taken + left == bars
    assert feed.get(timeout=0) is None and feed.get() is None  # closed: no wait
    stats = feed.stats()
    assert stats.delivered + stats.queued == 300 and stats.unaccounted == 0
    feed.close()  # idempotent


def test_a_child_that_dies_is_an_error_naming_it_not_a_quiet_end(publisher: Publisher) -> None:
    pub = publisher()
    feed = FeedProcess(pub.url).start()
    try:
        proc = feed._proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGKILL)  # not reaped here: the pipe's end can come first
        with pytest.raises(
            DataSourceError, match=r"feed process failed: .*killed by SIGKILL, exit code -9"
        ):
            feed.get(timeout=DEADLINE_S)
    finally:
        feed.close()


def test_a_child_whose_consumer_is_gone_exits(publisher: Publisher) -> None:
    pub = publisher()
    feed = FeedProcess(pub.url).start()
    proc = feed._proc
    assert proc is not None and proc.stdin is not None
    proc.stdin.close()  # what the consumer's death does to the child's stdin
    assert proc.wait(timeout=DEADLINE_S) == 0
    feed.close()


def test_a_child_that_cannot_start_says_why(publisher: Publisher) -> None:
    pub = publisher()
    feed = FeedProcess(pub.url, pub.url)  # a backup equal to the primary: the client refuses
    with pytest.raises(DataSourceError, match=r"feed process failed: .*backup feed"):
        feed.start()
    feed.close()
