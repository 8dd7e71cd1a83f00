"""The state the arbiter keeps per source: health, per-connection order, held standby bars."""

from __future__ import annotations

from collections import deque

from ultrathink.core.events import Bar
from ultrathink.feed.config import FeedConfig

__all__ = ["HeldBars", "SourceState"]

_NS = 1_000_000_000


class HeldBars:
    """A standby's bars not yet delivered: per symbol in ts order, numbered by arrival."""

    __slots__ = ("_by_symbol", "_n", "_next")

    def __init__(self) -> None:
        self._by_symbol: dict[str, deque[tuple[int, Bar]]] = {}
        self._n = 0
        self._next = 0

    def __len__(self) -> int:
        return self._n

    def has(self, symbol: str) -> bool:
        return symbol in self._by_symbol

    def add(self, bar: Bar) -> None:
        entry = (self._next, bar)
        self._next += 1
        self._n += 1
        bars = self._by_symbol.get(bar.symbol)
        if bars is None:
            self._by_symbol[bar.symbol] = deque((entry,))
        else:
            bars.append(entry)

    def drop_through(self, symbol: str, ts_ns: int) -> int:
        """Forget the bars of ``symbol`` at or before ``ts_ns``; return how many."""
        return len(self.pop_before(symbol, ts_ns + 1))

    def pop_before(self, symbol: str, ts_ns: int) -> list[Bar]:
        """Remove and return the bars of ``symbol`` before ``ts_ns``, oldest first."""
        bars = self._by_symbol.get(symbol)
        out: list[Bar] = []
        while bars and bars[0][1].ts_ns < ts_ns:
            out.append(bars.popleft()[1])
        if out:
            self._n -= len(out)
            if not bars:
                del self._by_symbol[symbol]
        return out

    def pop_oldest(self) -> Bar:
        """Remove and return the bar that arrived first (the buffer must not be empty)."""
        symbol = min(self._by_symbol, key=lambda s: self._by_symbol[s][0][0])
        bars = self._by_symbol[symbol]
        _, bar = bars.popleft()
        self._n -= 1
        if not bars:
            del self._by_symbol[symbol]
        return bar

    def take_all(self) -> list[Bar]:
        """Remove and return every bar in ts order (ties in arrival order)."""
        entries = sorted(
            (bar.ts_ns, arrival, bar) for bars in self._by_symbol.values() for arrival, bar in bars
        )
        self._by_symbol.clear()
        self._n = 0
        return [bar for _, _, bar in entries]


class SourceState:
    """One connection's state: health, per-symbol order, held bars, counters."""

    __slots__ = (
        "bad_ns",
        "connect_failures",
        "connected",
        "connects",
        "cover_from",
        "detail",
        "healthy_since_ns",
        "held",
        "last_bad",
        "last_seq",
        "last_ts",
        "last_valid_ns",
        "lost",
        "malformed",
        "name",
        "received",
        "seq_gaps",
        "since_ns",
        "url",
    )

    def __init__(self, name: str, url: str, now_ns: int, max_bad: int) -> None:
        self.name = name
        self.url = url
        self.connected = False
        self.detail = "not connected yet"
        self.since_ns = now_ns  # when the current connection (or the wait for one) began
        self.last_valid_ns: int | None = None  # the last valid message on this connection
        self.healthy_since_ns: int | None = None
        self.bad_ns: deque[int] = deque(maxlen=max_bad + 1)  # enough to tell "> max_bad"
        self.last_bad = ""
        self.last_ts: dict[str, int] = {}  # per symbol, on this connection
        self.last_seq: int | None = None
        self.held = HeldBars()
        # per symbol, since this source was last unhealthy: the first ts it sent (its stream
        # is complete from there on) and the last ts of a bar of it that was lost
        self.cover_from: dict[str, int] = {}
        self.lost: dict[str, int] = {}
        self.received = self.malformed = self.connects = self.connect_failures = 0
        self.seq_gaps = 0

    def problem(self, now_ns: int, config: FeedConfig) -> tuple[str, str] | None:
        """Why this source is unhealthy now, as (reason, detail), or None."""
        if not self.connected:
            return "disconnect", self.detail
        ref = self.since_ns if self.last_valid_ns is None else self.last_valid_ns
        silent_s = (now_ns - ref) / _NS
        if silent_s > config.stall_s:
            return "stall", f"no bar or heartbeat for {silent_s:.3f} s (stall_s {config.stall_s})"
        bad = self.bad_ns
        if len(bad) == bad.maxlen and now_ns - bad[0] <= config.bad_window_s * _NS:
            return "bad_data", (
                f"{len(bad)} invalid messages within {config.bad_window_s} s (max_bad "
                f"{config.max_bad}); last: {self.last_bad}"
            )
        return None

    def lose_coverage(self) -> None:
        # whatever it sends next may follow a hole: coverage restarts from its next bars
        self.cover_from.clear()
        self.lost.clear()
        self.healthy_since_ns = None
