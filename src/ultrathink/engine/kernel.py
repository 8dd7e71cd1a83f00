"""The kernel: one thread, one loop, every bar through the same path.

Per bar, in order: the clock moves to the bar's time (and a paper session waits for it),
the broker matches working orders against the bar (fills at the open come before the
strategy sees the close), the portfolio marks the close, risk sees the new equity,
indicators update, and the strategy's ``on_bar`` runs — its orders go through risk to the
broker and can fill from the next bar on. When the timestamp changes, the close-marked
equity of the previous one is recorded; every ``chunk_size`` points the recorder hands a
batch to the persistence writer. At each new timestamp the session's periodic work runs
(``on_tick``: session inputs, guards, operator commands, snapshots) and a requested stop
(Ctrl-C) ends the loop between two timestamps.

A restart (``engine/recovery.py``) runs the same loop from the first bar: up to
``Replay.end_ts_ns`` the session replays its history (no pacing, recorded inputs instead of
live ones), then ``Replay.go_live`` verifies it against the venue and the session continues.

The cyclic garbage collector is paused while the loop runs. The hot path creates no
reference cycles (events are tuples, orders and positions slotted objects referenced from
dicts), so reference counting frees everything; but each automatic collection traverses
every live order, fill and event of the run, which cost 25–30 % of throughput on the
1,000,000-bar benchmark (measured: 500k vs 557k bars/s, 13.5 vs 9.8 µs per order round trip).

A profiled run (``ultrathink profile``) has a ``KernelProfiler``: the loop compares its bar
count with the next bar to sample (one int comparison per bar; -1, never, when not
profiled) and runs a sampled bar with the timed callables the profiler hands back. The
profiler lives in ``ultrathink.perf.profiler``; the engine knows only this Protocol and
the timing points its components declare (``core/timing.py``).
"""

from __future__ import annotations

import gc
import time
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ultrathink.core.clock import LiveClock, TestClock
from ultrathink.core.events import Bar
from ultrathink.core.latency import LatencyLog
from ultrathink.core.timing import TimingPoint
from ultrathink.data.frame import MarketData
from ultrathink.decision.strategy import Strategy
from ultrathink.engine.booking import ExecutionBooker, hook_error
from ultrathink.engine.facade import StrategyFacade
from ultrathink.engine.guards import Guards
from ultrathink.engine.inputs import RunPosition
from ultrathink.engine.killswitch import KillSwitch
from ultrathink.engine.recorder import Recorder
from ultrathink.engine.router import OrderRouter
from ultrathink.errors import PersistenceError, StrategyError
from ultrathink.execution.broker import Broker
from ultrathink.hardening.crash import CrashDetector
from ultrathink.portfolio.portfolio import Portfolio
from ultrathink.risk.engine import RiskEngine

if TYPE_CHECKING:
    from ultrathink.engine.feed_bars import FeedBars

ProgressFn = Callable[[int], None]
#: the callables the loop binds per chunk: broker matching, mark, risk's equity update,
#: indicator updaters by symbol, the strategy's (guarded, timed) on_bar
Stages = tuple[
    Callable[[Bar], None],
    Callable[[str, float], float],
    Callable[[int, float], None],
    dict[str, tuple[Callable[[float], object], ...]],
    Callable[[Bar], None],
]


class KernelProfiler(Protocol):
    """What the loop calls on a profiled run (implemented in ``ultrathink.perf.profiler``)."""

    def start(self, kernel: Kernel) -> int:
        """The loop starts: the index of the first bar to call ``switch`` at."""
        ...

    def switch(self, n: int, bar: Bar, plain: Stages) -> tuple[int, Stages]:
        """At bar ``n``: the next index to call back at, and the stages to run ``bar`` with."""
        ...

    def chunks(self, chunks: Iterator[Iterator[Bar]]) -> Iterator[Iterator[Bar]]:
        """The data's chunks, each one's materialisation timed."""
        ...

    def stop(self) -> None:
        """The loop ended (or raised): drop an open sample, put back what was wrapped."""
        ...


class Replay(Protocol):
    """A restart's replay of the session's history (``engine/recovery.py``)."""

    end_ts_ns: int

    def idle(self, ts_ns: int) -> None:
        """Where a paced session waited for ``ts_ns``: apply the inputs recorded there."""
        ...

    def go_live(self) -> None:
        """The history is replayed: verify it against the venue, then continue live."""
        ...


class StopToken:
    """Set from a signal handler (Ctrl-C); the loop stops at the next timestamp."""

    __slots__ = ("requested",)

    def __init__(self) -> None:
        self.requested = False


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (nests: the outermost resumes it)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Pacer:
    """Paces a replay at ``speed`` × real time on the live clock (paper mode).

    While it waits it calls ``idle()`` every ``idle_every_ms`` at most (operator commands,
    the feed watchdog, degraded-mode sampling, snapshots), on the kernel thread, and returns
    early when ``stop`` is requested.
    """

    def __init__(
        self,
        speed: float,
        clock: LiveClock | None = None,
        idle: Callable[[], None] | None = None,
        idle_every_ms: float = 20.0,
        stop: StopToken | None = None,
    ) -> None:
        self._speed = speed
        self._clock = clock or LiveClock()
        self._first_ts: int | None = None
        self._start_mono = 0
        self._idle = idle
        self._slice_ns = int(idle_every_ms * 1e6)
        self._stop = stop

    def wait(self, ts_ns: int) -> None:
        """Block until the wall-clock moment that corresponds to ``ts_ns``."""
        if self._first_ts is None:
            self._first_ts = ts_ns
            self._start_mono = self._clock.monotonic_ns()
            return
        deadline = self._start_mono + int((ts_ns - self._first_ts) / self._speed)
        clock, idle, stop = self._clock, self._idle, self._stop
        while True:
            if idle is not None:
                idle()
            now = clock.monotonic_ns()
            if now >= deadline or (stop is not None and stop.requested):
                return
            clock.sleep_until_monotonic_ns(min(deadline, now + self._slice_ns))


@dataclass(frozen=True)
class KernelParts:
    """Everything the loop drives, built once by ``engine/wiring.py``."""

    clock: TestClock
    strategy: Strategy
    facade: StrategyFacade
    router: OrderRouter
    booker: ExecutionBooker
    broker: Broker
    risk: RiskEngine
    portfolio: Portfolio
    recorder: Recorder
    kill_switch: KillSwitch
    guards: Guards | None = None
    crash: CrashDetector | None = None


class Kernel:
    """Runs one strategy over ``MarketData`` through risk, broker and portfolio.

    Parameters
    ----------
    parts : KernelParts
        The components.
    chunk_size : int
        Timestamps per batch handed to the store (1 in a paced session).
    pacer : Pacer or None
        Paces a paper session on the wall clock.
    on_tick : callable or None
        Called at every new timestamp, after the clock moved (session upkeep).
    latency : LatencyLog or None
        When given, every ``on_bar`` duration in ns is appended to its ``values`` (decision
        latency), and folded at every flush so that it stays bounded.
    profiler : KernelProfiler or None
        Samples the loop stage by stage.
    stop : StopToken or None
        Checked at every new timestamp when ``on_tick`` is set (a live session; a replay
        runs to its end first).
    replay : Replay or None
        A restart's replay of the history before the session continues.
    position : RunPosition or None
        Shared with the session's inputs: the bars processed at the last new timestamp.
    """

    def __init__(
        self,
        parts: KernelParts,
        *,
        chunk_size: int = 65_536,
        pacer: Pacer | None = None,
        on_tick: Callable[[], None] | None = None,
        latency: LatencyLog | None = None,
        profiler: KernelProfiler | None = None,
        stop: StopToken | None = None,
        replay: Replay | None = None,
        position: RunPosition | None = None,
    ) -> None:
        self.parts = parts
        self.clock = parts.clock
        self.strategy = parts.strategy
        self.broker = parts.broker
        self.risk = parts.risk
        self.portfolio = parts.portfolio
        self.recorder = parts.recorder
        self.guards = parts.guards
        self.kill_switch = parts.kill_switch
        self.crash = parts.crash
        self.chunk_size = chunk_size
        self.pacer = pacer
        self.on_tick = on_tick
        self.latency = latency
        #: the raw values still held (the newest; see ``LatencyLog``)
        self.latency_ns: array[int] | None = latency.values if latency is not None else None
        self.profiler = profiler
        self.stop = stop if stop is not None else StopToken()
        self.replay = replay
        # timing points of the kernel itself (exact: timed at every call when profiled)
        self._flush = self._flush_records
        self._pace = pacer.wait if pacer is not None else None
        self.n_bars = 0
        self._n = 0
        #: bars processed, updated at every new timestamp (snapshots, input positions)
        self.position = position if position is not None else RunPosition()
        #: the timestamp of the last bar, and whether the loop was stopped early
        self.last_ts_ns = -1
        self.stopped = False
        self._sample_at = -1  # the bar index at which to call the profiler; -1: never
        self._buf: tuple[list[int], list[float]] = ([], [])

    # -- timing points ----------------------------------------------------------------------
    def timing_points(self) -> list[TimingPoint]:
        """Timing points of the components a sampled bar may time (router, booking, strategy)."""
        parts = self.parts
        return [
            *parts.router.timing_points(),
            *parts.booker.timing_points(),
            *self.strategy.timing_points(),
        ]

    def exact_timing_points(self) -> list[TimingPoint]:
        """Calls timed every time when profiled: store hand-offs and a paced session's waits."""
        points = [TimingPoint("persistence_queue", self, "_flush")]
        if self._pace is not None:
            points.append(TimingPoint("pacing_wait", self, "_pace"))
        return points

    def bars_processed(self) -> int:
        """Bars processed so far (exact between two chunks; a live feed waits there)."""
        return self._n

    @property
    def status_counts(self) -> dict[str, int]:
        """Orders per terminal status so far."""
        return {s.value: n for s, n in self.parts.booker.status_counts.items()}

    # -- the run ----------------------------------------------------------------------------
    def run(self, data: MarketData | FeedBars, progress: ProgressFn | None = None) -> None:
        """Replay ``data`` to the end (or until stopped, or the strategy raises)."""
        self.strategy.bind(self.parts.facade)
        with paused_gc():  # see the module docstring
            self._hook("on_start")
            self._loop(data, progress)
            if self.replay is not None:  # the history covered every bar: live from here on
                self._go_live()
            self._hook("on_stop")

    def _loop(self, data: MarketData | FeedBars, progress: ProgressFn | None) -> None:
        self._n = 0
        self._prev_ts = -1
        self._eq = self.portfolio.equity()
        self._room = self.chunk_size  # points left before the next flush
        self._last_point = -1  # set when a stop leaves the last point already in the curve
        self._updaters: dict[str, tuple[Callable[[float], object], ...]] = {}
        prof, chunks = self.profiler, data.iter_chunks()
        if prof is not None:
            self._sample_at = prof.start(self)
            chunks = prof.chunks(chunks)
        try:
            for bars in chunks:
                if self._run_chunk(bars, progress):
                    self.stopped = True
                    break
            else:  # a live feed's bars end only when the session is stopped
                self.stopped = bool(getattr(data, "live", False)) and self.stop.requested
        finally:  # also on a strategy error: keep the last close-marked point
            if self._n and self._last_point != self._prev_ts:
                self._buf[0].append(self._prev_ts)
                self._buf[1].append(self._eq)
            self.n_bars = self.position.n = self._n
            self.position.phase = "idle"  # after the last bar: between timestamps again
            self.last_ts_ns = self._prev_ts
            if prof is not None:
                prof.stop()
        if progress is not None:
            progress(self._n)

    def _run_chunk(self, bars: Iterator[Bar], progress: ProgressFn | None) -> bool:
        # the hot loop: everything it touches is bound to a local first; True: stopped
        ts_buf, eq_buf = self._buf
        risk, broker, clock = self.risk, self.broker, self.clock
        # a profiled run swaps timed versions of these in for its sampled bars
        plain: Stages = (
            broker.on_bar,
            self.portfolio.mark,
            risk.on_equity,
            self._updaters,
            self._on_bar(),
        )
        broker_on_bar, mark, on_equity, updaters, on_bar = plain
        replay = self.replay
        replay_end = replay.end_ts_ns if replay is not None else None
        pace = replay.idle if replay is not None else self._pace
        crash = self.crash.update if self.crash is not None else None
        guards, tick, stop, position = self.guards, self.on_tick, self.stop, self.position
        bad_bar = guards.bad_bar if guards is not None else None
        switch = self.profiler.switch if self.profiler is not None else None
        n, prev_ts, eq, room = self._n, self._prev_ts, self._eq, self._room
        sample_at = self._sample_at
        closed = self._last_point  # a timestamp whose point a live feed already put in
        try:
            for bar in bars:
                if bad_bar is not None and bad_bar(bar):
                    continue  # dropped: prices stay at the last good bar
                if n == sample_at:  # profiled runs only: 1 bar in N runs with timed stages
                    assert switch is not None
                    sample_at, stages = switch(n, bar, plain)
                    broker_on_bar, mark, on_equity, updaters, on_bar = stages
                ts = bar[0]
                if ts != prev_ts:
                    if n and prev_ts != closed:  # the close-marked point of the one that ended
                        ts_buf.append(prev_ts)
                        eq_buf.append(eq)
                        room -= 1
                    if tick is not None:  # a session (a backtest has no tick: none of this)
                        position.n = n  # where inputs recorded from here on apply
                        position.phase = "idle"
                        if replay_end is not None and ts > replay_end:
                            self._go_live()
                            replay_end, pace = None, self._pace
                        if replay_end is None and stop.requested:
                            self._last_point = prev_ts
                            return True  # nothing of ``ts`` happened yet
                        if pace is not None:
                            pace(ts)
                            if replay_end is None and stop.requested:
                                self._last_point = prev_ts
                                return True
                    if not room:
                        room = self.chunk_size
                        self._flush()
                        if progress is not None:
                            progress(n)
                    prev_ts = ts
                    # the kernel owns this TestClock and feeds it time-sorted bars, so the
                    # monotonic check of set_ns() is redundant here (one call less per bar)
                    clock._now_ns = ts
                    if tick is not None:
                        tick()
                if broker.wants_bars:
                    broker_on_bar(bar)
                symbol, close = bar[1], bar[5]
                eq = mark(symbol, close)
                if risk.needs_equity:
                    on_equity(ts, eq)
                if crash is not None:
                    self._check_crash(crash(symbol, close))
                ups = updaters.get(symbol)
                if ups is None:
                    ups = updaters[symbol] = self._indicator_updaters(symbol)
                for update in ups:
                    update(close)
                try:
                    on_bar(bar)
                except PersistenceError:  # a full disk, not the strategy's fault: as is
                    raise
                except Exception as exc:
                    raise self._strategy_error(exc, n, bar) from exc
                n += 1
        finally:  # written back even when the loop is interrupted
            self._n, self._prev_ts, self._eq, self._room = n, prev_ts, eq, room
            self._sample_at = sample_at
        return False

    def _go_live(self) -> None:
        # the replayed records still buffered go through the replay's store gate first
        replay, self.replay = self.replay, None
        if replay is not None:
            self._flush()
            replay.go_live()

    def _check_crash(self, reason: str | None) -> None:
        kill = self.kill_switch
        if reason is not None and not kill.is_engaged:
            kill.fire(reason, "crash_detector")

    def _on_bar(self) -> Callable[[Bar], None]:
        # decision latency = on_bar entry to return: features, model, decision, risk checks
        # and broker submit; only wrapped (one extra frame) when someone asked for it
        on_bar: Callable[[Bar], None] = self.strategy.on_bar
        latency = self.latency_ns
        if self.guards is not None:  # inside the timing: the guard's cost is latency too
            on_bar = self.guards.guard_decision(on_bar, self.strategy)
        if latency is None:
            return on_bar
        clock, record, inner = time.perf_counter_ns, latency.append, on_bar

        def timed(bar: Bar) -> None:
            t0 = clock()
            inner(bar)
            record(clock() - t0)

        return timed

    def _hook(self, name: str) -> None:
        try:
            getattr(self.strategy, name)()
        except PersistenceError:  # a full disk, not the strategy's fault: as is
            raise
        except Exception as exc:
            raise hook_error(self.strategy, name, exc) from exc

    def _indicator_updaters(self, symbol: str) -> tuple[Callable[[float], object], ...]:
        return tuple(ind.for_symbol(symbol).update for ind in self.strategy.indicators)

    def _strategy_error(self, exc: Exception, n: int, bar: Bar) -> StrategyError:
        if isinstance(exc, StrategyError):  # raised by a hook called from on_bar's orders
            return exc
        return StrategyError(
            f"strategy {self.strategy.name!r} raised in on_bar at bar {n} "
            f"({bar.symbol} ts_ns={bar.ts_ns}): {exc!r}"
        )

    def _flush_records(
        self, positions: list[tuple[str, float, float, float, float]] | None = None
    ) -> None:
        # the recorder copies the lists into arrays, so they are cleared in place for reuse
        self.recorder.flush(*self._buf, positions)
        for buf in self._buf:
            buf.clear()
        if self.latency is not None:
            self.latency.fold()

    def flush_now(self) -> None:
        """Hand everything recorded so far to the store now."""
        self._flush()

    def close_timestamp(self) -> None:
        """Between two chunks of a live feed, whose chunks are whole timestamps: put the last
        timestamp's close-marked point in the curve now and hand everything to the store.

        A batch then ends at a timestamp boundary, as the loop's own flushes do, so a
        resume's store gate (``engine/recovery.py``) finds every record up to the store's
        last equity point already stored and none after it.
        """
        if self._n and self._last_point != self._prev_ts:
            self._buf[0].append(self._prev_ts)
            self._buf[1].append(self._eq)
            self._last_point = self._prev_ts
        self._flush()

    def finish(self) -> None:
        """Flush the last partial chunk and the final positions."""
        self._flush(
            [
                (s, p.quantity, p.avg_price, p.realized_pnl, p.last_price)
                for s, p in sorted(self.portfolio.positions().items())
            ]
        )
