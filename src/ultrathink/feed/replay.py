"""Replay stored bars as a live feed: the adapter behind ``ultrathink data feed``.

``replay`` publishes bars through a ``FeedPublisher`` in timestamp order, every bar of a
timestamp in one write (``publish_bars``, numbered by ``seq``), each with its original ``ts``:
a ``paper --feed`` session's clock follows the bars. ``Pace`` says when each timestamp is
due: ``speed`` times real time from the bars' own spacing (as ``paper --speed``), a rate in
bars per second, or as fast as the publisher takes them. Bars that are due together go in
one write (at most ``_BATCH``), so an unpaced replay costs one write per batch.

No sockets or threads of its own: ``wait_for_client``, ``replay`` and ``wait_drained`` run
on the caller's thread, each bounded, and return early when ``should_stop()`` says so (the
command's Ctrl-C), checked at least every ``_SLICE_S``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ultrathink.core.clock import LiveClock
from ultrathink.core.events import Bar
from ultrathink.errors import ConfigError
from ultrathink.feed.publisher import FeedPublisher

__all__ = ["Pace", "ReplayResult", "replay", "wait_drained", "wait_for_client"]

_NS = 1_000_000_000
#: the longest a wait goes without looking at ``should_stop``
_SLICE_S = 0.05
#: bars sent in one write at most when several timestamps are due at once
_BATCH = 1024

StopCheck = Callable[[], bool]


def _never() -> bool:
    return False


@dataclass(frozen=True)
class Pace:
    """When each timestamp is due: ``speed`` × real time, ``rate_bars_per_s``, or neither (max).

    Raises
    ------
    ConfigError
        Both given, or a value that is not a finite positive number.
    """

    speed: float | None = None
    rate_bars_per_s: float | None = None

    def __post_init__(self) -> None:
        if self.speed is not None and self.rate_bars_per_s is not None:
            raise ConfigError("pace a replay by --speed or by --rate, not both")
        for flag, value in (("--speed", self.speed), ("--rate", self.rate_bars_per_s)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{flag} must be a positive number, was {value}")

    def due_ns(self, start_ns: int, since_first_ns: int, n_before: int) -> int | None:
        """The monotonic time a timestamp is due; None: at once."""
        if self.speed is not None:
            return start_ns + int(since_first_ns / self.speed)
        if self.rate_bars_per_s is not None:
            return start_ns + int(n_before * _NS / self.rate_bars_per_s)
        return None

    def describe(self) -> str:
        """``60x real time``, ``10 bars/s`` or ``max``."""
        if self.speed is not None:
            return f"{self.speed:g}x real time"
        if self.rate_bars_per_s is not None:
            return f"{self.rate_bars_per_s:g} bars/s"
        return "max"


@dataclass(frozen=True)
class ReplayResult:
    """What ``replay`` sent."""

    n_bars: int
    n_timestamps: int
    elapsed_s: float
    interrupted: bool  # ``should_stop()`` ended it before the last bar
    next_seq: int

    @property
    def bars_per_s(self) -> float:
        """The achieved rate (0 when nothing was sent)."""
        return self.n_bars / self.elapsed_s if self.n_bars and self.elapsed_s > 0 else 0.0


def wait_for_client(
    publisher: FeedPublisher, timeout_s: float, should_stop: StopCheck = _never
) -> bool:
    """Wait until a client is connected; False after ``timeout_s`` or when stopped."""
    return _wait(lambda t: publisher.wait_for_clients(1, t), timeout_s, should_stop)


def wait_drained(
    publisher: FeedPublisher, timeout_s: float, should_stop: StopCheck = _never
) -> bool:
    """Wait until the clients' buffers are empty (``FeedPublisher.wait_drained``), bounded."""
    return _wait(publisher.wait_drained, timeout_s, should_stop)


def _wait(wait: Callable[[float], bool], timeout_s: float, should_stop: StopCheck) -> bool:
    # ``wait(t)`` blocks at most t s; sliced so that ``should_stop`` is seen every _SLICE_S
    clock = LiveClock()
    deadline = clock.monotonic_ns() + int(timeout_s * _NS)
    while not should_stop():
        left_s = (deadline - clock.monotonic_ns()) / _NS
        if wait(max(min(left_s, _SLICE_S), 0.0)):
            return True
        if left_s <= 0:
            return False
    return False


def replay(
    publisher: FeedPublisher,
    bars: Iterable[Bar],
    pace: Pace,
    *,
    should_stop: StopCheck = _never,
    first_seq: int = 0,
    clock: LiveClock | None = None,
) -> ReplayResult:
    """Publish ``bars`` (in timestamp order) at ``pace``; return what was sent.

    Parameters
    ----------
    publisher : FeedPublisher
        A started publisher.
    bars : iterable of Bar
        Sorted by timestamp; the bars of one timestamp are sent together.
    pace : Pace
        When each timestamp is due, from the first one's start.
    should_stop : callable
        Checked between timestamps and while waiting; True ends the replay there.
    first_seq : int
        The ``seq`` of the first bar.
    clock : LiveClock or None
        The monotonic clock that paces it.
    """
    clock = clock or LiveClock()
    start_ns = clock.monotonic_ns()
    seq, n_ts, n_sent = first_seq, 0, 0
    first_ts: int | None = None
    pending: list[Bar] = []
    interrupted = False
    for group in _by_timestamp(bars):
        if should_stop():
            interrupted = True
            break
        if first_ts is None:
            first_ts = group[0].ts_ns
        due = pace.due_ns(start_ns, group[0].ts_ns - first_ts, n_sent + len(pending))
        if due is not None and due > clock.monotonic_ns():
            seq, n_sent = _send(publisher, pending, seq, n_sent)
            if not _sleep_until(clock, due, should_stop):
                interrupted = True
                break
        pending.extend(group)
        n_ts += 1
        if len(pending) >= _BATCH:
            seq, n_sent = _send(publisher, pending, seq, n_sent)
    seq, n_sent = _send(publisher, pending, seq, n_sent)  # due before any stop: sent
    elapsed_s = (clock.monotonic_ns() - start_ns) / _NS
    return ReplayResult(n_sent, n_ts, elapsed_s, interrupted, seq)


def _send(publisher: FeedPublisher, pending: list[Bar], seq: int, n_sent: int) -> tuple[int, int]:
    # one write per client for every bar that is due; empties ``pending``
    if not pending:
        return seq, n_sent
    nxt = publisher.publish_bars(pending, first_seq=seq)
    assert nxt is not None
    n_sent += len(pending)
    pending.clear()
    return nxt, n_sent


def _sleep_until(clock: LiveClock, due_ns: int, should_stop: StopCheck) -> bool:
    # False when stopped first; sleeps in slices so that a stop is seen within _SLICE_S
    slice_ns = int(_SLICE_S * _NS)
    while True:
        if should_stop():
            return False
        now = clock.monotonic_ns()
        if now >= due_ns:
            return True
        clock.sleep_until_monotonic_ns(min(due_ns, now + slice_ns))


def _by_timestamp(bars: Iterable[Bar]) -> Iterator[list[Bar]]:
    # consecutive bars of one timestamp, as lists
    group: list[Bar] = []
    for bar in bars:
        if group and bar.ts_ns != group[0].ts_ns:
            yield group
            group = []
        group.append(bar)
    if group:
        yield group
