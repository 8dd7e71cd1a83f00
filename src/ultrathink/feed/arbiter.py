"""``FeedArbiter``: which source's bars reach the consumer, each once and in order.

The socket-free core of ``FeedClient``: the client's thread hands it what each connection
read and asks it, after every read and at least every tick, whether to switch. It reads time
only from its ``Clock`` (``monotonic_ns`` for health, ``now_ns`` to stamp switches), so tests
drive it with a ``TestClock``, without sockets or sleeps.

*Both feeds are read all the time* (a hot standby). Bars of the active source go to the
``ConflatingQueue``; bars of the standby are checked the same way and held, up to
``standby_buffer`` of them, while they are ahead of what was delivered. At a switch the new
source's held bars are delivered first, so the bars the old source missed while it was
failing (up to ``stall_s`` of them) are not lost: no gap.

*No duplicate, no going back:* a bar is delivered only if its ts is after the last delivered
ts of its symbol; the others are dropped as ``duplicates`` (both feeds sending the same bars
is the expected setup, and their overlap is dropped here). Within one connection a repeated
or earlier ts is invalid data (``duplicate``/``out_of_order``), counted against its source.

*Holes are filled from the standby:* when the active source delivers a bar of a symbol while
the standby holds earlier, undelivered bars of it, the active one skipped them (a hiccup
shorter than ``stall_s`` that lost messages): they are delivered first (``filled``). A bar
the standby sends only after the active moved past it cannot be placed any more; it is a
duplicate by ts, and the hole stays (``seq`` gaps count it when the feed numbers messages).

*Health and switches* (see ``FeedConfig``): an active source that is disconnected, stalled or
sending bad data is replaced by the other at once if the other is healthy; the client goes
back to the primary once it has been healthy for ``failback_s`` *and* its stream joins the
delivered one (for each symbol it sent since it was last unhealthy, its first bar is one the
consumer already has), so a failback never skips a bar.

Not thread-safe: ``FeedClient`` calls it under one lock, which also makes ``stats`` a
consistent snapshot.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from ultrathink.core.clock import Clock
from ultrathink.core.events import Bar
from ultrathink.feed.config import FeedConfig
from ultrathink.feed.conflation import SHED_REASONS, ConflatingQueue
from ultrathink.feed.protocol import (
    BAD_DATA_REASONS,
    MALFORMED_REASONS,
    BarMessage,
    Heartbeat,
    Item,
    MessageError,
)
from ultrathink.feed.source import SourceState
from ultrathink.feed.stats import FeedStats, SourceStats, SwitchEvent

__all__ = ["MAX_KEPT_EVENTS", "SOURCE_NAMES", "FeedArbiter"]

#: How many switch events ``FeedArbiter.events`` keeps.
MAX_KEPT_EVENTS = 1000
SOURCE_NAMES = ("primary", "backup")
_NS = 1_000_000_000


class FeedArbiter:
    """Decide which bars reach the consumer and keep every counter.

    Parameters
    ----------
    config : FeedConfig
        Queue size, health thresholds, standby buffer.
    urls : sequence of str
        The primary's URL and optionally the backup's (used in stats and details only).
    clock : Clock
        ``monotonic_ns`` for health, ``now_ns`` for the switch events' time.
    symbols : iterable of str or None
        The symbols to deliver; bars of others are dropped (``unknown_symbol``). None: all.
    """

    def __init__(
        self,
        config: FeedConfig,
        urls: Sequence[str],
        clock: Clock,
        symbols: Iterable[str] | None = None,
    ) -> None:
        if not 1 <= len(urls) <= 2:
            raise ValueError(f"a feed has a primary and at most one backup, got {len(urls)}")
        self._config = config
        self._clock = clock
        self._symbols = None if symbols is None else frozenset(symbols)
        now = clock.monotonic_ns()
        self._sources = [
            SourceState(name, url, now, config.max_bad)
            for name, url in zip(SOURCE_NAMES, urls, strict=False)
        ]
        self._active = 0
        self._queue = ConflatingQueue(config.queue_size)
        self._delivered_ts: dict[str, int] = {}  # per symbol, the last bar put in the queue
        self._events: deque[SwitchEvent] = deque(maxlen=MAX_KEPT_EVENTS)
        self._received = self._heartbeats = self._delivered = self._duplicates = 0
        self._filled = 0
        self._failovers = self._failbacks = 0
        self._malformed = dict.fromkeys(MALFORMED_REASONS, 0)
        self._shed = dict.fromkeys(SHED_REASONS, 0)

    # -- the feed thread's side ------------------------------------------------------------

    def connected(self, index: int) -> None:
        """Source ``index`` has a new connection: its per-connection state starts afresh."""
        src = self._sources[index]
        src.connected = True
        src.connects += 1
        src.since_ns = self._clock.monotonic_ns()
        src.last_valid_ns = None
        src.last_ts.clear()  # a new connection may resend bars: duplicates, not bad data
        src.last_seq = None
        src.bad_ns.clear()
        src.lose_coverage()

    def disconnected(self, index: int, detail: str, truncated: bool = False) -> None:
        """Source ``index`` lost its connection (``truncated``: mid-line, counted)."""
        src = self._sources[index]
        if truncated:
            self._received += 1
            src.received += 1
            self._count_bad(src, MessageError("truncated", "partial line at disconnect"), 0)
        src.connected = False
        src.detail = detail
        src.since_ns = self._clock.monotonic_ns()
        src.lose_coverage()

    def connect_failed(self, index: int, detail: str) -> None:
        """A connection attempt of source ``index`` failed."""
        src = self._sources[index]
        src.connect_failures += 1
        src.detail = detail

    def receive(self, index: int, items: Iterable[Item]) -> int:
        """Account for what source ``index`` read; return how many bars were queued."""
        now = self._clock.monotonic_ns()
        src = self._sources[index]
        self._update_health(src, now)  # a stall that just ended must cost its coverage
        active = index == self._active
        symbols = self._symbols
        n_queued = 0
        for item in items:
            self._received += 1
            src.received += 1
            if type(item) is BarMessage:
                if item.seq is not None:
                    self._check_seq(src, item.seq, active)
                bar = item.bar
                sym, ts = bar.symbol, bar.ts_ns
                if symbols is not None and sym not in symbols:
                    self._count_bad(src, MessageError("unknown_symbol", sym, sym, ts), now)
                    continue
                last = src.last_ts.get(sym)
                if last is not None and ts <= last:
                    reason = "duplicate" if ts == last else "out_of_order"
                    self._count_bad(src, MessageError(reason, f"{sym} ts {ts} after {last}"), now)
                    continue
                src.last_ts[sym] = ts
                src.last_valid_ns = now
                if active:
                    n_queued += self._accept(bar)
                else:
                    self._hold(src, bar)
            elif type(item) is Heartbeat:
                self._heartbeats += 1
                src.last_valid_ns = now
            else:
                assert isinstance(item, MessageError)
                if item.seq is not None:
                    self._check_seq(src, item.seq, active)
                self._count_bad(src, item, now)
                if not active and item.symbol is not None and item.ts_ns is not None:
                    self._lose(src, item.symbol, item.ts_ns)
        self._update_health(src, now)  # healthy from its first valid message on
        return n_queued

    def evaluate(self) -> list[SwitchEvent]:
        """Update health and switch source if the rules say so; return the switches made."""
        now = self._clock.monotonic_ns()
        for src in self._sources:
            self._update_health(src, now)
        if len(self._sources) == 1:
            return []
        active, other = self._sources[self._active], self._sources[1 - self._active]
        problem = active.problem(now, self._config)
        if problem is not None:
            if other.healthy_since_ns is not None:
                return [self._switch(1 - self._active, *problem)]
            return []
        if self._active == 1 and other.healthy_since_ns is not None:
            healthy_s = (now - other.healthy_since_ns) / _NS
            if healthy_s >= self._config.failback_s and self._joins(other):
                failback_s = self._config.failback_s
                detail = f"primary healthy for {healthy_s:.3f} s (failback_s {failback_s})"
                return [self._switch(0, "recovered", detail)]
        return []

    # -- the consumer's side ---------------------------------------------------------------

    def take(self) -> Bar | None:
        """The oldest queued bar (counted as delivered), or None."""
        bar = self._queue.pop()
        if bar is not None:
            self._delivered += 1
        return bar

    def take_many(self, max_n: int) -> list[Bar]:
        """Up to ``max_n`` queued bars, oldest first (counted as delivered)."""
        bars = self._queue.pop_many(max_n)
        self._delivered += len(bars)
        return bars

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def source(self) -> str:
        """The active source's name."""
        return self._sources[self._active].name

    @property
    def events(self) -> tuple[SwitchEvent, ...]:
        """The switches so far (the last ``MAX_KEPT_EVENTS``), oldest first."""
        return tuple(self._events)

    def stats(self) -> FeedStats:
        """A snapshot of every counter."""
        now = self._clock.monotonic_ns()
        sources = tuple(
            SourceStats(
                name=s.name,
                url=s.url,
                connected=s.connected,
                healthy=s.problem(now, self._config) is None and s.last_valid_ns is not None,
                received=s.received,
                malformed=s.malformed,
                connects=s.connects,
                connect_failures=s.connect_failures,
                held=len(s.held),
                seq_gaps=s.seq_gaps,
            )
            for s in self._sources
        )
        return FeedStats(
            received=self._received,
            heartbeats=self._heartbeats,
            delivered=self._delivered,
            duplicates=self._duplicates,
            filled=self._filled,
            malformed={k: v for k, v in self._malformed.items() if v},
            shed={k: v for k, v in self._shed.items() if v},
            queued=len(self._queue),
            held=sum(len(s.held) for s in self._sources),
            queue_capacity=self._queue.capacity,
            queue_high_water=self._queue.high_water,
            failovers=self._failovers,
            failbacks=self._failbacks,
            source=self.source,
            sources=sources,
        )

    # -- internals -------------------------------------------------------------------------

    def _accept(self, bar: Bar) -> int:
        # deliver a bar of the active source (or of a switch's flush) unless it is old news;
        # bars the standby holds before it are a hole in the active stream: deliver them first
        sym, ts = bar.symbol, bar.ts_ns
        last = self._delivered_ts.get(sym)
        if last is not None and ts <= last:
            self._duplicates += 1
            return 0
        n_queued = 1
        if len(self._sources) == 2:
            held = self._sources[1 - self._active].held
            if held.has(sym):
                if last is not None:
                    self._duplicates += held.drop_through(sym, last)
                for missed in held.pop_before(sym, ts):
                    self._enqueue(missed)
                    self._filled += 1
                    n_queued += 1
                self._duplicates += held.drop_through(sym, ts)  # the standby's copy of it
        self._enqueue(bar)
        return n_queued

    def _enqueue(self, bar: Bar) -> None:
        self._delivered_ts[bar.symbol] = bar.ts_ns
        shed = self._queue.put(bar)
        if shed is not None:
            self._shed[shed.reason] += 1

    def _hold(self, src: SourceState, bar: Bar) -> None:
        src.cover_from.setdefault(bar.symbol, bar.ts_ns)
        last = self._delivered_ts.get(bar.symbol)
        if last is not None and bar.ts_ns <= last:
            self._duplicates += 1
            return
        src.held.add(bar)
        if len(src.held) > self._config.standby_buffer:
            lost = src.held.pop_oldest()
            self._shed["standby_overflow"] += 1
            self._lose(src, lost.symbol, lost.ts_ns)

    def _lose(self, src: SourceState, symbol: str, ts_ns: int) -> None:
        # this source failed to deliver (symbol, ts_ns): it joins only once that is delivered
        if ts_ns > src.lost.get(symbol, ts_ns - 1):
            src.lost[symbol] = ts_ns

    def _check_seq(self, src: SourceState, seq: int, active: bool) -> None:
        if src.last_seq is not None and seq != src.last_seq + 1:
            src.seq_gaps += 1
            if not active:  # a message was lost: coverage restarts here
                src.cover_from.clear()
                src.lost.clear()
        src.last_seq = seq

    def _count_bad(self, src: SourceState, error: MessageError, now_ns: int) -> None:
        self._malformed[error.reason] += 1
        src.malformed += 1
        if error.reason in BAD_DATA_REASONS:
            src.bad_ns.append(now_ns)
            src.last_bad = f"{error.reason} ({error.detail})"

    def _update_health(self, src: SourceState, now_ns: int) -> None:
        alive = src.last_valid_ns is not None and src.problem(now_ns, self._config) is None
        if alive:
            if src.healthy_since_ns is None:
                src.healthy_since_ns = now_ns
        elif src.healthy_since_ns is not None or src.cover_from or src.lost:
            src.lose_coverage()

    def _joins(self, src: SourceState) -> bool:
        # True when src's stream continues the delivered one: no bar can fall in between
        delivered = self._delivered_ts
        if not src.cover_from:
            return not delivered  # nothing known yet: only when nothing was delivered either
        if any(delivered.get(sym, ts - 1) < ts for sym, ts in src.lost.items()):
            return False
        return all(
            sym not in delivered or delivered[sym] >= ts for sym, ts in src.cover_from.items()
        )

    def _switch(self, to: int, reason: str, detail: str) -> SwitchEvent:
        old, new = self._sources[self._active], self._sources[to]
        gapless = self._joins(new)
        self._active = to
        old.cover_from.clear()  # from now on it is the standby: coverage from its next bars
        old.lost.clear()
        for bar in new.held.take_all():
            self._accept(bar)
        if to == 0:
            self._failbacks += 1
        else:
            self._failovers += 1
        event = SwitchEvent(self._clock.now_ns(), old.name, new.name, reason, detail, gapless)
        self._events.append(event)
        return event
