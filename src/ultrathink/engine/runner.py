"""Wiring: the one place that constructs a run's components and drives it.

Backtest and paper runs share everything; paper only adds a ``Pacer`` on the live clock
(the logical clock still follows the bars, so fills and day boundaries are those of the
data) and uses realistic costs and production limits by default.

Profiling: ``install_profiler(factory)`` makes every kernel built from then on carry the
profiler ``factory(kernel, config.profile_sample_every)`` returns. ``ultrathink profile``
installs the one of ``ultrathink.perf.profiler`` (the engine never imports ``perf``).
"""

from __future__ import annotations

import subprocess
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ultrathink import __version__
from ultrathink.core.clock import TestClock
from ultrathink.core.enums import DenyReason, OrderStatus
from ultrathink.core.latency import percentiles_us
from ultrathink.data.frame import MarketData
from ultrathink.decision.strategy import Strategy
from ultrathink.engine.config import EngineConfig
from ultrathink.engine.context import TradingContext
from ultrathink.engine.control import SessionControl
from ultrathink.engine.guards import Guards
from ultrathink.engine.kernel import Kernel, KernelProfiler, Pacer, ProgressFn, paused_gc
from ultrathink.engine.killswitch import KillSwitch
from ultrathink.engine.metrics import RunMetrics
from ultrathink.engine.recorder import Recorder
from ultrathink.engine.recovery import journal_path, recover
from ultrathink.engine.results import RunResult
from ultrathink.errors import ConfigError
from ultrathink.execution.journal import VenueJournal
from ultrathink.execution.paper import PaperBroker
from ultrathink.hardening.crash import CrashDetector
from ultrathink.hardening.rate_limit import OrderRateLimiter
from ultrathink.persistence import Store, WriteBatch
from ultrathink.persistence.process_writer import ProcessStoreWriter
from ultrathink.portfolio.metrics import compute_metrics
from ultrathink.portfolio.portfolio import Portfolio
from ultrathink.risk.engine import RiskEngine


@dataclass(frozen=True)
class RunSpec:
    """What to run: the strategy instance, the data, the config and where to store it."""

    strategy: Strategy
    data: MarketData
    config: EngineConfig
    mode: str = "backtest"  # backtest | paper | run
    db_path: Path | None = None
    #: continue this stored paper run after a crash (``engine/recovery.py``)
    resume_run_id: int | None = None


#: builds the profiler of a kernel: (kernel, config's profile_sample_every) -> profiler
ProfilerFactory = Callable[[Kernel, int | None], KernelProfiler]
_profiler_factory: ProfilerFactory | None = None


def install_profiler(factory: ProfilerFactory | None) -> ProfilerFactory | None:
    """Profile every kernel built from now on with ``factory`` (None: stop); return the old one."""
    global _profiler_factory
    previous, _profiler_factory = _profiler_factory, factory
    return previous


def _profiler(kernel: Kernel, sample_every: int | None) -> KernelProfiler | None:
    if _profiler_factory is not None:
        return _profiler_factory(kernel, sample_every)
    if sample_every is not None:
        raise ConfigError(
            f"profile_sample_every={sample_every} needs the profiler: run the command under "
            "`ultrathink profile -- ...`, or unset profile_sample_every"
        )
    return None


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit when run from a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
            check=False,
        )
        commit = out.stdout.strip()
    except OSError:
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__


def run(spec: RunSpec, progress: ProgressFn | None = None) -> RunResult:
    """Run ``spec`` to completion and return its result; persists when ``db_path`` is set."""
    store = Store(spec.db_path) if spec.db_path is not None else None
    writer: ProcessStoreWriter | None = None
    run_id: int | None = None
    data_hash = spec.data.sha256()
    try:
        if store is not None and spec.resume_run_id is not None:
            run_id = _reopen(store, spec, data_hash)
            writer = ProcessStoreWriter(spec.db_path)  # type: ignore[arg-type]
        elif store is not None and spec.db_path is not None:
            run_id = store.create_run(
                kind=spec.mode,
                strategy=spec.strategy.name,
                params=spec.strategy.get_params(),
                config=spec.config.model_dump(mode="json"),
                data_name=spec.data.name,
                data_hash=data_hash,
                code_version=code_version(),
                started_ns=time.time_ns(),
            )
            writer = ProcessStoreWriter(spec.db_path)
        result, status = _drive(spec, run_id, writer, data_hash, progress, store)
    except BaseException:
        if writer is not None:
            writer.close()
        if store is not None and run_id is not None:
            store.finish_run(run_id, "failed", {}, time.time_ns())
        if store is not None:
            store.close()
        raise
    if store is not None and run_id is not None:
        result.audit_head = store.audit_head()
        store.finish_run(run_id, status, result.summary(include_fills=False), time.time_ns())
        store.close()
    return result


def _reopen(store: Store, spec: RunSpec, data_hash: str) -> int:
    run_id = spec.resume_run_id
    assert run_id is not None
    record = store.get_run(run_id)
    if record.kind != "paper":
        raise ConfigError(f"run {run_id} is a {record.kind} run; only paper runs resume")
    if record.status == "completed":
        raise ConfigError(f"run {run_id} already completed; nothing to resume")
    if record.data_hash != data_hash:
        raise ConfigError(
            f"the data differs from run {run_id}'s ({record.data_name}): pass the same "
            "--data, --start and --end as the original run"
        )
    store.reopen_run(run_id)
    return run_id


def _journal(spec: RunSpec, run_id: int | None) -> VenueJournal | None:
    # a paper session's venue keeps durable state next to the store (crash-safe restarts)
    if spec.mode != "paper" or spec.db_path is None or run_id is None:
        return None
    path = journal_path(spec.db_path, run_id)
    if spec.resume_run_id is not None and not path.exists():
        raise ConfigError(
            f"run {run_id} has no venue journal at {path}: its orders cannot be reconciled"
        )
    return VenueJournal(path)


def _drive(
    spec: RunSpec,
    run_id: int | None,
    writer: ProcessStoreWriter | None,
    data_hash: str,
    progress: ProgressFn | None,
    store: Store | None,
) -> tuple[RunResult, str]:
    sink: Callable[[dict[str, Any]], None] | None = None
    if writer is not None and run_id is not None:
        w, rid = writer, run_id
        sink = lambda batch: w.put(WriteBatch(run_id=rid, **batch))  # noqa: E731
    journal = _journal(spec, run_id)
    kernel = build_kernel(spec, Recorder(sink, spec.config.starting_cash), journal)
    data, warm = spec.data, None
    if spec.resume_run_id is not None and store is not None and run_id is not None:
        assert isinstance(kernel.broker, PaperBroker)
        report = recover(kernel, store, run_id, kernel.broker.restore())
        kernel.recovery = report
        kernel.flush_now()  # the reconciliation is durable before trading resumes
        if report.resume_after_ts_ns is not None:
            warm = data.between(None, report.resume_after_ts_ns)
            data = data.between(report.resume_after_ts_ns + 1, None)
    server = _control_server(spec, kernel, run_id)
    t0 = time.perf_counter()
    status = "completed"
    with paused_gc():  # as in the kernel loop: through the final flush and drain too
        try:
            kernel.run(data, progress, warmup=warm)
        except KeyboardInterrupt:
            status = "interrupted"
        finally:
            if server is not None:
                server.stop()
            if journal is not None:
                journal.close()
        kernel.finish()
        if writer is not None:
            writer.flush()  # every batch committed: the end of the timed run
        elapsed = time.perf_counter() - t0
        if writer is not None:
            writer.close()  # checkpoint and process exit: housekeeping, not timed
    return _result(spec, kernel, run_id, data_hash, elapsed), status


def _control_server(spec: RunSpec, kernel: Kernel, run_id: int | None) -> Any:
    # the operator endpoint on 127.0.0.1 (token in the 0600 session file) while it runs
    cfg = spec.config.control
    if not cfg.enabled:
        return None
    from ultrathink.web import SESSION_FILE_NAME, default_session_file
    from ultrathink.web.control_api import ControlServer

    if cfg.session_file:
        path = Path(cfg.session_file)
    elif spec.db_path is not None:  # next to the store, so sessions on two stores coexist
        path = spec.db_path.parent / SESSION_FILE_NAME
    else:
        path = default_session_file()
    server = ControlServer(kernel.control, port=cfg.port, session_file=path)
    server.start(extra={"run_id": run_id, "mode": spec.mode, "strategy": spec.strategy.name})
    return server


def build_kernel(spec: RunSpec, recorder: Recorder, journal: VenueJournal | None = None) -> Kernel:
    """Construct clock, portfolio, context, risk and broker for ``spec`` around ``recorder``."""
    cfg = spec.config
    clock = TestClock(int(spec.data.ts_ns[0]) if len(spec.data) else 0)
    portfolio = Portfolio(cfg.starting_cash)
    ctx = TradingContext(clock, portfolio, cfg.sizing, spec.data.n_symbols, recorder)
    risk = RiskEngine(cfg.risk, portfolio, ctx)
    broker = PaperBroker(cfg.broker, clock, ctx, journal)
    ctx.attach(broker, risk, spec.strategy)
    kill = KillSwitch(ctx, risk, broker, portfolio)
    _wire_hardening(cfg, clock, ctx, risk, kill)
    pacer = Pacer(cfg.speed) if cfg.speed is not None else None
    # a paced session hands every bar's records to the store at once: a crash loses nothing
    # that already happened; an unpaced run batches ``chunk_size`` points for throughput
    chunk = 1 if pacer is not None else cfg.chunk_size
    latency = array("q") if cfg.measure_latency else None
    kernel = Kernel(
        clock, ctx, spec.strategy, broker, risk, portfolio, recorder, chunk, pacer, latency
    )
    kernel.kill_switch = kill
    if cfg.kill_switch.crash is not None:
        kernel.crash = CrashDetector(cfg.kill_switch.crash)
    metrics = RunMetrics()
    if cfg.hardening.enabled:
        kernel.guards = _guards(spec, clock, ctx, risk, kill, metrics)
    kernel.control = SessionControl(kernel, spec.data.symbols, metrics, time.time_ns)
    _wire_ticks(kernel, drain=cfg.control.enabled)
    kernel.profiler = _profiler(kernel, cfg.profile_sample_every)
    return kernel


def _guards(
    spec: RunSpec,
    clock: TestClock,
    ctx: TradingContext,
    risk: RiskEngine,
    kill: KillSwitch,
    metrics: RunMetrics,
) -> Guards:
    cfg = spec.config
    stale_s = None
    interval_s = spec.data.median_interval_ns() / 1e9
    if cfg.speed is not None and interval_s > 0:  # paced: the feed must keep up in wall time
        stale_s = max(cfg.hardening.stale_bar_multiple * interval_s / cfg.speed,
                      cfg.hardening.min_stale_s)  # fmt: skip
    guards = Guards(cfg.hardening, clock, ctx, risk, kill, paced_stale_s=stale_s, metrics=metrics)
    ctx.risk_breaker = guards.risk
    ctx.execution_breaker = guards.execution
    return guards


def _wire_ticks(kernel: Kernel, *, drain: bool) -> None:
    # per new timestamp: guards' periodic work and queued operator commands; while a paced
    # session waits: the same commands plus the staleness watchdog and degraded sampling
    guards, control = kernel.guards, kernel.control
    ticks = [f for f in (guards.tick if guards else None, control.drain if drain else None) if f]
    idles = [f for f in (guards.idle if guards else None, control.drain if drain else None) if f]
    kernel.on_tick = _chain(ticks)
    if kernel.pacer is not None:
        kernel.pacer.idle = _chain(idles)


def _chain(calls: list[Callable[[], None]]) -> Callable[[], None] | None:
    if len(calls) <= 1:
        return calls[0] if calls else None

    def chained() -> None:
        for call in calls:
            call()

    return chained


def _wire_hardening(
    cfg: EngineConfig, clock: TestClock, ctx: TradingContext, risk: RiskEngine, kill: KillSwitch
) -> None:
    # rate limits on orders; the kill switch on a failing risk check and on limit breaches
    kill.auto_flatten = cfg.kill_switch.flatten
    if cfg.rate_limits is not None:
        ctx.rate_limiter = OrderRateLimiter(cfg.rate_limits, clock)

    def on_risk_failure(detail: str) -> None:
        kill.trigger(detail, source="risk_failure", flatten=kill.auto_flatten)

    def on_breach(code: DenyReason, detail: str) -> None:
        kill.trigger(detail, source=code.value, flatten=kill.auto_flatten)

    ctx.on_risk_failure = on_risk_failure
    if cfg.kill_switch.on_limit_breach:
        risk.breach_listener = on_breach


def _result(
    spec: RunSpec, kernel: Kernel, run_id: int | None, data_hash: str, elapsed: float
) -> RunResult:
    ts, equity, cash, exposed = kernel.recorder.equity_curve()
    pf = kernel.portfolio
    metrics = compute_metrics(
        ts, equity, exposed, pf.closed_trades, pf.traded_notional, pf.total_fees,
        pf.starting_cash,
    )  # fmt: skip
    counts = {s.value: n for s, n in sorted(kernel.ctx.status_counts.items())}
    open_orders = len(kernel.broker.open_orders())
    if open_orders:
        counts["OPEN"] = open_orders
    return RunResult(
        run_id=run_id,
        mode=spec.mode,
        strategy=spec.strategy.name,
        params=spec.strategy.get_params(),
        data_name=spec.data.name,
        data_hash=data_hash,
        symbols=spec.data.symbols,
        n_bars=kernel.n_bars + kernel.n_warm,
        elapsed_s=elapsed,
        metrics=metrics,
        fills=kernel.recorder.all_fills,
        trades=list(pf.closed_trades),
        ts_ns=ts,
        equity=equity,
        cash=cash,
        order_counts=counts,
        n_denied=kernel.ctx.status_counts.get(OrderStatus.DENIED, 0),
        final_positions={s: p.quantity for s, p in pf.positions().items() if p.quantity},
        denial_reasons=dict(kernel.recorder.denial_reasons),
        strategy_stats=spec.strategy.stats(),
        latency_us=_latency(kernel, spec),
        trading_state=kernel.risk.state.value,
        trading_state_reason=kernel.risk.state_reason,
        recovery=kernel.recovery._asdict() if kernel.recovery is not None else None,
        hardening_events=[e._asdict() for e in kernel.guards.events] if kernel.guards else [],
    )


def _latency(kernel: Kernel, spec: RunSpec) -> dict[str, float] | None:
    # decision latency after warm-up: the first bars of each symbol only feed indicators
    if kernel.latency_ns is None:
        return None
    skip = spec.strategy.warmup_bars * spec.data.n_symbols
    return percentiles_us(kernel.latency_ns[skip:])
