"""The kernel: one thread, one loop, every bar through the same path.

Per bar, in order: the clock moves to the bar's time (and a paper session waits for it),
the broker matches working orders against the bar (fills at the open come before the
strategy sees the close), the portfolio marks the close, risk sees the new equity,
indicators update, and the strategy's ``on_bar`` runs — its orders go through risk to the
broker and can fill from the next bar on. When the timestamp changes, the close-marked
equity of the previous one is recorded; every ``chunk_size`` points the recorder hands a
batch to the persistence writer.

The cyclic garbage collector is paused while the loop runs. The hot path creates no
reference cycles (events are tuples, orders and positions slotted objects referenced from
dicts), so reference counting frees everything; but each automatic collection traverses
every live order, fill and event of the run, which cost 25–30 % of throughput on the
1,000,000-bar benchmark (measured: 500k vs 557k bars/s, 13.5 vs 9.8 µs per order round trip).

A profiled run (``ultrathink profile``) has a ``KernelProfiler``: the loop compares its bar
count with the next bar to sample (one int comparison per bar; -1, never, when not
profiled) and runs a sampled bar with the timed callables the profiler hands back. The
profiler itself lives in ``ultrathink.perf.profiler``; the engine knows only this Protocol.
"""

from __future__ import annotations

import gc
import time
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Protocol

from ultrathink.core.clock import LiveClock, TestClock
from ultrathink.core.events import Bar
from ultrathink.data.frame import MarketData
from ultrathink.decision.strategy import Strategy
from ultrathink.engine.context import TradingContext, hook_error
from ultrathink.engine.guards import Guards

if TYPE_CHECKING:
    from ultrathink.engine.control import SessionControl
    from ultrathink.engine.recovery import RecoveryReport
from ultrathink.engine.killswitch import KillSwitch
from ultrathink.engine.recorder import Recorder
from ultrathink.errors import StrategyError
from ultrathink.execution.broker import Broker
from ultrathink.hardening.crash import CrashDetector
from ultrathink.portfolio.portfolio import Portfolio
from ultrathink.risk.engine import RiskEngine

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

    def start(self) -> int:
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
    the market-data staleness watchdog, degraded-mode sampling), on the kernel thread.
    """

    def __init__(
        self,
        speed: float,
        clock: LiveClock | None = None,
        idle: Callable[[], None] | None = None,
        idle_every_ms: float = 20.0,
    ) -> None:
        self._speed = speed
        self._clock = clock or LiveClock()
        self._first_ts: int | None = None
        self._start_mono = 0
        self.idle = idle
        self._slice_ns = int(idle_every_ms * 1e6)

    def wait(self, ts_ns: int) -> None:
        """Block until the wall-clock moment that corresponds to ``ts_ns``."""
        if self._first_ts is None:
            self._first_ts = ts_ns
            self._start_mono = self._clock.monotonic_ns()
            return
        deadline = self._start_mono + int((ts_ns - self._first_ts) / self._speed)
        clock, idle = self._clock, self.idle
        if idle is None:
            clock.sleep_until_monotonic_ns(deadline)
            return
        while True:
            idle()
            now = clock.monotonic_ns()
            if now >= deadline:
                return
            clock.sleep_until_monotonic_ns(min(deadline, now + self._slice_ns))


class Kernel:
    """Runs one strategy over ``MarketData`` through risk, broker and portfolio."""

    def __init__(
        self,
        clock: TestClock,
        ctx: TradingContext,
        strategy: Strategy,
        broker: Broker,
        risk: RiskEngine,
        portfolio: Portfolio,
        recorder: Recorder,
        chunk_size: int = 65_536,
        pacer: Pacer | None = None,
        latency_ns: array[int] | None = None,
    ) -> None:
        self.clock = clock
        self.ctx = ctx
        self.strategy = strategy
        self.broker = broker
        self.risk = risk
        self.portfolio = portfolio
        self.recorder = recorder
        self.chunk_size = chunk_size
        self.pacer = pacer
        #: when given, every ``on_bar`` duration in ns is appended (decision latency)
        self.latency_ns = latency_ns
        #: set by the wiring: the kill switch, and the crash detector that may fire it
        self.kill_switch: KillSwitch | None = None
        self.crash: CrashDetector | None = None
        #: the hardening layer (breakers, fallbacks, degraded mode); None = off
        self.guards: Guards | None = None
        #: called at every new timestamp on the kernel thread (e.g. operator commands)
        self.on_tick: Callable[[], None] | None = None
        #: operator commands (``engine/control.py``), set by the wiring
        self.control: SessionControl
        #: what a restart reconciled (``engine/recovery.py``); None for a fresh run
        self.recovery: RecoveryReport | None = None
        self.n_bars = 0
        #: bars replayed to warm up after a restart (not traded)
        self.n_warm = 0
        #: bars processed, updated at every tick (for status while running)
        self.n_bars_seen = 0
        #: the sampling profiler of ``ultrathink profile``, set by the wiring; None = off
        self.profiler: KernelProfiler | None = None
        self._sample_at = -1  # the bar index at which to call the profiler; -1: never
        self._buf: tuple[list[int], list[float]] = ([], [])

    def run(
        self,
        data: MarketData,
        progress: ProgressFn | None = None,
        warmup: MarketData | None = None,
    ) -> None:
        """Replay ``data`` to the end (or until the strategy raises).

        ``warmup`` (a restart) is replayed first with orders and audit rows suppressed, to
        bring indicators and the strategy back to where they were.
        """
        self.strategy.bind(self.ctx)
        with paused_gc():  # see the module docstring
            self._hook("on_start")
            if warmup is not None:
                self._warm_up(warmup)
            self._loop(data, progress)
            self._hook("on_stop")

    def _warm_up(self, data: MarketData) -> None:
        ctx, clock, mark = self.ctx, self.clock, self.portfolio.mark
        observe = getattr(self.broker, "observe", None)
        updaters: dict[str, tuple[Callable[[float], object], ...]] = {}
        ctx.shadow = True
        try:
            for bar in data.iter_bars():
                clock.set_ns(max(bar.ts_ns, clock.now_ns()))
                mark(bar.symbol, bar.close)
                if observe is not None:
                    observe(bar)
                ups = updaters.get(bar.symbol)
                if ups is None:
                    ups = updaters[bar.symbol] = self._indicator_updaters(bar.symbol)
                for update in ups:
                    update(bar.close)
                with suppress(Exception):  # its decisions are discarded anyway
                    self.strategy.on_bar(bar)
                self.n_warm += 1
        finally:
            ctx.shadow = False

    def _loop(self, data: MarketData, progress: ProgressFn | None) -> None:
        self._n = 0
        self._prev_ts = -1
        self._eq = self.portfolio.equity()
        self._room = self.chunk_size  # points left before the next flush
        self._updaters: dict[str, tuple[Callable[[float], object], ...]] = {}
        prof, chunks = self.profiler, data.iter_chunks()
        if prof is not None:
            self._sample_at, chunks = prof.start(), prof.chunks(chunks)
        try:
            for bars in chunks:
                self._run_chunk(bars, progress)
        finally:  # also on Ctrl-C or a strategy error: keep the last close-marked point
            if self._n:
                self._buf[0].append(self._prev_ts)
                self._buf[1].append(self._eq)
            self.n_bars = self._n
            if prof is not None:
                prof.stop()
        if progress is not None:
            progress(self._n)

    def _run_chunk(self, bars: Iterator[Bar], progress: ProgressFn | None) -> None:
        # the hot loop: everything it touches is bound to a local first
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
        pace = self.pacer.wait if self.pacer is not None else None
        crash = self.crash.update if self.crash is not None else None
        guards, tick = self.guards, self.on_tick
        bad_bar = guards.bad_bar if guards is not None else None
        switch = self.profiler.switch if self.profiler is not None else None
        n, prev_ts, eq, room = self._n, self._prev_ts, self._eq, self._room
        sample_at = self._sample_at
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
                    if pace is not None:  # first: an interrupt here leaves no half-step
                        pace(ts)
                    if n:
                        ts_buf.append(prev_ts)
                        eq_buf.append(eq)
                        room -= 1
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
                        self.n_bars_seen = n
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
                except Exception as exc:
                    raise self._strategy_error(exc, n, bar) from exc
                n += 1
        finally:  # written back even when the loop is interrupted
            self._n, self._prev_ts, self._eq, self._room = n, prev_ts, eq, room
            self._sample_at = sample_at

    def _check_crash(self, reason: str | None) -> None:
        kill = self.kill_switch
        if reason is not None and kill is not None and not kill.is_engaged:
            kill.trigger(reason, source="crash_detector", flatten=kill.auto_flatten)

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

    def _flush(self, positions: list[tuple[str, float, float, float, float]] | None = None) -> None:
        # the recorder copies the lists into arrays, so they are cleared in place for reuse
        self.recorder.flush(*self._buf, positions)
        for buf in self._buf:
            buf.clear()

    def flush_now(self) -> None:
        """Hand everything recorded so far to the store now (e.g. after a reconciliation)."""
        self._flush()

    def finish(self) -> None:
        """Flush the last partial chunk and the final positions."""
        self._flush(
            [
                (s, p.quantity, p.avg_price, p.realized_pnl, p.last_price)
                for s, p in sorted(self.portfolio.positions().items())
            ]
        )
