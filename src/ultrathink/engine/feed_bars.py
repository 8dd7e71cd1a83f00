"""Live bars for the kernel: a paper session that trades a market-data feed (``paper --feed``).

``FeedBars`` stands where a replay's ``MarketData`` stands: the kernel iterates its chunks,
and each chunk is the bars of **one timestamp**, taken from a ``FeedClient`` (``feed/``) on
the live clock. Grouping by timestamp is what makes a feed session restartable exactly:

* The kernel waits for a feed only **between two timestamps**, as a paced replay does. While
  it waits, the session's idle work runs (operator commands, the feed watchdog, degraded
  mode, snapshots) at the position ``(bars processed, "idle")``, the point a replay visits
  at the next timestamp; so every input recorded there applies at the same point again when
  ``--resume`` replays the session (``engine/inputs.py``).
* Each group is appended to the session's **feed journal** (``feed.ndjson``, the protocol's
  own lines, flushed to the OS) before the kernel sees it, so a ``kill -9`` cannot lose a
  bar that was traded. ``--resume`` replays the journal as the session's history, then goes
  on with the feed; the feed's bars up to the journal's end are dropped as ``late``.

A group is released to the kernel when every symbol of the session has either a bar at its
timestamp or a later one (the feed delivers each symbol's bars in order), or when
``group_wait_s`` has passed since its first bar arrived (a symbol that skipped a bar). A bar
at or before the last released timestamp is **late**: it is dropped and counted, since the
session's clock never goes back and a timestamp's bars are traded together. With
``max_age_s`` set, a bar already older than that when the kernel takes it from the client
(wall clock minus its ``ts``) is **stale**: dropped and counted, unjournaled, so that after a
burst the session trades fresh bars instead of working through a backlog whose decisions
would all be late (deadline shedding; off by default, since a feed whose ``ts`` is a bar's
open time sends every bar a bar period old). Everything that arrives is accounted for: the
client's own counters (``FeedStats``: malformed, duplicates, shed, ...) plus ``late`` and
``stale``; ``processed`` is what the kernel took.

Each timestamp's bars are measured when the kernel asks for the next ones: their **age**
is the wall clock then minus their ``ts``, recorded once per bar in an HdrHistogram (and
per wall-clock second, for the series a stress report draws). A load generator stamps each
bar with its intended arrival time, so for it the age is the latency from the intended
time to the decision and its orders (``on_bar`` places them), coordinated omission
included; for a real feed of period bars it also counts the bar's period. The process's
garbage collections while live are counted and timed per wall second too (``GcMonitor``;
the kernel pauses the cyclic collector, so there are usually none).

The client reads its sockets **inline**, on the kernel's thread (``FeedClient(...,
threaded=False)``): each ``drain`` first reads what the sockets hold. A feed thread beside
the kernel made two Python threads share one GIL, and each bar crossed a lock, a condition
variable and a GIL hand-off; at 20,000 bars/s offered for 5 min the session decided 7,983
bars/s with a feed thread and 15,963 inline (docs/stress.md). Source switches (failover to
the backup and back) happen while the kernel reads the feed; they are queued and applied as
session inputs (``feed_switch``) at the next wait: each one is an audit row and a hardening
event, and a failover is a failure of the market-data breaker, so a flapping feed reduces
trading.

With ``reader="process"`` (``[feed] reader``) the client runs in a child process instead
(``feed.process.FeedProcess``): the kernel's thread only unpickles batches of bars from a
pipe, and reading, decoding and arbitration run on the other core. The queue, its shedding
policy and the accounting are the client's, unchanged; the switch events arrive in order with
the bars.
"""

from __future__ import annotations

import hashlib
import heapq
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ultrathink.core.events import Bar
from ultrathink.core.latency import tail_percentiles
from ultrathink.errors import ConfigError, PersistenceError
from ultrathink.feed import FeedClient, FeedConfig, SwitchEvent, encode_bar, parse_feed_urls
from ultrathink.feed.config import FEED_READERS, FeedReader
from ultrathink.feed.process import FeedProcess
from ultrathink.feed.protocol import BarMessage, MessageError, decode_line
from ultrathink.persistence.linelog import LineLog, open_append

__all__ = ["FEED_PREFIX", "FeedBars", "read_feed_journal"]

#: ``data_name`` of a stored feed session: ``feed:SYM,SYM``
FEED_PREFIX = "feed:"
#: how long one wait for the feed lasts before the idle work runs again
_POLL_S = 0.02
#: a waiting session hands its records to the store at most this often
_FLUSH_EVERY_S = 0.1
#: bars taken from the client at once
_BATCH = 1024
#: timestamps pending at most: beyond, the oldest is released incomplete
_MAX_PENDING_TS = 64
#: ages above this (an hour, in µs) are recorded as this
_MAX_AGE_US = 3_600_000_000


def read_feed_journal(path: Path) -> list[Bar]:
    """The bars a feed session journaled (a missing file: none; a torn last line: ignored).

    Raises
    ------
    PersistenceError
        A complete line that is not a valid bar (the journal was damaged).
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise PersistenceError(f"cannot read the feed journal {path}: {exc}") from None
    lines = raw.split(b"\n")
    bars: list[Bar] = []
    for i, line in enumerate(lines[:-1], start=1):  # the last piece has no newline: torn
        try:
            msg = decode_line(line)
        except MessageError as exc:
            raise PersistenceError(f"feed journal {path}, line {i}, is damaged: {exc}") from None
        if not isinstance(msg, BarMessage):
            raise PersistenceError(f"feed journal {path}, line {i}, is not a bar")
        bars.append(msg.bar)
    return bars


class FeedBars:
    """The bars of a live feed, as the kernel reads them (see the module docstring).

    Parameters
    ----------
    urls : str
        ``tcp://HOST:PORT[,tcp://HOST:PORT]``: the primary feed and an optional backup.
    symbols : sequence of str
        The session's symbols; bars of other symbols are dropped by the client.
    config : FeedConfig or None
        The client's queue, health and reconnect settings.
    group_wait_s : float
        Longest wait for the other symbols' bars of a timestamp.
    stale_s : float
        Wall seconds without a bar before the session's feed watchdog reduces trading.
    max_age_s : float or None
        Drop (and count as ``stale``) a bar older than this when the kernel takes it; None:
        never.
    reader : {"inline", "process"}
        Read the feed on the kernel's thread, or in a child process (see the module
        docstring).
    """

    live = True

    def __init__(
        self,
        urls: str,
        symbols: Sequence[str],
        *,
        config: FeedConfig | None = None,
        group_wait_s: float = 0.05,
        stale_s: float = 10.0,
        max_age_s: float | None = None,
        reader: FeedReader = "inline",
    ) -> None:
        if reader not in FEED_READERS:
            choices = ", ".join(FEED_READERS)
            raise ConfigError(f"the feed reader must be one of {choices}, was {reader!r}")
        self.reader = reader
        clean = sorted({s.strip() for s in symbols if s.strip()})
        if not clean:
            raise ConfigError("--feed needs the session's symbols: --symbols SPY[,QQQ...]")
        if group_wait_s < 0 or stale_s <= 0 or (max_age_s is not None and max_age_s <= 0):
            raise ConfigError(
                "the feed's group wait must be >= 0, its stale time and max bar age > 0"
            )
        self.addresses = parse_feed_urls(urls)
        self.urls = urls
        self.symbols: tuple[str, ...] = tuple(clean)
        self.name = FEED_PREFIX + ",".join(self.symbols)
        self.config = config or FeedConfig()
        self.group_wait_s = group_wait_s
        self.stale_s = stale_s
        self.max_age_s = max_age_s
        self._max_age_ns = None if max_age_s is None else int(max_age_s * 1e9)
        self.history: list[Bar] = []
        self.ts_ns = np.zeros(0, dtype=np.int64)
        self._journal_path: Path | None = None
        self._journal: LineLog | None = None
        self._client: FeedClient | FeedProcess | None = None
        self._switches: deque[SwitchEvent] = deque()
        self._idle: Callable[[], None] | None = None
        self._on_switch: Callable[[SwitchEvent], None] | None = None
        self._stop: Any = None
        self._position: Any = None
        self._processed: Callable[[], int] = lambda: 0
        self._replaying: Callable[[], bool] = lambda: False
        self._lock = threading.Lock()
        #: counters of what this side did (the client counts the rest)
        self.late = 0
        self.stale = 0  # older than max_age_s when taken
        self.groups = 0
        self.released = 0  # bars handed to the kernel
        self.taken = 0
        self.journaled = 0
        self.released_ts = -1
        self._pending: dict[int, tuple[float, list[Bar]]] = {}
        self._heap: list[int] = []  # the pending timestamps
        self._inbox: deque[Bar] = deque()  # taken from the client, not yet grouped
        self._flush: Callable[[], None] | None = None
        self._flushed_at = 0
        self._flushed_t = 0.0
        self._ages = _Ages()
        self._last: tuple[int, int] | None = None  # the last group handed over: (ts, size)
        self._ahead: dict[str, int] = {}  # each symbol's newest ts taken
        self._gc: Any = None  # the process's collections while live (perf.process.GcMonitor)

    # -- what the engine reads of its data ---------------------------------------------------
    def __len__(self) -> int:
        return len(self.history)

    @property
    def n_symbols(self) -> int:
        return len(self.symbols)

    @property
    def start_ns(self) -> int:
        return int(self.ts_ns[0])

    @property
    def end_ns(self) -> int:
        return int(self.ts_ns[-1])

    def sha256(self) -> str:
        """What a resume must match: the session's symbols (the feed's URLs may change)."""
        return hashlib.sha256(("feed\x1f" + "\x1f".join(self.symbols)).encode()).hexdigest()

    def median_interval_ns(self) -> int:
        """Unknown ahead of a live feed; the watchdog uses ``stale_s`` instead."""
        return 0

    # -- set up by the session and the wiring -----------------------------------------------
    def attach_journal(self, path: Path, resume: bool) -> None:
        """Journal every bar to ``path``; a resume first reads what it holds as history."""
        if resume:
            self.history = read_feed_journal(path)
            if self.history:
                self.released_ts = self.history[-1].ts_ns
                self.ts_ns = np.fromiter((b.ts_ns for b in self.history), np.int64)
        self._journal_path = path

    def bind(
        self,
        *,
        idle: Callable[[], None] | None,
        stop: Any,
        position: Any,
        processed: Callable[[], int],
        replaying: Callable[[], bool],
        on_switch: Callable[[SwitchEvent], None] | None,
        flush: Callable[[], None] | None = None,
    ) -> None:
        """The kernel's side: the idle work, the stop token, where the kernel is, and how to
        hand its records to the store when the feed is quiet."""
        self._idle, self._stop, self._position = idle, stop, position
        self._processed, self._replaying, self._on_switch = processed, replaying, on_switch
        self._flush = flush

    # -- the kernel's iteration ---------------------------------------------------------------
    def iter_chunks(self, chunk_size: int = 65_536) -> Iterator[Iterator[Bar]]:
        """The journaled history (a resume), then one chunk per live timestamp until stopped."""
        for start in range(0, len(self.history), chunk_size):
            yield iter(self.history[start : start + chunk_size])
        backup = self.addresses[1] if len(self.addresses) > 1 else None
        client: FeedClient | FeedProcess
        if self.reader == "process":
            client = FeedProcess(
                self.addresses[0], backup, config=self.config, symbols=self.symbols,
                on_switch=self._switches.append,
            )  # fmt: skip
        else:
            client = FeedClient(
                self.addresses[0], backup, config=self.config, symbols=self.symbols,
                on_switch=self._switches.append,
                threaded=False,  # read on the kernel's thread: no second thread for the GIL
            )  # fmt: skip
        with self._lock:
            self._client = client
        client.start()
        from ultrathink.perf.process import GcMonitor  # the profiler's; loaded when live

        self._gc = GcMonitor()
        self._gc.start()
        try:
            while True:
                group = self._next_group(client)
                if group is None:
                    return
                self._write(group)
                self.groups += 1
                yield iter(group)
        finally:
            self.close()

    def _next_group(self, client: FeedClient | FeedProcess) -> list[Bar] | None:
        # the bars of the next timestamp; waits (running the idle work) only when none is due
        stop = self._stop
        last = self._last
        if last is not None:  # the kernel is done with it: decided, orders placed
            self._last = None
            self._ages.record(time.time_ns(), last[0], last[1])
        while True:
            group = self._take(client, 0)
            if group is not None:
                return group
            if stop is not None and stop.requested:
                return None
            self._between_timestamps()
            group = self._take(client, _POLL_S)
            if group is not None:
                return group

    def _take(self, client: FeedClient | FeedProcess, timeout: float) -> list[Bar] | None:
        # take bars until the oldest pending timestamp is due (never more: the client's
        # bounded queue stays the only buffer), then release it
        pending, ahead, heap = self._pending, self._ahead, self._heap
        n_symbols = len(self.symbols)
        if heap and (len(pending[heap[0]][1]) == n_symbols or self._passed(heap[0])):
            return self._release()  # taken with the previous timestamp's bars
        inbox = self._inbox
        if not inbox:
            # a batch at a time: each drain reads what the feed's sockets hold (the client
            # runs inline, on this thread), then takes up to _BATCH bars
            inbox.extend(client.drain(_BATCH))
            if not inbox and timeout:
                first = client.get(timeout=timeout)
                if first is not None:
                    inbox.append(first)
                    inbox.extend(client.drain(_BATCH - 1))
        pop = inbox.popleft
        max_age = self._max_age_ns
        oldest_fresh = -1 if max_age is None else time.time_ns() - max_age
        while inbox:
            bar = pop()
            self.taken += 1
            ts = bar[0]
            if ts <= self.released_ts:
                self.late += 1
                continue
            if ts > ahead.get(bar[1], -1):
                ahead[bar[1]] = ts
            if ts < oldest_fresh:  # past its deadline already: shed, not traded late
                self.stale += 1
            else:
                entry = pending.get(ts)
                if entry is None:
                    pending[ts] = (time.monotonic(), [bar])
                    heapq.heappush(heap, ts)
                else:
                    entry[1].append(bar)
                head = heap[0]
                if len(pending[head][1]) == n_symbols or (ts > head and self._passed(head)):
                    return self._release()
        if heap and (
            time.monotonic() - pending[heap[0]][0] >= self.group_wait_s
            or len(heap) > _MAX_PENDING_TS
        ):
            return self._release()  # a symbol skipped this timestamp, or is far behind
        return None

    def _passed(self, ts: int) -> bool:
        # every symbol has a bar at ``ts`` or after it (each symbol's bars come in order)
        ahead = self._ahead
        return len(ahead) == len(self.symbols) and all(t >= ts for t in ahead.values())

    def _release(self) -> list[Bar]:
        ts = heapq.heappop(self._heap)
        _, group = self._pending.pop(ts)
        self.released_ts = ts
        if len(group) > 1:
            group.sort(key=lambda b: b[1])  # the (ts, symbol) order of stored data
        self._last = (ts, len(group))
        self.released += len(group)
        return group

    def _between_timestamps(self) -> None:
        # the feed has nothing due: store what was traded, then the session's idle work
        position = self._position
        if position is not None:
            position.n = self._processed()
            position.phase = "idle"
        if self._flush is not None and self.groups != self._flushed_at:
            now = time.monotonic()
            if now - self._flushed_t >= _FLUSH_EVERY_S:
                self._flushed_at, self._flushed_t = self.groups, now
                self._flush()
        if self._replaying():
            return  # a resume's replay still runs: the session is not live yet
        switches = self._switches
        while switches and self._on_switch is not None:
            self._on_switch(switches.popleft())
        if self._idle is not None:
            self._idle()

    def _write(self, group: list[Bar]) -> None:
        path = self._journal_path
        if path is None:
            return
        try:
            if self._journal is None:
                self._journal = open_append(path)  # a torn last line is cut off first
            # unbuffered: in the OS when this returns, so a kill -9 cannot lose it
            self._journal.append(b"".join(map(encode_bar, group)))
        except OSError as exc:
            raise PersistenceError(
                f"cannot write the feed journal {path}: {exc}; the bars were not traded"
            ) from None
        self.journaled += len(group)

    # -- end and figures ------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the client and close the journal (idempotent)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
            self._final = client.stats()
            self._ages.flush()
        if self._gc is not None:
            self._gc.stop()
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def stats(self) -> dict[str, Any]:
        """The feed's accounting: the client's counters, and what this side dropped or took."""
        with self._lock:
            client = self._client
        feed = client.stats() if client is not None else getattr(self, "_final", None)
        out: dict[str, Any] = {
            "urls": self.urls, "reader": self.reader, "history": len(self.history),
            "taken": self.taken,
            "late": self.late, "stale": self.stale, "groups": self.groups,
            "released": self.released, "journaled": self.journaled,
            "unreleased": sum(len(g) for _, g in self._pending.values()) + len(self._inbox),
            "age_us": self._ages.percentiles(), "age_series": list(self._ages.series),
            "age_histogram": self._ages.encoded(),
        }  # fmt: skip
        if self._gc is not None:  # the kernel pauses the collector: usually none at all
            out["gc"] = {**self._gc.to_json(), "series": [list(r) for r in self._gc.series]}
        if feed is not None:
            out.update(
                source=feed.source, received=feed.received, heartbeats=feed.heartbeats,
                delivered=feed.delivered, duplicates=feed.duplicates, filled=feed.filled,
                malformed=dict(feed.malformed), shed=dict(feed.shed), queued=feed.queued,
                held=feed.held, queue_high_water=feed.queue_high_water,
                failovers=feed.failovers, failbacks=feed.failbacks,
                reconnects=feed.reconnects, unaccounted=feed.unaccounted,
            )  # fmt: skip
        return out


class _Ages:
    """Bar ages at decision, µs: one HdrHistogram for the session, one row per wall second.

    A second's row (p50, p99, max) comes from that second's ages kept in a list and sorted
    once when the second ends, not from a second HdrHistogram: querying the hdrh package's
    histogram for two percentiles and resetting it walk its 23,552 counters in Python, about
    1.0 and 2.5 ms, a stall of the kernel thread every second that delayed the bars arriving
    meanwhile (docs/stress.md has the command). A row's percentiles are
    nearest-rank over the bars (each group's age counts once per bar), as HdrHistogram's.
    """

    #: seconds of per-second rows kept (a day)
    MAX_SERIES = 86_400

    def __init__(self) -> None:
        from hdrh.histogram import HdrHistogram

        self.total = HdrHistogram(1, _MAX_AGE_US, 3)
        self._ages: list[int] = []  # this second's ages, one per group
        self._counts: list[int] = []  # and each group's bars
        self._at = -1
        #: (unix second, bars, p50 µs, p99 µs, max µs) per wall second with bars
        self.series: deque[tuple[int, int, float, float, float]] = deque(maxlen=self.MAX_SERIES)

    def record(self, now_ns: int, ts_ns: int, n: int) -> None:
        age_us = min(max((now_ns - ts_ns) // 1000, 1), _MAX_AGE_US)
        second = now_ns // 1_000_000_000
        if second != self._at:
            self._roll()
            self._at = second
        self.total.record_value(age_us, n)
        self._ages.append(age_us)
        self._counts.append(n)

    def _roll(self) -> None:
        if self._at >= 0 and self._ages:
            ages = np.asarray(self._ages, dtype=np.int64)
            counts = np.asarray(self._counts, dtype=np.int64)
            order = np.argsort(ages, kind="stable")
            ages, cum = ages[order], np.cumsum(counts[order])
            total = int(cum[-1])
            p50, p99 = (
                float(ages[np.searchsorted(cum, max(1, -(-total * q // 100)))]) for q in (50, 99)
            )
            self.series.append((self._at, total, p50, p99, float(ages[-1])))
        self._ages.clear()
        self._counts.clear()

    def flush(self) -> None:
        """Close the current second's row (at the end of the session)."""
        self._roll()
        self._at = -1

    def percentiles(self) -> dict[str, float] | None:
        h = self.total
        if not h.get_total_count():
            return None
        out = tail_percentiles(h)
        out.update(max=float(h.get_max_value()), count=float(h.get_total_count()))
        return out

    def encoded(self) -> str:
        """The session's histogram, HdrHistogram-encoded (``HdrHistogram.decode`` reads it)."""
        raw = self.total.encode()
        return raw.decode() if isinstance(raw, bytes) else str(raw)
