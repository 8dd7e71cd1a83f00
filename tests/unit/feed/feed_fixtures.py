"""Helpers of the feed tests: bars, publishing, taking, waiting (fixtures: ``conftest.py``).

Nothing here sleeps to synchronise: a test waits for a condition it can observe (a publisher
that has accepted the client, a counter, the active source) with ``wait_until``, which polls
with a generous deadline meant only to stop a broken test, never to time anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ultrathink.core.events import Bar
from ultrathink.feed import FeedClient, FeedPublisher

DEADLINE_S = 30.0  # only a broken test ever reaches it
T0_NS = 1_704_205_800_000_000_000  # 2024-01-02 14:30 UTC
STEP_NS = 60_000_000_000


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.002)


def make_bar(i: int, symbol: str = "SPY", price: float = 100.0) -> Bar:
    """The ``i``-th minute bar of ``symbol``: valid, distinct prices per ``i``."""
    base = price + i * 0.01
    return Bar(T0_NS + i * STEP_NS, symbol, base, base + 0.5, base - 0.25, base + 0.125, 1000.0 + i)


def make_bars(start: int, stop: int, symbols: Sequence[str] = ("SPY", "QQQ")) -> list[Bar]:
    """Bars ``start``..``stop - 1`` of every symbol, interleaved by time."""
    return [
        make_bar(i, s, 100.0 * (k + 1)) for i in range(start, stop) for k, s in enumerate(symbols)
    ]


def publish(publishers: Sequence[FeedPublisher], bars: Sequence[Bar], first_seq: int) -> int:
    """Publish ``bars`` bar by bar to every publisher (primary first); return the next seq."""
    for offset, bar in enumerate(bars):
        for pub in publishers:
            pub.publish_bar(bar, first_seq + offset)
    return first_seq + len(bars)


def take(client: FeedClient, n: int) -> list[Bar]:
    """Exactly ``n`` bars from ``client``, waiting for each."""
    out = []
    for _ in range(n):
        bar = client.get(timeout=DEADLINE_S)
        assert bar is not None, f"only {len(out)} of {n} bars arrived: {client.stats()}"
        out.append(bar)
    return out
