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
session's clock never goes back and a timestamp's bars are traded together. Everything that
arrives is accounted for: the client's own counters (``FeedStats``: malformed, duplicates,
shed, ...) plus ``late``; ``processed`` is what the kernel took.

Source switches (failover to the backup and back) happen on the feed thread; they are
handed to the kernel thread and applied as session inputs (``feed_switch``) at the next
wait: each one is an audit row and a hardening event, and a failover is a failure of the
market-data breaker, so a flapping feed reduces trading.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from ultrathink.core.events import Bar
from ultrathink.errors import ConfigError, PersistenceError
from ultrathink.feed import FeedClient, FeedConfig, SwitchEvent, encode_bar, parse_feed_urls
from ultrathink.feed.protocol import BarMessage, MessageError, decode_line

__all__ = ["FEED_PREFIX", "FeedBars", "read_feed_journal"]

#: ``data_name`` of a stored feed session: ``feed:SYM,SYM``
FEED_PREFIX = "feed:"
#: how long one wait for the feed lasts before the idle work runs again
_POLL_S = 0.02


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
    ) -> None:
        clean = sorted({s.strip() for s in symbols if s.strip()})
        if not clean:
            raise ConfigError("--feed needs the session's symbols: --symbols SPY[,QQQ...]")
        if group_wait_s < 0 or stale_s <= 0:
            raise ConfigError("the feed's group wait must be >= 0 and its stale time > 0")
        self.addresses = parse_feed_urls(urls)
        self.urls = urls
        self.symbols: tuple[str, ...] = tuple(clean)
        self.name = FEED_PREFIX + ",".join(self.symbols)
        self.config = config or FeedConfig()
        self.group_wait_s = group_wait_s
        self.stale_s = stale_s
        self.history: list[Bar] = []
        self.ts_ns = np.zeros(0, dtype=np.int64)
        self._journal_path: Path | None = None
        self._journal: IO[bytes] | None = None
        self._client: FeedClient | None = None
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
        self.groups = 0
        self.taken = 0
        self.journaled = 0
        self.released_ts = -1
        self._pending: dict[int, tuple[float, list[Bar]]] = {}
        self._ahead: dict[str, int] = {}  # each symbol's newest ts taken

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
    ) -> None:
        """The kernel's side: the idle work, the stop token, where the kernel is."""
        self._idle, self._stop, self._position = idle, stop, position
        self._processed, self._replaying, self._on_switch = processed, replaying, on_switch

    # -- the kernel's iteration ---------------------------------------------------------------
    def iter_chunks(self, chunk_size: int = 65_536) -> Iterator[Iterator[Bar]]:
        """The journaled history (a resume), then one chunk per live timestamp until stopped."""
        for start in range(0, len(self.history), chunk_size):
            yield iter(self.history[start : start + chunk_size])
        client = FeedClient(
            self.addresses[0], self.addresses[1] if len(self.addresses) > 1 else None,
            config=self.config, symbols=self.symbols, on_switch=self._switches.append,
        )  # fmt: skip
        with self._lock:
            self._client = client
        client.start()
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

    def _next_group(self, client: FeedClient) -> list[Bar] | None:
        # the bars of the next timestamp; waits (running the idle work) only when none is due
        stop = self._stop
        while True:
            self._take(client, 0)
            group = self._due()
            if group is not None:
                return group
            if stop is not None and stop.requested:
                return None
            self._between_timestamps()
            self._take(client, _POLL_S)

    def _take(self, client: FeedClient, timeout: float) -> None:
        pending, ahead = self._pending, self._ahead
        bar = client.get(timeout=timeout)
        while bar is not None:
            self.taken += 1
            ts = bar[0]
            if ts <= self.released_ts:
                self.late += 1
            else:
                entry = pending.get(ts)
                if entry is None:
                    pending[ts] = (time.monotonic(), [bar])
                else:
                    entry[1].append(bar)
                if ts > ahead.get(bar[1], -1):
                    ahead[bar[1]] = ts
            bar = client.get(timeout=0)

    def _due(self) -> list[Bar] | None:
        # the oldest pending timestamp, if every symbol is at or past it, or it waited enough
        pending = self._pending
        if not pending:
            return None
        ts = min(pending)
        first_at, group = pending[ts]
        ahead, n = self._ahead, len(self.symbols)
        complete = len(group) == n or (len(ahead) == n and all(t >= ts for t in ahead.values()))
        if not complete and time.monotonic() - first_at < self.group_wait_s:
            return None
        del pending[ts]
        self.released_ts = ts
        if len(group) > 1:
            group.sort(key=lambda b: b[1])  # the (ts, symbol) order of stored data
        return group

    def _between_timestamps(self) -> None:
        position = self._position
        if position is not None:
            position.n = self._processed()
            position.phase = "idle"
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
                path.parent.mkdir(parents=True, exist_ok=True)
                self._journal = open(path, "ab")  # noqa: SIM115 - held for the session
            self._journal.write(b"".join(encode_bar(bar) for bar in group))
            self._journal.flush()  # in the OS from here: a kill -9 cannot lose it
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
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def stats(self) -> dict[str, Any]:
        """The feed's accounting: the client's counters, and what this side dropped or took."""
        with self._lock:
            client = self._client
        feed = client.stats() if client is not None else getattr(self, "_final", None)
        out: dict[str, Any] = {
            "urls": self.urls, "history": len(self.history), "taken": self.taken,
            "late": self.late, "groups": self.groups, "journaled": self.journaled,
            "unreleased": sum(len(g) for _, g in self._pending.values()),
        }  # fmt: skip
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
