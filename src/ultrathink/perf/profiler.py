"""Always-on sampling profiler of the kernel's hot path, with JSON and Prometheus exports.

Wiring
------
The engine never imports ``perf``: the kernel holds a ``KernelProfiler`` (a Protocol in
``engine/kernel.py``) built by the factory a run's ``RunSpec.profiler`` carries —
:meth:`ProfileSession.profiler_for`. ``ultrathink profile -- COMMAND`` runs a command with
that factory in every run it makes; nothing is installed globally.

Sampling
--------
Timing every stage of every bar would cost more than the budget (≤ 1 % of decision latency;
a ``perf_counter_ns`` call costs ~60 ns, a wrapper frame ~100 ns, a bar 1.7–15 µs), so one
bar in N (``sample_every``, a power of two, 4096 by default) is recorded stage by stage --
bar ``k·N + N/2``, off the power-of-two boundaries where chunks load and flushes fall, whose
cost a recorded bar would multiply by N -- and every other bar pays one int comparison in
the kernel. The 4 bars before a recorded one run with the probes too, unrecorded, to warm
their code paths (measured on ``sma_cross``: a probed bar right after plain ones reads ~2×
the cost of a bar when every bar is probed; after 4 probed bars, 1.1–1.5×).

On a probed bar the kernel runs timed versions of the five callables it holds (broker
matching, ``portfolio.mark``, ``risk.on_equity``, indicator updates, the strategy's
``on_bar``) and the profiler swaps in probes, until the bar after the recorded one, for the
*timing points* the components declare (``core/timing.py``): the order router's risk check,
broker submit and cancel, execution booking's ``apply_fill``, the ML strategy's
``predict_row`` and the bar's symbol's streaming features. The profiler reaches no name a
component did not declare. Only values of existing attributes are swapped: a new instance
attribute, or a dict materialised from the inline values CPython 3.11+ keeps, slows
attribute access on every bar for good (measured: +4–6 % decision latency).

Stages (exclusive: a probe's time excludes the probes nested in it)
-------------------------------------------------------------------
``market_data`` (end of ``on_bar`` to the next bar: building the ``Bar``, the loop, the
bad-bar guard; plus each chunk's materialisation, ``market_data.load``, timed every time),
``features`` (indicators, ML streaming features), ``model`` (``predict_row``), ``decision``
(the rest of ``on_bar``: strategy logic, hardening guard, latency timer), ``risk``
(``check``, ``on_equity``), ``execution`` (order matching, ``submit``, ``cancel``),
``portfolio`` (``mark``, ``apply_fill``), ``persistence_queue`` (every flush: the recorder
packs a batch for the writer thread; timed every time) and ``other`` (the rest of a sampled
bar: kernel glue, per-timestamp upkeep, the crash detector). A paced session's waits
(``pacing_wait``) are kept out of the shares.

The probes' own cost is calibrated when the loop starts and subtracted (the part inside a
probe from its stage, the part outside from its caller's); the proxies' attribute forwarding
is not. So recorded bars still read high in absolute terms (ML
strategy: ~15.6 µs per recorded bar against 12.1 µs per bar on average): read the shares. A
stage's estimated total is its sum over recorded bars × (bars / recorded bars) plus its
exact totals; its share is that over Σ estimates.

Live stages (the dashboard's live page)
---------------------------------------
Every recorded bar also appends its stage times to a short window per stage (the last
``LIVE_WINDOW`` recorded bars; ``persistence_queue`` gets every flush), and ``live_stages``
gives p50/p90/p99 per stage over that window, in µs. The snapshot publisher reads it once per
snapshot, on the kernel thread, between two bars (a sort of 256 ints per stage, and only when
a bar was recorded since the last call). A session's profiler for its live page comes from
``live_profiler``: N adapts to the bar rate so that about ``LIVE_TARGET_HZ`` bars a second
are recorded (N a power of two between ``LIVE_MIN_EVERY`` and ``LIVE_MAX_EVERY``): 4096 at
the ~15,000 bars/s of the ML strategy flat out, as the default; 64 for a paced session
whose bars come a few a second, whose wall time is mostly waiting. ``attach_live_stages``
points the session's snapshot publisher at it.

Cost (``tests/benchmarks/test_bench_profiler.py``, ML strategy, 100,000 bars, 7 alternating
rounds in one process). N = 1024 with 4 warm-up bars: p50 decision latency +0.5 %, p99 +3 to
+5.5 % (the 0.5 % of bars that run probed sit in the tail). N = 2048, 2 warm-up bars: p50
+0.31 %, p99 +2.1 %. The default, N = 4096 with 2 warm-up bars (0.07 % of bars probed):
p50 +0.15 %, p99 within the noise of the host (−3.7 % on that run), bars/s within noise.
A short run gets few samples at that rate: ``--sample-every 256`` trades overhead for them.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from types import MemberDescriptorType, TracebackType
from typing import Any

from ultrathink.core.events import Bar
from ultrathink.core.timing import TimingPoint
from ultrathink.engine.kernel import Kernel, Stages
from ultrathink.errors import ConfigError
from ultrathink.perf.process import (
    Durations,
    GcMonitor,
    ProcessSample,
    exposition,
    process_usage,
)

DEFAULT_SAMPLE_EVERY = 4096
DEFAULT_WARMUP_BARS = 2
STAGES = ("market_data", "features", "model", "decision", "risk", "execution", "portfolio")
MD, FEAT, MODEL, DEC, RISK, EXEC, PF = range(len(STAGES))
EXACT = ("market_data.load", "persistence_queue", "pacing_wait")
BOTTLENECK = (*STAGES, "persistence_queue", "other")
#: recorded bars per stage that the live percentiles are read from
LIVE_WINDOW = 256
#: a live profiler's recorded bars per second of wall time, and the bounds of its N
LIVE_TARGET_HZ = 2.0
LIVE_MIN_EVERY = 64
LIVE_MAX_EVERY = 16_384
LIVE_STAGES = (*STAGES, "other", "persistence_queue", "bar")
RUN_SCHEMA = "ultrathink.profile.run/1"
SESSION_SCHEMA = "ultrathink.profile/1"
_MISSING = object()

Timer = Callable[[], int]
Wrap = Callable[[Callable[..., Any], int], Callable[..., Any]]


def _probe(
    fn: Callable[..., Any],
    slot: int,
    clock: Timer,
    cycle: list[list[int]],
    cost: tuple[int, int],
    on_end: Callable[[int], None] | None = None,
) -> Callable[..., Any]:
    # times ``fn`` into acc[slot], minus the probes nested in it (``stack`` holds child time)
    # and minus the probes' own calibrated cost (inside: this call's; outside: the children's)
    stack, acc, calls = cycle
    inside, outside = cost

    def probe(*args: Any, **kwargs: Any) -> Any:
        stack.append(0)
        t0 = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            t1 = clock()
            dt = t1 - t0
            acc[slot] += dt - stack.pop() - inside
            calls[slot] += 1
            if stack:
                stack[-1] += dt + outside
            if on_end is not None:
                on_end(t1)

    return probe


class _TimedUpdaters(dict[str, tuple[Callable[[float], object], ...]]):
    # the kernel's updaters by symbol on probed bars: each symbol's updates as one timed call
    def __init__(self, real: dict[str, tuple[Callable[[float], object], ...]], wrap: Wrap) -> None:
        super().__init__()
        self._real, self._wrap = real, wrap
        self._timed: dict[str, tuple[Callable[[float], object], ...]] = {}

    def get(self, key: str, default: Any = None) -> Any:
        timed = self._timed.get(key)
        if timed is not None:
            return timed
        ups = self._real.get(key)
        if not ups:  # unknown symbol (the kernel builds its updaters) or no indicators
            return default if ups is None else ups

        def update_all(close: float) -> None:
            for update in ups:
                update(close)

        timed = self._timed[key] = (self._wrap(update_all, FEAT),)
        return timed

    def __setitem__(self, key: str, value: tuple[Callable[[float], object], ...]) -> None:
        self._real[key] = value


def _swappable(owner: object, name: str) -> bool:
    # an instance attribute or slot (its value can be swapped), not a class attribute
    if not hasattr(owner, name):
        return False
    declared = getattr(type(owner), name, _MISSING)
    return declared is _MISSING or isinstance(declared, MemberDescriptorType)


def _noop() -> None:
    pass


_PROBE_COST: dict[Timer, tuple[int, int]] = {}


def probe_cost_ns(
    clock: Timer = time.perf_counter_ns, n: int = 500, rounds: int = 9
) -> tuple[int, int]:
    """(inside, outside): what a probe adds to a call within and around its timed span, ns.

    Calibrated once per clock: ``rounds`` rounds of ``n`` calls to a no-op with a probe, then
    without, each reading the best round. Every reading is a per-round minimum, the inside
    one too: a preempted round or a slow spell of a shared machine inflates that round only,
    where a mean over all rounds would carry it into every later stage (an inflated inside
    cost clamps a sub-µs stage to 0). Only ``time.perf_counter_ns`` is calibrated, other
    clocks get (0, 0).
    """
    if clock is not time.perf_counter_ns:
        return 0, 0
    cached = _PROBE_COST.get(clock)
    if cached is not None:
        return cached
    cycle: list[list[int]] = [[], [0], [0]]
    probe = _probe(_noop, 0, clock, cycle, (0, 0))
    total = bare = timed = math.inf
    for _ in range(rounds):
        cycle[1][0] = 0
        t0 = time.perf_counter_ns()
        for _ in range(n):
            probe()
        t1 = time.perf_counter_ns()
        for _ in range(n):
            _noop()
        t2 = time.perf_counter_ns()
        total, bare = min(total, (t1 - t0) / n), min(bare, (t2 - t1) / n)
        timed = min(timed, cycle[1][0] / n)
    cost = max(total - bare, 0.0)
    inside = min(max(timed - bare, 0.0), cost)
    result = _PROBE_COST[clock] = (round(inside), round(cost - inside))
    return result


def check_sample_every(n: int) -> int:
    """``n`` if it is a power of two >= 1, else a ``ConfigError`` that says so."""
    if n < 1 or n & (n - 1):
        raise ConfigError(f"sample_every must be a power of two >= 1 (e.g. 1024), was {n}")
    return n


class Profiler:
    """Per-stage timing of 1 bar in ``sample_every``, process and GC readings of one run.

    Parameters
    ----------
    sample_every : int
        N: bar k·N + N/2 is timed stage by stage (a power of two).
    timer : callable
        Monotonic ns clock (``time.perf_counter_ns``; tests inject a fake one).
    label : str
        Names the run in the exports (``run`` label).
    warmup_bars : int
        Bars run with the probes, unrecorded, before each recorded one.
    target_hz : float or None
        Adapt N after each recorded bar so that about this many bars a second are recorded
        (N a power of two in ``every_bounds``); None: N stays ``sample_every``.
    every_bounds : (int, int)
        The smallest and largest N an adaptive profiler may pick.
    """

    def __init__(
        self,
        sample_every: int = DEFAULT_SAMPLE_EVERY,
        *,
        timer: Timer = time.perf_counter_ns,
        label: str = "1",
        warmup_bars: int = DEFAULT_WARMUP_BARS,
        target_hz: float | None = None,
        every_bounds: tuple[int, int] = (LIVE_MIN_EVERY, LIVE_MAX_EVERY),
    ) -> None:
        self.sample_every = check_sample_every(sample_every)
        if target_hz is not None and not target_hz > 0:
            raise ConfigError(f"target_hz must be > 0, was {target_hz}")
        self._target_hz = target_hz
        self._bounds = (check_sample_every(every_bounds[0]), check_sample_every(every_bounds[1]))
        self._last_recorded: tuple[int, int] | None = None  # (bar, timer) of the last one
        # recorded bars k·N + N/2: off the power-of-two boundaries of chunks and flushes
        self._phase = sample_every // 2 if sample_every >= 4 else 0
        if warmup_bars < 0:
            raise ConfigError(f"warmup_bars must be >= 0, was {warmup_bars}")
        self.warmup = warmup_bars
        self.label = label
        self.strategy = ""
        self._timer = timer
        self._kernel: Kernel | None = None
        self._next = -1
        self._active = self._warming = self._installed = False
        self._cycle: list[list[int]] = [[], [0] * len(STAGES), [0] * len(STAGES)]
        self._t0 = self._exact_in_cycle = self._exact_at_onbar_end = 0
        self._onbar_end: int | None = None
        self._undo: list[Callable[[], None]] = []  # puts back what probed bars swapped
        self._undo_bar: list[Callable[[], None]] = []  # the same, for one bar's symbol
        self._probes: dict[tuple[int, str], tuple[object, Callable[..., Any]]] = {}
        self._plain: Stages | None = None
        self._timed: Stages | None = None
        self._wrapped_exact = False
        self.stages = {name: Durations() for name in (*STAGES, "other", "bar")}
        self.exact = {name: Durations() for name in EXACT}
        self.n_sampled = self.n_probe_calls = 0
        self.n_bars = self.n_orders = self.n_fills = 0
        self.probe_cost = (0, 0)
        self.gc = GcMonitor(timer)
        self._proc_start: ProcessSample | None = None
        self._proc: tuple[ProcessSample, ProcessSample] | None = None
        self._record_at = -1  # the next bar to record (the bars before it warm up)
        self._live = {name: deque[int](maxlen=LIVE_WINDOW) for name in LIVE_STAGES}
        self._live_seen = -1  # n_sampled + flushes when live_stages last computed
        self._live_cache: dict[str, dict[str, float]] = {}

    # -- KernelProfiler ---------------------------------------------------------------------
    def start(self, kernel: Kernel) -> int:
        """The loop of ``kernel`` starts: calibrate, read the process, listen to the GC; the
        first probed bar."""
        self._kernel = kernel
        self.strategy = kernel.strategy.name
        if not self._wrapped_exact:
            self._wrap_exact(kernel)
        self.probe_cost = probe_cost_ns(self._timer)
        self.gc.start()
        self._proc_start = ProcessSample.now()
        self._record_at = self.sample_every + self._phase
        self._next = max(self._record_at - self.warmup, 1)
        return self._next

    def switch(self, n: int, bar: Bar, plain: Stages) -> tuple[int, Stages]:
        """At a probed bar, or the one after: close the open sample, open the next one."""
        now = self._timer()
        if self._active:
            self._end(now)
        if n != self._next:  # the bar after a recorded one: back to the plain path
            self._uninstall()
            return self._next, plain
        warm = n != self._record_at
        if not warm:
            self._record_at = self._schedule(n, now)
        every = self.sample_every
        self._next = n + 1 if warm or every <= self.warmup + 1 else self._record_at - self.warmup
        return n + 1, self._begin(bar, plain, warm)

    def _schedule(self, n: int, now: int) -> int:
        # the bar to record after bar n: k·N + N/2 for the (maybe adapted) N
        if self._target_hz is not None:
            last, self._last_recorded = self._last_recorded, (n, now)
            if last is not None and now > last[1]:
                rate = (n - last[0]) / ((now - last[1]) / 1e9)
                want = max(int(rate / self._target_hz), 1)
                lo, hi = self._bounds
                self.sample_every = min(max(1 << (want.bit_length() - 1), lo), hi)
                self._phase = self.sample_every // 2 if self.sample_every >= 4 else 0
        every, phase = self.sample_every, self._phase
        nxt = (n + 1 - phase + every - 1) // every * every + phase  # the first k·N + N/2 > n
        return nxt if nxt > n else nxt + every

    def chunks(self, chunks: Iterator[Iterator[Bar]]) -> Iterator[Iterator[Bar]]:
        """``chunks`` with the materialisation of each timed (``market_data.load``)."""
        clock = self._timer
        while True:
            t0 = clock()
            try:
                bars = next(chunks)
            except StopIteration:
                return
            self._exact_done("market_data.load", clock() - t0)
            yield bars

    def stop(self) -> None:
        """The loop ended: drop an open sample, restore, read counters, release the kernel."""
        self._active = False  # the last probed bar had no next bar to close it
        self._uninstall()
        self.gc.stop()
        if self._proc_start is not None:
            self._proc = (self._proc_start, ProcessSample.now())
        kernel, self._kernel = self._kernel, None  # a session keeps its profilers, not runs
        self._probes.clear()
        self._plain = self._timed = None
        if kernel is not None:
            self.n_bars = kernel.n_bars
            self.n_orders = kernel.parts.router.n_orders
            self.n_fills = len(kernel.recorder.all_fills)

    # -- sampling ---------------------------------------------------------------------------
    def _begin(self, bar: Bar, plain: Stages, warm: bool) -> Stages:
        stack, acc, calls = self._cycle
        stack.clear()
        for i in range(len(acc)):
            acc[i] = calls[i] = 0
        self._onbar_end, self._exact_in_cycle, self._exact_at_onbar_end = None, 0, 0
        if not self._installed:
            self._install()
        self._swap_features(bar)
        if plain is not self._plain:  # the loop binds its callables once per chunk
            self._plain, self._timed = plain, self._timed_stages(plain)
        assert self._timed is not None
        self._active, self._warming = True, warm
        self._t0 = self._timer()
        return self._timed

    def _timed_stages(self, plain: Stages) -> Stages:
        broker_on_bar, mark, on_equity, updaters, on_bar = plain
        wrap = self._wrapper
        return (
            wrap(broker_on_bar, EXEC),
            wrap(mark, PF),
            wrap(on_equity, RISK),
            _TimedUpdaters(updaters, wrap),
            wrap(on_bar, DEC, self._on_bar_end),
        )

    def _wrapper(
        self, fn: Callable[..., Any], slot: int, on_end: Callable[[int], None] | None = None
    ) -> Callable[..., Any]:
        return _probe(fn, slot, self._timer, self._cycle, self.probe_cost, on_end)

    def _on_bar_end(self, t1: int) -> None:
        self._onbar_end, self._exact_at_onbar_end = t1, self._exact_in_cycle

    def _end(self, t1: int) -> None:
        self._active = False
        if self._warming:
            return
        _, acc, calls = self._cycle
        if self._onbar_end is not None:
            after = self._exact_in_cycle - self._exact_at_onbar_end
            acc[MD], calls[MD] = t1 - self._onbar_end - after, 1
        n_probes = sum(calls) - calls[MD]
        loop_ns = t1 - self._t0 - self._exact_in_cycle - n_probes * sum(self.probe_cost)
        live = self._live
        for slot, name in enumerate(STAGES):
            if calls[slot]:
                self.stages[name].record(max(acc[slot], 0))
                live[name].append(max(acc[slot], 0))
        self.stages["other"].record(max(loop_ns - sum(acc), 0))
        self.stages["bar"].record(max(loop_ns, 0))
        live["other"].append(max(loop_ns - sum(acc), 0))
        live["bar"].append(max(loop_ns, 0))
        self.n_sampled += 1
        self.n_probe_calls += n_probes

    def _install(self) -> None:
        self._installed = True
        kernel = self._kernel
        if kernel is not None:
            self._swap_points(kernel.timing_points(), self._undo)

    def _swap_features(self, bar: Bar) -> None:
        # per-symbol state of the bar's symbol (e.g. the ML strategy's streaming features)
        self._restore(self._undo_bar)
        kernel = self._kernel
        if kernel is not None:
            self._swap_points(kernel.strategy.symbol_timing_points(bar[1]), self._undo_bar)

    def _swap_points(self, points: list[TimingPoint], undo: list[Callable[[], None]]) -> None:
        for point in points:
            if point.stage not in STAGES:
                raise ConfigError(
                    f"timing point {type(point.owner).__name__}.{point.attr} names stage "
                    f"{point.stage!r}; stages are {', '.join(STAGES)}"
                )
            slot = STAGES.index(point.stage)
            owner, attr = point.owner, point.attr
            if owner is None or not _swappable(owner, attr):
                continue
            self._swap(owner, attr, self._probe_for(owner, attr, slot), undo)

    def _probe_for(self, owner: object, attr: str, slot: int) -> Callable[..., Any]:
        # one probe per timing point, reused by every probed bar
        key = (id(owner), attr)
        known = self._probes.get(key)
        if known is not None and known[0] is owner:
            return known[1]
        probe = self._wrapper(getattr(owner, attr), slot)
        self._probes[key] = (owner, probe)
        return probe

    @staticmethod
    def _swap(owner: object, name: str, value: object, undo: list[Callable[[], None]]) -> None:
        old = getattr(owner, name)
        setattr(owner, name, value)
        undo.append(lambda: setattr(owner, name, old))

    @staticmethod
    def _restore(undo: list[Callable[[], None]]) -> None:
        while undo:
            undo.pop()()

    def _uninstall(self) -> None:
        self._restore(self._undo_bar)
        self._restore(self._undo)
        self._installed = False

    # -- calls timed every time -------------------------------------------------------------
    def _wrap_exact(self, kernel: Kernel) -> None:
        # for the kernel's whole life: the exact timing points it declares (its flushes to
        # the store, the last one after the loop; a paced session's waits)
        self._wrapped_exact = True
        for point in kernel.exact_timing_points():
            if point.stage in EXACT and _swappable(point.owner, point.attr):
                fn = getattr(point.owner, point.attr)
                setattr(point.owner, point.attr, self._exact_probe(fn, point.stage))

    def _exact_probe(self, fn: Callable[..., Any], key: str) -> Callable[..., Any]:
        clock = self._timer

        def probe(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                self._exact_done(key, clock() - t0)

        return probe

    def _exact_done(self, key: str, dt: int) -> None:
        self.exact[key].record(dt)
        if key == "persistence_queue":
            self._live[key].append(dt)
        if self._active:  # not part of the sampled bar's stages
            self._exact_in_cycle += dt
            stack = self._cycle[0]
            if stack:
                stack[-1] += dt

    # -- the live page ----------------------------------------------------------------------
    def live_stages(self) -> Mapping[str, Mapping[str, float]]:
        """p50/p90/p99 (µs) and ``n`` of each stage over its last ``LIVE_WINDOW`` recorded
        bars (``persistence_queue``: flushes), stages without a sample left out. Cheap when
        nothing was recorded since the last call: the same mapping again."""
        seen = self.n_sampled + self.exact["persistence_queue"].n
        if seen == self._live_seen:
            return self._live_cache
        out: dict[str, dict[str, float]] = {}
        for name, window in self._live.items():
            if window:
                ordered = sorted(window)
                n = len(ordered)
                out[name] = {
                    "p50": ordered[(n + 1) // 2 - 1] / 1000.0,
                    "p90": ordered[max(math.ceil(0.9 * n), 1) - 1] / 1000.0,
                    "p99": ordered[max(math.ceil(0.99 * n), 1) - 1] / 1000.0,
                    "n": n,
                }
        self._live_seen, self._live_cache = seen, out
        return out

    # -- reports ----------------------------------------------------------------------------
    def estimated_ns(self) -> dict[str, float]:
        """Each bottleneck stage's estimated total over the run (ns)."""
        scale = self.n_bars / self.n_sampled if self.n_sampled else 0.0
        est = {name: self.stages[name].total_ns * scale for name in (*STAGES, "other")}
        est["market_data"] += self.exact["market_data.load"].total_ns
        est["persistence_queue"] = float(self.exact["persistence_queue"].total_ns)
        return est

    def bottleneck(self) -> list[dict[str, Any]]:
        """Stages ranked by their share of the estimated loop time (empty: nothing sampled)."""
        if not self.n_sampled:
            return []
        est = self.estimated_ns()
        total = sum(est.values()) or 1.0
        rows = [{"stage": s, "share": est[s] / total, "estimated_s": est[s] / 1e9} for s in est]
        return sorted(rows, key=lambda r: (-r["share"], BOTTLENECK.index(r["stage"])))

    def throughput(self) -> dict[str, float]:
        """Bars, orders and fills of the loop, and per second of its wall time."""
        wall = process_usage(*self._proc)["wall_s"] if self._proc else 0.0
        out: dict[str, float] = {"wall_s": wall}
        for name, n in (("bars", self.n_bars), ("orders", self.n_orders), ("fills", self.n_fills)):
            out[name] = float(n)
            out[f"{name}_per_s"] = n / wall if wall > 0 else 0.0
        return out

    def to_json(self) -> dict[str, Any]:
        """The run's profile as JSON-ready data (see the module docstring for the stages)."""
        inside, outside = self.probe_cost
        return {
            "schema": RUN_SCHEMA,
            "label": self.label,
            "strategy": self.strategy,
            "sample_every": self.sample_every,
            "n_bars": self.n_bars,
            "n_sampled_bars": self.n_sampled,
            "throughput": self.throughput(),
            "bar": self.stages["bar"].summary(),
            "stages": {name: self.stages[name].summary() for name in (*STAGES, "other")},
            "calls": {name: stat.summary() for name, stat in self.exact.items()},
            "bottleneck": self.bottleneck(),
            "process": process_usage(*self._proc) if self._proc else {},
            "gc": self.gc.to_json(),
            "probes": {
                "inside_ns": inside,
                "outside_ns": outside,
                "per_sampled_bar": self.n_probe_calls / self.n_sampled if self.n_sampled else 0,
            },
        }

    def to_prometheus(self) -> bytes:
        """The run's profile in the Prometheus text format."""
        return exposition([self.to_json()])


def live_profiler(sample_every: int | None = None) -> Profiler:
    """The ``RunSpec.profiler`` factory of a session watched live: N adapts to the bar rate
    (see "Live stages" in the module docstring) unless the config sets
    ``profile_sample_every``."""
    if sample_every is not None:
        return Profiler(sample_every)
    return Profiler(DEFAULT_SAMPLE_EVERY, target_hz=LIVE_TARGET_HZ)


def attach_live_stages(engine: Any) -> bool:
    """Have ``engine``'s snapshots carry its profiler's live stages (an ``engine.wiring.Engine``
    whose kernel has a ``Profiler``); False when the run is not profiled."""
    live = getattr(engine.kernel.profiler, "live_stages", None)
    if live is None:
        return False
    engine.snapshots.stage_source = live
    return True


class ProfileSession:
    """Profiles every engine run whose ``RunSpec.profiler`` is ``profiler_for`` (a context
    manager that also reads the process and the GC while it is active).

    Parameters
    ----------
    sample_every : int or None
        N for every run; None: each run's ``profile_sample_every``, else 4096.
    timer : callable
        Monotonic ns clock of the runs' profilers.
    """

    def __init__(self, sample_every: int | None = None, *, timer: Timer = time.perf_counter_ns):
        self.sample_every = None if sample_every is None else check_sample_every(sample_every)
        self._timer = timer
        self.runs: list[Profiler] = []
        self.gc = GcMonitor(timer)
        self._proc: list[ProcessSample] = []

    def profiler_for(self, sample_every: int | None) -> Profiler:
        """The ``RunSpec.profiler`` factory: a new run's profiler (the run's N unless the
        session sets one)."""
        n = self.sample_every or sample_every or DEFAULT_SAMPLE_EVERY
        prof = Profiler(n, timer=self._timer, label=str(len(self.runs) + 1))
        self.runs.append(prof)
        return prof

    def __enter__(self) -> ProfileSession:
        self._proc = [ProcessSample.now()]
        self.gc.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.gc.stop()
        self._proc.append(ProcessSample.now())

    def to_json(self) -> dict[str, Any]:
        """Every run's profile, plus the whole session's process and GC readings."""
        return {
            "schema": SESSION_SCHEMA,
            "sample_every": self.sample_every,
            "runs": [run.to_json() for run in self.runs],
            "process": process_usage(self._proc[0], self._proc[-1]) if self._proc else {},
            "gc": self.gc.to_json(),
        }

    def to_prometheus(self) -> bytes:
        """Every run's profile in the Prometheus text format (label ``run``)."""
        return exposition([run.to_json() for run in self.runs])
