"""``ConflatingQueue``: the bounded hand-off of bars from the feed thread to the kernel.

Full-queue policy (the producer never waits: a slow consumer must not stall the feed's
reader, whose socket buffer would fill and make the publisher drop the connection):

1. if a bar of the new bar's symbol is waiting, the *oldest* such bar is shed
   (``"conflated"``): the consumer gets that symbol's latest bars, and the order of each
   symbol's bars is kept, since the new bar goes to the back;
2. otherwise the oldest bar of all is shed (``"queue_full"``).

So the queue never holds more than ``capacity`` bars, each symbol's waiting bars stay in ts
order, and under overload the freshest prices win. Only bars go through this queue; orders
never do, so no order is ever shed. Shedding a bar rather than merging it into its
successor keeps every delivered bar one that the feed sent, with its own period.

Not thread-safe: ``FeedClient`` calls it under its lock.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import NamedTuple

from ultrathink.core.events import Bar

__all__ = ["SHED_REASONS", "ConflatingQueue", "Shed"]

#: Why a bar was shed: by this queue, or from the standby source's buffer (``arbiter``).
SHED_REASONS: tuple[str, ...] = ("conflated", "queue_full", "standby_overflow")


class Shed(NamedTuple):
    """A bar the queue dropped to make room, and why (``"conflated"`` or ``"queue_full"``)."""

    reason: str
    bar: Bar


class ConflatingQueue:
    """A FIFO of at most ``capacity`` bars that conflates per symbol when full.

    Parameters
    ----------
    capacity : int
        The most bars held (>= 1).
    """

    __slots__ = ("_by_symbol", "_capacity", "_high_water", "_items", "_next_key")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"ConflatingQueue capacity must be >= 1, was {capacity}")
        self._capacity = capacity
        # insertion-ordered by a counter key: O(1) removal of any bar and of the oldest
        self._items: OrderedDict[int, Bar] = OrderedDict()
        self._by_symbol: dict[str, deque[int]] = {}  # each symbol's keys, oldest first
        self._next_key = 0
        self._high_water = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def capacity(self) -> int:
        """The most bars held."""
        return self._capacity

    @property
    def high_water(self) -> int:
        """The most bars ever held at once."""
        return self._high_water

    def put(self, bar: Bar) -> Shed | None:
        """Append ``bar``; when full, first shed one bar by the policy and return it."""
        shed = None
        if len(self._items) >= self._capacity:
            keys = self._by_symbol.get(bar.symbol)
            if keys:
                shed = Shed("conflated", self._items.pop(keys.popleft()))
            else:
                _, oldest = self._items.popitem(last=False)
                self._forget_head(oldest.symbol)
                shed = Shed("queue_full", oldest)
        key = self._next_key
        self._next_key = key + 1
        self._items[key] = bar
        keys = self._by_symbol.get(bar.symbol)
        if keys is None:
            self._by_symbol[bar.symbol] = deque((key,))
        else:
            keys.append(key)
        if len(self._items) > self._high_water:
            self._high_water = len(self._items)
        return shed

    def pop(self) -> Bar | None:
        """Remove and return the oldest bar, or None when empty."""
        if not self._items:
            return None
        _, bar = self._items.popitem(last=False)
        self._forget_head(bar.symbol)
        return bar

    def pop_many(self, max_n: int) -> list[Bar]:
        """Remove and return up to ``max_n`` bars, oldest first."""
        out: list[Bar] = []
        while self._items and len(out) < max_n:
            _, bar = self._items.popitem(last=False)
            self._forget_head(bar.symbol)
            out.append(bar)
        return out

    def _forget_head(self, symbol: str) -> None:
        # the oldest bar overall is also the oldest of its symbol: its key heads that deque
        keys = self._by_symbol[symbol]
        keys.popleft()
        if not keys:
            del self._by_symbol[symbol]  # many symbols come and go: keep no empty deques
