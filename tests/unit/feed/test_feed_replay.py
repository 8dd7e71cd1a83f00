"""``feed.replay``: pacing and grouping on a virtual clock; readiness and draining on sockets."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from typing import Any

import pytest
from tests.unit.feed.feed_fixtures import DEADLINE_S, STEP_NS, make_bar, make_bars

from ultrathink.core.clock import LiveClock
from ultrathink.core.events import Bar
from ultrathink.errors import ConfigError
from ultrathink.feed import FeedPublisher
from ultrathink.feed.replay import Pace, ReplayResult, replay, wait_drained, wait_for_client

SECOND_NS = 1_000_000_000


class VirtualClock(LiveClock):
    """Monotonic time that moves only when the replay sleeps."""

    def __init__(self) -> None:
        self.now_mono = 0

    def monotonic_ns(self) -> int:
        return self.now_mono

    def sleep_until_monotonic_ns(self, deadline_ns: int) -> None:
        self.now_mono = max(self.now_mono, deadline_ns)


class Recorder:
    """Stands for the publisher: records each write with the virtual time it happened."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.writes: list[tuple[int, list[Bar], int | None]] = []

    def publish_bars(self, bars: Iterable[Bar], first_seq: int | None = None) -> int | None:
        batch = list(bars)
        self.writes.append((self.clock.now_mono, batch, first_seq))
        return None if first_seq is None else first_seq + len(batch)


def run(bars: list[Bar], pace: Pace, **kw: Any) -> tuple[Recorder, ReplayResult]:
    clock = VirtualClock()
    recorder = Recorder(clock)
    result = replay(recorder, bars, pace, clock=clock, **kw)
    return recorder, result


def test_speed_paces_by_the_bars_own_spacing_and_sends_a_timestamp_together() -> None:
    # minute bars at 60x real time: one timestamp per second; minute 2 is missing
    bars = [make_bar(0, "SPY"), make_bar(1, "QQQ"), make_bar(1, "SPY"), make_bar(3, "SPY")]
    recorder, result = run(bars, Pace(speed=60.0))

    assert [(t, b, s) for t, b, s in recorder.writes] == [
        (0, bars[:1], 0),
        (1 * SECOND_NS, bars[1:3], 1),
        (3 * SECOND_NS, bars[3:], 3),
    ]
    assert result.n_bars == 4 and result.n_timestamps == 3 and not result.interrupted
    assert result.next_seq == 4


def test_rate_counts_bars_not_timestamps() -> None:
    bars = make_bars(0, 3)  # two symbols per timestamp
    recorder, _ = run(bars, Pace(rate_bars_per_s=4.0), first_seq=10)

    assert [(t, len(b), s) for t, b, s in recorder.writes] == [
        (0, 2, 10),
        (SECOND_NS // 2, 2, 12),
        (SECOND_NS, 2, 14),
    ]
    assert [bar for _, batch, _ in recorder.writes for bar in batch] == bars


def test_max_sends_in_batches_without_waiting() -> None:
    bars = [make_bar(i) for i in range(3000)]
    recorder, result = run(bars, Pace())

    assert [(t, len(b)) for t, b, _ in recorder.writes] == [(0, 1024), (0, 1024), (0, 952)]
    assert result.n_timestamps == 3000


def test_a_stop_ends_it_between_timestamps() -> None:
    bars = make_bars(0, 10)
    clock = VirtualClock()
    recorder = Recorder(clock)
    result = replay(recorder, bars, Pace(rate_bars_per_s=2.0), clock=clock,
                    should_stop=lambda: bool(recorder.writes))  # fmt: skip

    assert result.interrupted and result.n_bars == 2 and result.n_timestamps == 1
    assert len(recorder.writes) == 1


def test_the_achieved_rate() -> None:
    bars = [Bar(i * STEP_NS, "SPY", 1.0, 1.0, 1.0, 1.0, 1.0) for i in range(5)]
    _, result = run(bars, Pace(rate_bars_per_s=2.0))

    assert result.elapsed_s == 2.0 and result.bars_per_s == 2.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"speed": 1.0, "rate_bars_per_s": 1.0}, "not both"),
        ({"speed": 0.0}, "--speed must be a positive number"),
        ({"rate_bars_per_s": float("inf")}, "--rate must be a positive number"),
    ],
)
def test_a_bad_pace_is_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Pace(**kwargs)


def test_a_pace_describes_itself() -> None:
    assert Pace(speed=60).describe() == "60x real time"
    assert Pace(rate_bars_per_s=2.5).describe() == "2.5 bars/s"
    assert Pace().describe() == "max"


def test_waiting_for_a_client() -> None:
    with FeedPublisher(heartbeat_s=None) as pub:
        assert not wait_for_client(pub, 0.05)
        assert not wait_for_client(pub, DEADLINE_S, should_stop=lambda: True)
        with socket.create_connection(("127.0.0.1", pub.port), timeout=DEADLINE_S):
            assert wait_for_client(pub, DEADLINE_S)


def test_drained_once_a_slow_reader_has_read_everything() -> None:
    blob = b"x" * (24 * 1024 * 1024)  # more than the sockets' buffers hold
    with FeedPublisher(heartbeat_s=None, max_buffer_bytes=len(blob) + 1) as pub:
        with socket.create_connection(("127.0.0.1", pub.port), timeout=DEADLINE_S) as sock:
            assert pub.wait_for_clients(1, DEADLINE_S)
            pub.send_raw(blob)
            assert not pub.wait_drained(0.0)  # the reader has not read: the rest waits
            assert not wait_drained(pub, DEADLINE_S, should_stop=lambda: True)
            received = [0]

            def read() -> None:
                while received[0] < len(blob) and (chunk := sock.recv(1 << 20)):
                    received[0] += len(chunk)

            reader = threading.Thread(target=read)
            reader.start()
            assert wait_drained(pub, DEADLINE_S)
            reader.join(DEADLINE_S)
            # read while the client is still connected: once it closes, the publisher may
            # count a client_closed at any moment
            assert pub.stats().disconnects == {}
        assert received[0] == len(blob)
