"""Wiring: the one place that constructs a run's components and connects them.

Every component receives its collaborators in its constructor; nothing is assigned after
construction. Cross-cutting notifications that would otherwise form a construction cycle
(risk → kill switch → risk) travel on the run's ``MessageBus``: risk publishes a limit breach
and the router a failing risk check, and the kill switch, built after both, subscribes.

::

    clock, bus, portfolio, working orders ─▶ risk ─▶ booking (the broker's sink) ─▶ broker
      ─▶ breakers, rate limiter ─▶ router ─▶ kill switch ─▶ sizing, strategy facade
      ─▶ session inputs, guards, snapshots, control ─▶ pacer, tick chain ─▶ kernel

Backtests build the lean subset: no guards, no control, no per-timestamp tick, so the loop
pays nothing for them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ultrathink.core.bus import MessageBus
from ultrathink.core.clock import LiveClock, TestClock
from ultrathink.core.enums import DenyReason
from ultrathink.core.latency import LatencyLog
from ultrathink.decision.sizing import SizingPolicy
from ultrathink.engine.booking import ExecutionBooker, strategy_hook
from ultrathink.engine.config import EngineConfig
from ultrathink.engine.facade import StrategyFacade
from ultrathink.engine.feed_bars import FeedBars
from ultrathink.engine.guards import Breakers, Guards
from ultrathink.engine.inputs import RunPosition, SessionInput, SessionInputs
from ultrathink.engine.kernel import Kernel, KernelParts, Pacer, Replay, StopToken
from ultrathink.engine.killswitch import KillSwitch
from ultrathink.engine.recorder import Recorder
from ultrathink.engine.router import RISK_FAILURE, OrderRouter
from ultrathink.engine.snapshot import RECENT_FILLS, SnapshotPublisher, SnapshotSource
from ultrathink.engine.spec import RunSpec
from ultrathink.engine.working import WorkingOrders
from ultrathink.execution.paper import JournalSink
from ultrathink.hardening.crash import CrashDetector
from ultrathink.hardening.overrides import MUTABLE_LIMITS
from ultrathink.hardening.rate_limit import OrderRateLimiter
from ultrathink.portfolio.portfolio import Portfolio
from ultrathink.risk.engine import RiskEngine

if TYPE_CHECKING:
    from pathlib import Path

    from ultrathink.engine.control import SessionControl
    from ultrathink.engine.metrics import RunMetrics

#: A live feed session hands its records to the store every this many timestamps, and
#: when it waits for the feed (at most every 0.1 s). A store write per timestamp (a paced
#: replay's rule) cost 2.4 ms each at thousands of timestamps a second; a kill loses nothing
#: either way, since a resume rebuilds the store from the feed and venue journals.
LIVE_FLUSH = 256

#: Bus topic of a daily-loss or drawdown breach: ``(DenyReason, detail)``.
RISK_BREACH = "risk.breach"


@dataclass(frozen=True)
class Engine:
    """One run's components, as wired."""

    kernel: Kernel
    parts: KernelParts
    bus: MessageBus
    inputs: SessionInputs
    snapshots: SnapshotPublisher
    control: SessionControl | None
    metrics: RunMetrics | None
    stop: StopToken


@dataclass(frozen=True)
class SessionIO:
    """What a paper session adds to a run: its journal, its input log, a replay.

    ``replay`` is a factory: it receives the wired engine's inputs and guards and returns the
    ``Replay`` the kernel runs before going live (``engine/recovery.py``).
    """

    journal: JournalSink | None = None
    inputs_path: Path | None = None
    recorded_inputs: list[SessionInput] | None = None
    replay: Callable[[SessionInputs, Guards | None], Replay] | None = None


def build_engine(
    spec: RunSpec,
    recorder: Recorder,
    *,
    run_id: int | None = None,
    io: SessionIO | None = None,
) -> Engine:
    """Construct every component of ``spec`` around ``recorder`` (see the module docstring)."""
    io = io or SessionIO()
    cfg = spec.config
    clock = TestClock(int(spec.data.ts_ns[0]) if len(spec.data) else 0)
    bus = MessageBus()
    portfolio = Portfolio(cfg.starting_cash)
    working = WorkingOrders(portfolio.last_price)
    cost_bps = max(cfg.risk.fee_estimate_bps, cfg.broker.commission_bps + cfg.broker.slippage_bps)
    risk = RiskEngine(
        cfg.risk.model_copy(update={"fee_estimate_bps": cost_bps}),
        portfolio,
        working,
        fixed_fee_estimate=cfg.broker.fee_per_order,
        on_breach=lambda code, detail: bus.publish(RISK_BREACH, (code, detail)),
    )
    strategy = spec.strategy
    booker = ExecutionBooker(portfolio, working, recorder, strategy)
    broker = spec.broker_factory(cfg.broker, clock, booker, io.journal)
    hardened = cfg.hardening.enabled
    breakers = Breakers.build(cfg.hardening, clock) if hardened else None
    router = OrderRouter(
        clock, recorder, working, risk, broker, booker, bus,
        risk_breaker=breakers.risk if breakers else None,
        execution_breaker=breakers.execution if breakers else None,
        rate_limiter=OrderRateLimiter(cfg.rate_limits, clock) if cfg.rate_limits else None,
        on_denied=strategy_hook(strategy, "on_order_denied"),
    )  # fmt: skip
    kill = KillSwitch(router, risk, broker, portfolio, auto_flatten=cfg.kill_switch.flatten)
    _subscribe_kill_switch(bus, kill, cfg)
    sizing = SizingPolicy(
        cfg.sizing, spec.data.n_symbols, portfolio, working, cost_bps=cost_bps,
        fee_per_order=cfg.broker.fee_per_order,
        cash_buffer_pct=cfg.sizing.cash_buffer_pct,
    )  # fmt: skip
    facade = StrategyFacade(clock, router, working, portfolio, sizing)
    position = RunPosition()
    inputs = SessionInputs(
        io.inputs_path, position, clock.now_ns, time.time_ns, io.recorded_inputs,
        replaying=io.replay is not None,
    )  # fmt: skip
    session = spec.mode != "backtest" or hardened or cfg.control.enabled
    metrics = _metrics() if session else None
    guards = None
    if breakers is not None and metrics is not None:
        guards = _guards(spec, clock, breakers, router, risk, kill, inputs, bus, metrics, broker)
    crash = CrashDetector(cfg.kill_switch.crash) if cfg.kill_switch.crash is not None else None
    parts = KernelParts(
        clock, strategy, facade, router, booker, broker, risk, portfolio, recorder, kill,
        guards, crash,
    )  # fmt: skip
    # decision latency after warm-up: the first bars of each symbol only feed indicators
    warmup = spec.strategy.warmup_bars * spec.data.n_symbols
    latency = LatencyLog(skip=warmup) if cfg.measure_latency else None
    live = _live(spec)
    snapshots = SnapshotPublisher(
        _snapshot_source(parts, working), run_id, spec.mode, latency,
        check_every=1 if cfg.speed is not None or live is not None else 256,
    )  # fmt: skip
    control = None
    if metrics is not None:
        control = _control(parts, working, spec, metrics, inputs, snapshots)
    stop = StopToken()
    kernel = _kernel(spec, parts, position, inputs, snapshots, control, latency, stop, io)
    return Engine(kernel, parts, bus, inputs, snapshots, control, metrics, stop)


def _subscribe_kill_switch(bus: MessageBus, kill: KillSwitch, cfg: EngineConfig) -> None:
    # a failing risk check without a breaker halts; limit breaches fire it when configured
    def on_failure(detail: str) -> None:
        kill.fire(detail, "risk_failure")

    bus.subscribe(RISK_FAILURE, on_failure)
    if cfg.kill_switch.on_limit_breach:

        def on_breach(message: tuple[DenyReason, str]) -> None:
            code, detail = message
            kill.fire(detail, code.value)

        bus.subscribe(RISK_BREACH, on_breach)


def _metrics() -> RunMetrics:
    from ultrathink.engine.metrics import RunMetrics  # prometheus-client: sessions only

    return RunMetrics()


def _guards(
    spec: RunSpec,
    clock: TestClock,
    breakers: Breakers,
    router: OrderRouter,
    risk: RiskEngine,
    kill: KillSwitch,
    inputs: SessionInputs,
    bus: MessageBus,
    metrics: RunMetrics,
    broker: Any,
) -> Guards:
    cfg = spec.config
    stale_s = None
    interval_s = spec.data.median_interval_ns() / 1e9
    live = _live(spec)
    if live is not None:  # a live feed: no bar for stale_s of wall time
        stale_s = live.stale_s
    elif cfg.speed is not None and interval_s > 0:  # paced: the feed must keep up in wall time
        stale_s = max(cfg.hardening.stale_bar_multiple * interval_s / cfg.speed,
                      cfg.hardening.min_stale_s)  # fmt: skip
    degraded = None
    if cfg.hardening.degraded is not None:
        from ultrathink.hardening.degraded import DegradedModeMonitor

        dcfg = cfg.hardening.degraded
        if cfg.speed is None:  # unpaced runs are meant to keep a core busy
            dcfg = dcfg.model_copy(update={"cpu_enter_pct": None})
        degraded = DegradedModeMonitor(dcfg, LiveClock())
    return Guards(
        cfg.hardening, clock, breakers, router, risk, kill, inputs, bus, metrics,
        degraded=degraded, trim_history=getattr(broker, "trim_history", None),
        feed_stale_s=stale_s,
    )  # fmt: skip


def _snapshot_source(parts: KernelParts, working: WorkingOrders) -> SnapshotSource:
    booker, recorder, risk, guards = parts.booker, parts.recorder, parts.risk, parts.guards
    limiter = parts.router.rate_limiter
    return SnapshotSource(
        parts.portfolio, working, risk,
        order_counts=lambda: {s.value: n for s, n in booker.status_counts.items()},
        denials=lambda: recorder.denial_reasons,
        n_fills=lambda: len(recorder.all_fills),
        hardening=guards.snapshot if guards is not None else None,
        limits=lambda: {name: getattr(risk.config, name) for name in MUTABLE_LIMITS},
        recent_fills=lambda: recorder.all_fills[-RECENT_FILLS:],
        rate_limits=limiter.headroom if limiter is not None else None,
        strategy_stats=parts.strategy.stats,
        duplicate_fills=lambda: booker.n_duplicate_fills,
    )  # fmt: skip


def _control(
    parts: KernelParts,
    working: WorkingOrders,
    spec: RunSpec,
    metrics: RunMetrics,
    inputs: SessionInputs,
    snapshots: SnapshotPublisher,
) -> SessionControl:
    from ultrathink.engine.control import SessionControl

    return SessionControl(
        clock=parts.clock, risk=parts.risk, kill=parts.kill_switch, router=parts.router,
        portfolio=parts.portfolio, broker=parts.broker, working=working, guards=parts.guards,
        symbols=spec.data.symbols, metrics=metrics, inputs=inputs, snapshots=snapshots,
    )  # fmt: skip


def _kernel(
    spec: RunSpec,
    parts: KernelParts,
    position: RunPosition,
    inputs: SessionInputs,
    snapshots: SnapshotPublisher,
    control: SessionControl | None,
    latency: LatencyLog | None,
    stop: StopToken,
    io: SessionIO,
) -> Kernel:
    cfg = spec.config
    guards = parts.guards
    live = _live(spec)
    # a live feed is paced by the feed itself: the session ticks, idles and stops like a
    # paced replay, without a pacer
    speed = cfg.speed if live is None else 1.0
    tick = _tick_chain(inputs, guards, control, snapshots, position, parts.clock, speed)
    idle = None
    if speed is not None:
        idle = _idle_chain(guards, control, snapshots, position, parts.clock, inputs)
    pacer = Pacer(cfg.speed, idle=idle, stop=stop) if cfg.speed is not None and not live else None
    # a paced session hands every bar's records to the store at once: a crash loses nothing
    # that already happened; an unpaced run batches ``chunk_size`` points for throughput
    chunk = 1 if pacer is not None else cfg.chunk_size
    if live is not None:  # a live feed: every LIVE_FLUSH timestamps, and whenever it waits
        chunk = LIVE_FLUSH
    profiler = spec.profiler(cfg.profile_sample_every) if spec.profiler is not None else None
    if profiler is None and cfg.profile_sample_every is not None:
        from ultrathink.errors import ConfigError

        raise ConfigError(
            f"profile_sample_every={cfg.profile_sample_every} needs the profiler: run the "
            "command under `ultrathink profile -- ...`, or unset profile_sample_every"
        )
    replay = io.replay(inputs, guards) if io.replay is not None else None
    kernel = Kernel(
        parts, chunk_size=chunk, pacer=pacer, on_tick=tick, latency=latency,
        profiler=profiler, stop=stop, replay=replay, position=position,
    )  # fmt: skip
    if live is not None:
        live.bind(
            idle=idle, stop=stop, position=position, processed=kernel.bars_processed,
            flush=kernel.close_timestamp,
            replaying=lambda: inputs.replaying, on_switch=_feed_switches(parts, inputs),
        )  # fmt: skip
    return kernel


def _live(spec: RunSpec) -> FeedBars | None:
    return spec.data if isinstance(spec.data, FeedBars) else None


def _feed_switches(parts: KernelParts, inputs: SessionInputs) -> Callable[[Any], None]:
    # a source switch is a session input (so a replay applies it at the same point): an
    # audit row, a hardening event, and for a failover a failure of the market-data breaker
    guards, router = parts.guards, parts.router

    def apply(data: dict[str, Any], wall_ns: int) -> None:
        name = "failback" if data["reason"] == "recovered" else "failover"
        detail = (
            f"{data['from_source']} -> {data['to_source']} ({data['reason']}, "
            f"{'gapless' if data['gapless'] else 'may have a gap'}): {data['detail']}"
        )
        if guards is None:
            router.audit(f"feed.{name}", detail)
            return
        guards.emit("feed", name, detail)
        if name == "failover":
            guards.market_data.record_failure(f"feed failover: {detail}")

    inputs.on("feed_switch", apply)

    def submit(event: Any) -> None:
        inputs.submit("feed_switch", {
            "from_source": event.from_source, "to_source": event.to_source,
            "reason": event.reason, "detail": event.detail, "gapless": event.gapless,
        })  # fmt: skip

    return submit


def _tick_chain(
    inputs: SessionInputs,
    guards: Guards | None,
    control: SessionControl | None,
    snapshots: SnapshotPublisher,
    position: RunPosition,
    clock: TestClock,
    speed: float | None,
) -> Callable[[], None] | None:
    # per new timestamp: recorded inputs (replay), guards' upkeep, operator commands (live),
    # a snapshot now and then; nothing at all for a backtest (a paced run always has one:
    # the kernel paces and stops there)
    if guards is None and control is None and speed is None:
        return None
    every = snapshots.check_every
    count = [0]

    def tick() -> None:
        inputs.enter_tick()
        if guards is not None:
            guards.tick()
        replaying = inputs.replaying
        if control is not None and not replaying:
            control.drain()
        count[0] += 1
        if count[0] >= every:
            count[0] = 0
            snapshots.maybe_publish(position.n, clock.now_ns(), replaying)
        inputs.leave_tick()

    return tick


def _idle_chain(
    guards: Guards | None,
    control: SessionControl | None,
    snapshots: SnapshotPublisher,
    position: RunPosition,
    clock: TestClock,
    inputs: SessionInputs,
) -> Callable[[], None]:
    # while a paced session waits for its next bar (never during a replay: it is unpaced)
    def idle() -> None:
        if guards is not None:
            guards.idle()
        if control is not None:
            control.drain()
        snapshots.maybe_publish(position.n, clock.now_ns(), inputs.replaying)

    return idle
