"""``FeedPublisher`` on 127.0.0.1: readiness, fan-out, heartbeats, pause, slow clients."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
from tests.unit.feed.feed_fixtures import DEADLINE_S, make_bar, make_bars, take, wait_until

from ultrathink.errors import ConfigError
from ultrathink.feed import FeedClient, FeedPublisher

Publisher = Callable[..., FeedPublisher]
Client = Callable[..., FeedClient]


def test_the_port_is_known_and_listening_when_start_returns() -> None:
    pub = FeedPublisher(heartbeat_s=None)
    with pytest.raises(RuntimeError, match="after start"):
        _ = pub.port
    with pub:
        assert pub.url == f"tcp://127.0.0.1:{pub.port}" and pub.port > 0
        with socket.create_connection(("127.0.0.1", pub.port), timeout=DEADLINE_S) as sock:
            assert pub.wait_for_clients(1, DEADLINE_S)
            pub.publish_bar(make_bar(1), seq=5)
            sock.settimeout(DEADLINE_S)
            line = b""
            while not line.endswith(b"\n"):
                line += sock.recv(4096)
            assert line.startswith(b'{"type":"bar","sym":"SPY","ts":') and b'"seq":5' in line
    pub.close()  # twice is harmless


def test_every_client_gets_every_bar(publisher: Publisher, client: Client) -> None:
    pub = publisher()
    feeds = [client(pub.url) for _ in range(3)]
    assert pub.wait_for_clients(3, DEADLINE_S)
    bars = make_bars(0, 50)
    pub.publish_bars(bars, first_seq=0)
    for feed in feeds:
        assert take(feed, len(bars)) == bars
    assert pub.stats().messages == len(bars) and pub.stats().accepted == 3


def test_idle_heartbeats_and_pause(publisher: Publisher, client: Client) -> None:
    pub = publisher(heartbeat_s=0.01)
    feed = client(pub.url, cfg={"stall_s": 60.0})
    assert pub.wait_for_clients(1, DEADLINE_S)
    wait_until(lambda: feed.stats().heartbeats >= 3, "idle heartbeats")
    pub.pause()
    pub.publish_bar(make_bar(1))  # lost, as a hung feed loses it
    pub.heartbeat()
    pub.resume()
    pub.publish_bar(make_bar(2))
    assert take(feed, 1) == [make_bar(2)]
    stats = pub.stats()
    assert stats.dropped_paused == 2 and stats.heartbeats >= 3


def test_a_slow_client_is_disconnected_and_the_others_keep_up(
    publisher: Publisher, client: Client
) -> None:
    pub = publisher(max_buffer_bytes=256 * 1024)
    feed = client(pub.url)
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window, never read
    slow.connect(("127.0.0.1", pub.port))
    try:
        assert pub.wait_for_clients(2, DEADLINE_S)
        n = 0
        while not pub.stats().disconnects:
            assert n < 200_000, f"the slow client was never dropped: {pub.stats()}"
            batch = make_bars(n, n + 100, symbols=["SPY"])
            pub.publish_bars(batch)
            assert take(feed, len(batch)) == batch  # the reading client keeps up
            n += 100
        assert pub.stats().disconnects == {"slow_client": 1}
        assert pub.wait_for_clients(1, DEADLINE_S)
        pub.publish_bar(make_bar(n))
        assert take(feed, 1) == [make_bar(n)]
        assert feed.stats().delivered == n + 1 and feed.stats().shed == {}
    finally:
        slow.close()


def test_a_client_that_leaves_is_counted(publisher: Publisher) -> None:
    pub = publisher()
    with socket.create_connection(("127.0.0.1", pub.port), timeout=DEADLINE_S):
        assert pub.wait_for_clients(1, DEADLINE_S)
    assert pub.wait_for_clients(0, DEADLINE_S) is True
    wait_until(lambda: pub.stats().disconnects == {"client_closed": 1}, "the close counted")
    assert pub.stats().clients == 0


def test_bad_publisher_settings_are_config_errors(publisher: Publisher) -> None:
    with pytest.raises(ConfigError, match="not a loopback address"):
        FeedPublisher("0.0.0.0")
    with pytest.raises(ConfigError, match="heartbeat_s must be > 0"):
        FeedPublisher(heartbeat_s=0.0)
    taken = publisher()
    with pytest.raises(ConfigError, match=r"cannot listen on 127\.0\.0\.1"):
        FeedPublisher(port=taken.port).start()
