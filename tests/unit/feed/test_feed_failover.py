"""Failover and failback over real sockets: two publishers sending the same bars.

Each test makes one thing fail on the primary (a stall, a dropped connection, bad data), waits
for the switch it must cause (never for a time), keeps publishing, and checks that the
consumer saw every bar exactly once, in order, and the switch events. The thresholds
themselves are tested exactly on a ``TestClock`` in ``test_feed_arbiter.py``; here they are
generous so that a busy machine cannot trip them by accident.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.unit.feed.feed_fixtures import DEADLINE_S, make_bars, publish, take, wait_until

from ultrathink.core.events import Bar
from ultrathink.feed import FeedClient, FeedPublisher, SwitchEvent

Publisher = Callable[..., FeedPublisher]
Client = Callable[..., FeedClient]
MAX_BARS = 3_000  # bounds a loop that publishes until a switch


def _pair(
    publisher: Publisher, client: Client, heartbeat_s: float | None = None, **cfg: Any
) -> tuple[FeedPublisher, FeedPublisher, FeedClient, list[SwitchEvent]]:
    primary, backup = publisher(heartbeat_s=heartbeat_s), publisher(heartbeat_s=heartbeat_s)
    seen: list[SwitchEvent] = []
    feed = client(primary.url, backup.url, cfg=cfg, on_switch=seen.append)
    assert primary.wait_for_clients(1, DEADLINE_S) and backup.wait_for_clients(1, DEADLINE_S)
    return primary, backup, feed, seen


def _publish_until(pubs: list[FeedPublisher], feed: FeedClient, source: str, i: int) -> int:
    """Publish bars ``i``, ``i + 1``, ... as a live feed does until the client uses ``source``.

    The short sleep paces the feed (a switch needs time to pass); nothing depends on its
    length: the loop ends on the switch itself, or fails after ``MAX_BARS`` bars.
    """
    while feed.source != source:
        assert i < MAX_BARS, f"no switch to the {source} after {i} bars: {feed.stats()}"
        publish(pubs, make_bars(i, i + 1), first_seq=2 * i)
        i += 1
        time.sleep(0.01)
    return i


def _reasons(events: tuple[SwitchEvent, ...] | list[SwitchEvent]) -> list[str]:
    return [f"{e.from_source}>{e.to_source}:{e.reason}" for e in events]


def _received_all(feed: FeedClient, got: list[Bar], n_bars: int) -> list[Bar]:
    return got + take(feed, n_bars - len(got))


def test_a_stalled_primary_fails_over_without_a_gap_or_a_duplicate(
    publisher: Publisher, client: Client
) -> None:
    primary, backup, feed, seen = _pair(
        publisher, client, heartbeat_s=0.02, stall_s=1.0, failback_s=3600.0
    )
    both = [primary, backup]
    seq = publish(both, make_bars(0, 10), 0)
    got = take(feed, 20)
    primary.pause()  # hung: sends nothing more, not even heartbeats
    seq = publish(both, make_bars(10, 20), seq)
    wait_until(lambda: feed.source == "backup", "the failover on stall")
    publish(both, make_bars(20, 30), seq)
    got += take(feed, 40)
    assert got == make_bars(0, 30)
    assert _reasons(feed.events) == ["primary>backup:stall"] and seen == list(feed.events)
    assert feed.events[0].gapless and "stall_s 1.0" in feed.events[0].detail
    stats = feed.stats()
    assert stats.failovers == 1 and stats.failbacks == 0 and stats.source == "backup"
    assert stats.unaccounted == 0 and stats.delivered == 60


def test_a_quiet_primary_that_sends_heartbeats_is_not_a_stall(
    publisher: Publisher, client: Client
) -> None:
    primary, backup, feed, _ = _pair(publisher, client, heartbeat_s=0.02, stall_s=1.0)
    # at most 50 heartbeats a second per publisher: 200 mean at least 2 s (twice stall_s)
    wait_until(lambda: feed.stats().heartbeats >= 200, "200 heartbeats")
    assert feed.events == () and feed.source == "primary"
    publish([primary, backup], make_bars(0, 1), 0)
    assert take(feed, 2) == make_bars(0, 1)


def test_a_dropped_primary_fails_over_at_once_and_is_reconnected(
    publisher: Publisher, client: Client
) -> None:
    primary, backup, feed, _ = _pair(publisher, client, stall_s=60.0, failback_s=3600.0)
    both = [primary, backup]
    seq = publish(both, make_bars(0, 10), 0)
    got = take(feed, 20)
    primary.drop_connections()
    wait_until(lambda: feed.source == "backup", "the failover on disconnect")
    seq = publish(both, make_bars(10, 20), seq)
    got += take(feed, 20)
    assert primary.wait_for_accepted(2, DEADLINE_S)
    wait_until(lambda: feed.stats().sources[0].connects == 2, "the primary reconnected")
    publish(both, make_bars(20, 30), seq)
    got += take(feed, 20)
    assert got == make_bars(0, 30)
    assert _reasons(feed.events) == ["primary>backup:disconnect"] and feed.events[0].gapless
    stats = feed.stats()
    assert stats.reconnects == 1 and stats.source == "backup" and stats.unaccounted == 0


def test_bad_data_from_the_primary_fails_over(publisher: Publisher, client: Client) -> None:
    primary, backup, feed, _ = _pair(
        publisher, client, stall_s=60.0, failback_s=3600.0, max_bad=3, bad_window_s=60.0
    )
    both = [primary, backup]
    seq = publish(both, make_bars(0, 10), 0)
    got = take(feed, 20)
    primary.send_raw(b"this is not json\n" * 4)  # more than max_bad=3
    wait_until(lambda: feed.source == "backup", "the failover on bad data")
    publish(both, make_bars(10, 20), seq)
    got += take(feed, 20)
    assert got == make_bars(0, 20)
    assert _reasons(feed.events) == ["primary>backup:bad_data"]
    assert "4 invalid messages" in feed.events[0].detail
    assert feed.stats().malformed == {"not_json": 4}


def test_after_bad_data_the_primary_fails_back_once_healthy(
    publisher: Publisher, client: Client
) -> None:
    primary, backup, feed, _ = _pair(
        publisher, client, stall_s=60.0, failback_s=0.3, max_bad=3, bad_window_s=0.5
    )
    both = [primary, backup]
    publish(both, make_bars(0, 10), 0)
    got = take(feed, 20)
    primary.send_raw(b"this is not json\n" * 4)
    wait_until(lambda: feed.source == "backup", "the failover on bad data")
    i = _publish_until(both, feed, "primary", 10)
    publish(both, make_bars(i, i + 10), 2 * i)
    got = _received_all(feed, got, 2 * (i + 10))
    assert got == make_bars(0, i + 10)
    assert _reasons(feed.events) == ["primary>backup:bad_data", "backup>primary:recovered"]
    assert feed.events[1].gapless
    stats = feed.stats()
    assert stats.failovers == stats.failbacks == 1 and stats.unaccounted == 0


def test_a_reconnected_primary_fails_back_with_each_bar_once(
    publisher: Publisher, client: Client
) -> None:
    primary, backup, feed, _ = _pair(publisher, client, stall_s=60.0, failback_s=0.3)
    both = [primary, backup]
    publish(both, make_bars(0, 10), 0)
    got = take(feed, 20)
    primary.drop_connections()
    wait_until(lambda: feed.source == "backup", "the failover on disconnect")
    assert primary.wait_for_accepted(2, DEADLINE_S) and primary.wait_for_clients(1, DEADLINE_S)
    i = _publish_until(both, feed, "primary", 10)
    publish(both, make_bars(i, i + 10), 2 * i)
    got = _received_all(feed, got, 2 * (i + 10))
    assert got == make_bars(0, i + 10)
    assert _reasons(feed.events) == ["primary>backup:disconnect", "backup>primary:recovered"]
    assert all(event.gapless for event in feed.events)
    stats = feed.stats()
    assert stats.reconnects == 1 and stats.unaccounted == 0 and not stats.shed
