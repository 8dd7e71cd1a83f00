"""Hardening scenarios with seeded fault injection (issue #4).

A broker failing 30 % of its calls, corrupted and stalled market data, a model and a
strategy raising, a risk component raising: each scenario runs a real engine wired by the
production wiring (paper broker, risk, portfolio, guards) with one component made faulty by
``ultrathink.stress``, and checks that the breaker trips, its fallback takes over, it
recovers, and the books still reconcile.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

from ultrathink.config import realistic_defaults
from ultrathink.core.enums import TERMINAL_STATUSES, DenyReason, OrderStatus, Side, TradingState
from ultrathink.core.events import Bar, Fill, OrderDenied
from ultrathink.data import MarketData, load_data
from ultrathink.decision.builtin import SmaCross
from ultrathink.decision.ml import MLStrategy, ModelBundle
from ultrathink.decision.strategy import Strategy
from ultrathink.engine.config import EngineConfig
from ultrathink.engine.control import SessionControl
from ultrathink.engine.guards import Guards
from ultrathink.engine.spec import BrokerFactory, paper_broker
from ultrathink.engine.wiring import Engine
from ultrathink.execution.broker import Broker
from ultrathink.features.spec import FEATURE_NAMES, WARMUP_BARS
from ultrathink.hardening.breaker import BreakerState, BreakerTransition
from ultrathink.hardening.overrides import Halt, Resume
from ultrathink.persistence import Store, WriteBatch
from ultrathink.persistence.writer import StoreWriter
from ultrathink.risk.engine import RiskEngine
from ultrathink.stress import (
    FaultyBroker,
    FaultyCall,
    RaisingStrategy,
    WrappedBroker,
    corrupt_bars,
    faulty_predictor,
)
from ultrathink.testing.engine import BatchCapture, engine_for, run_engine

MINUTE = 60 * 1_000_000_000
OPEN, HALF_OPEN, CLOSED = BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED


# -- tooling --------------------------------------------------------------------------------
def audit_details(capture: BatchCapture, kind: str) -> list[str]:
    """The details of the audit rows of one kind, in order."""
    return [detail for _, _, detail in capture.audit(kind)]


def hardened(**hardening: Any) -> EngineConfig:
    """Paper-session config (realistic costs, production limits, rate limits, breakers).

    Degraded mode is off: it samples CPU and latency of this process, which a loaded test
    machine would turn into REDUCING at random.
    """
    values = realistic_defaults()
    values["hardening"] = {"enabled": True, "degraded": None, **hardening}
    return EngineConfig(**values)


def breaker(name: str, **settings: Any) -> dict[str, Any]:
    return {"name": name, **settings}


def run_session(
    strategy: Strategy,
    data: MarketData,
    config: EngineConfig,
    wrap: Callable[[Broker], FaultyBroker] | None = None,
    before_run: Callable[[Engine], None] | None = None,
    capture: BatchCapture | None = None,
) -> tuple[Engine, BatchCapture, FaultyBroker | None]:
    """Wire ``strategy`` as a paper session, let ``before_run`` see the engine, run it."""
    capture = capture if capture is not None else BatchCapture()
    wrapped = WrappedBroker(wrap) if wrap is not None else None
    factory: BrokerFactory = wrapped if wrapped is not None else paper_broker
    engine = engine_for(strategy, data, config, broker_factory=factory, capture=capture)
    if before_run is not None:
        before_run(engine)
    run_engine(engine, data)
    return engine, capture, None if wrapped is None else wrapped.broker


def guards_of(engine: Engine) -> Guards:
    guards = engine.parts.guards
    assert guards is not None, "hardened runs have guards"
    return guards


def control_of(engine: Engine) -> SessionControl:
    assert engine.control is not None, "paper sessions have a control channel"
    return engine.control


def transitions(engine: Engine, name: str) -> list[BreakerTransition]:
    return list(guards_of(engine).breakers[name].transitions)


def moves(ts: list[BreakerTransition]) -> list[tuple[BreakerState, BreakerState]]:
    return [(t.from_state, t.to_state) for t in ts]


def open_spans(ts: list[BreakerTransition]) -> Iterator[tuple[int, int]]:
    """(entered OPEN, left OPEN) on the breaker's clock; the last may end at +inf."""
    for i, t in enumerate(ts):
        if t.to_state is OPEN:
            yield t.ts_ns, ts[i + 1].ts_ns if i + 1 < len(ts) else 2**62


def assert_books_reconcile(engine: Engine, broker: Broker, fills: list[Fill]) -> None:
    """Portfolio == venue, cash == start - Σ signed notional - fees, equity == cash + Σ q·p,
    and the engine's working-order view == the venue's open orders."""
    pf, facade = engine.parts.portfolio, engine.parts.facade
    held = {s: p.quantity for s, p in pf.positions().items() if p.quantity}
    venue = broker.positions()
    # partial fills (volume cap) trade fractional quantities: the two sums differ in the
    # last bits, and the venue keeps dust (~1e-12) where the portfolio snaps to flat
    for symbol in set(held) | set(venue):
        assert held.get(symbol, 0.0) == pytest.approx(venue.get(symbol, 0.0), abs=1e-6), symbol
    flows = sum((f.quantity if f.side is Side.BUY else -f.quantity) * f.price for f in fills)
    fees = sum(f.fee for f in fills)
    assert pf.cash == pytest.approx(pf.starting_cash - flows - fees, rel=1e-12, abs=1e-6)
    marked = sum(p.quantity * p.last_price for p in pf.positions().values() if p.quantity)
    assert pf.equity() == pytest.approx(pf.cash + marked, rel=1e-12)
    assert all(math.isfinite(p.last_price) and p.last_price > 0 for p in pf.positions().values())
    for symbol in {o.symbol for o in broker.open_orders()} | set(held):
        working = sum(o.signed_remaining for o in broker.open_orders(symbol))
        assert facade.pending_qty(symbol) == pytest.approx(working, abs=1e-9), symbol
    # the working-order view, as a snapshot shows it: the same orders as the venue's
    snap = engine.snapshots.publish(engine.kernel.position.n, engine.parts.clock.now_ns())
    venue_open = {o.client_order_id: o.remaining_qty for o in broker.open_orders()}
    assert {w[0]: w[3] for w in snap.working_orders} == pytest.approx(venue_open, abs=1e-9)


def final_states(capture: BatchCapture) -> dict[str, list[OrderStatus]]:
    """Terminal states each requested order reached (events and denials)."""
    states: dict[str, list[OrderStatus]] = {
        r.client_order_id: [] for r in capture.records("requests")
    }
    for e in capture.records("events"):
        if e.status in TERMINAL_STATUSES:
            states[e.client_order_id].append(e.status)
    for d in capture.records("denials"):
        states[d.client_order_id].append(OrderStatus.DENIED)
    return states


class Flipper(Strategy):
    """Every ``every`` bars, alternates its target between ``qty`` long and flat."""

    name = "flipper"

    def __init__(self, every: int = 2, qty: float = 10) -> None:
        super().__init__()
        self.every, self.qty, self.i = every, qty, 0
        self.denials: list[OrderDenied] = []

    def on_bar(self, bar: Bar) -> None:
        if self.i % self.every == 0:
            long = (self.i // self.every) % 2 == 0
            self.target_position(bar.symbol, self.qty if long else 0.0)
        self.i += 1

    def on_order_denied(self, denied: OrderDenied) -> None:
        self.denials.append(denied)


class Quoter(Strategy):
    """Keeps one resting limit buy 5 % under the close, cancelled and replaced every bar."""

    name = "quoter"

    def __init__(self) -> None:
        super().__init__()
        self.cancel_results: list[bool] = []
        self.venue: Broker | None = None  # the run's broker (set before the run)

    def on_bar(self, bar: Bar) -> None:
        for order_id in [o.client_order_id for o in self._working(bar.symbol)]:
            self.cancel_results.append(self.cancel(order_id))
        self.buy(bar.symbol, 5, limit=round(bar.close * 0.95, 2))

    def _working(self, symbol: str) -> list[Any]:
        assert self.venue is not None  # a test strategy that reads the venue's open orders
        return list(self.venue.open_orders(symbol))


# -- 1. a broker failing 30 % of its calls --------------------------------------------------
EXEC_BREAKER = breaker("execution", failure_threshold=2, window_s=600.0, recovery_timeout_s=300.0)
FLAKY_DATA = "synthetic:n_bars=600,seed=3"  # 1-minute bars


def flaky_broker_run(
    tmp_path: Path | None = None, seed: int = 7
) -> tuple[Engine, BatchCapture, FaultyBroker]:
    """The flipper over a broker failing 30 % of its calls.

    With ``tmp_path`` the batches also go to the store ``stress.db``, as its one run.
    """
    data = load_data(FLAKY_DATA)
    capture = BatchCapture()
    store: Store | None = None
    writer: StoreWriter | None = None
    if tmp_path is not None:
        store = Store(tmp_path / "stress.db")
        run_id = store.create_run("paper", "flipper", {}, {}, data.name, "", "test", 0)
        writer = StoreWriter(tmp_path / "stress.db")
        put = writer.put
        capture = BatchCapture(lambda batch: put(WriteBatch(run_id=run_id, **batch)))
    engine, _, faulty = run_session(
        Flipper(every=2),
        data,
        hardened(execution=EXEC_BREAKER),
        lambda inner: FaultyBroker(inner, fail_rate=0.3, seed=seed, mode="mixed"),
        capture=capture,
    )
    if writer is not None and store is not None:
        writer.close()
        store.close()
    assert faulty is not None
    return engine, capture, faulty


def test_a_broker_failing_30pct_trips_the_execution_breaker_which_recovers(tmp_path: Path) -> None:
    engine, capture, faulty = flaky_broker_run(tmp_path)
    ts = transitions(engine, "execution")
    recovery_ns = int(EXEC_BREAKER["recovery_timeout_s"] * 1e9)

    assert faulty.n_submits > 150 and 0.2 < faulty.n_faults / faulty.n_submits < 0.4
    seen = set(moves(ts))
    assert {(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED), (HALF_OPEN, OPEN)} <= seen
    assert seen <= {(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED), (HALF_OPEN, OPEN)}
    breaker_events = [e for e in guards_of(engine).events if e.kind == "breaker"]
    assert [(e.ts_ns, e.detail.split(":")[0]) for e in breaker_events] == [
        (t.ts_ns, f"{t.from_state.value} -> {t.to_state.value}") for t in ts
    ]
    # HALF_OPEN after recovery_timeout_s of bar time: at the first order request after it
    for prev, nxt in itertools.pairwise(ts):
        if (prev.to_state, nxt.to_state) == (OPEN, HALF_OPEN):
            due = prev.ts_ns + recovery_ns
            assert nxt.ts_ns >= due
            assert not [r for r in capture.records("requests") if due <= r.ts_ns < nxt.ts_ns]
    # a probe that succeeds closes it: that order reached the venue without a fault
    faulted = {f.client_order_id for f in faulty.faults}
    by_ts = {r.ts_ns: r.client_order_id for r in capture.records("requests")}
    for t in ts:
        if t.from_state is HALF_OPEN:
            probe = by_ts[t.ts_ns]
            assert (probe not in faulted) is (t.to_state is CLOSED), t
    # the trail: audit rows in memory and in the store
    assert any("CLOSED -> OPEN" in d for d in audit_details(capture, "breaker.execution"))
    with Store(tmp_path / "stress.db") as store:
        [run] = store.list_runs()
        stored = store.audit_details(run.run_id, ("breaker.execution",))
        assert len(stored) == len(ts)
        assert stored[0][1].startswith("CLOSED -> OPEN: 2 failures within window_s=600.0")


def test_orders_are_denied_broker_unavailable_exactly_while_the_breaker_is_open() -> None:
    engine, capture, faulty = flaky_broker_run()
    spans = list(open_spans(transitions(engine, "execution")))
    unavailable = [
        d for d in capture.records("denials") if d.reason is DenyReason.BROKER_UNAVAILABLE
    ]
    denied_ids = {d.client_order_id for d in unavailable}

    assert len(unavailable) >= 10
    assert set(capture.records("denials")) == set(unavailable), "no other denial in this run"
    for d in unavailable:
        assert any(start <= d.ts_ns < end for start, end in spans), d
        assert "execution breaker is OPEN" in d.detail
    for r in capture.records("requests"):
        inside = any(start < r.ts_ns < end for start, end in spans)
        assert inside is (r.client_order_id in denied_ids), r
        if inside:
            assert faulty.inner.get_order(r.client_order_id) is None, "never sent"


def test_every_order_ends_in_one_terminal_state_and_the_books_reconcile(tmp_path: Path) -> None:
    engine, capture, faulty = flaky_broker_run(tmp_path)
    inner = faulty.inner
    states = final_states(capture)
    open_ids = {o.client_order_id for o in inner.open_orders()}

    for coid, reached in states.items():
        assert len(reached) == 1 or (not reached and coid in open_ids), (coid, reached)
    # submit faults before the venue saw the order: REJECTED with the reason, never at venue
    unsent = faulty.fault_ids("submit", "before")
    lost = faulty.fault_ids("submit", "after")
    assert len(unsent) >= 10 and len(lost) >= 10
    rejected = {
        e.client_order_id: e.reason
        for e in capture.records("events")
        if e.status is OrderStatus.REJECTED
    }
    for coid in unsent:
        assert inner.get_order(coid) is None
        assert rejected[coid] == "the broker never received it (submit failed)"
    # faults after the venue processed it: adopted as the venue has it, filled like any other
    adopted = " ".join(audit_details(capture, "execution.adopted"))
    fills = engine.parts.recorder.all_fills
    filled_ids = {f.client_order_id for f in fills}
    for coid in lost:
        assert inner.get_order(coid) is not None and coid not in rejected
        assert f"{coid}: the broker has it" in adopted
    assert set(lost) & filled_ids, "adopted orders fill and are booked"
    assert not set(unsent) & filled_ids
    assert set(rejected) == set(unsent)
    # the books: portfolio == venue, cash and equity identities, working orders
    assert_books_reconcile(engine, inner, fills)
    assert len(fills) == engine.parts.portfolio.n_fills
    # the store agrees: one final state per order
    with Store(tmp_path / "stress.db") as store:
        [run] = store.list_runs()
        stored = store.order_states(run.run_id)
        assert store.fill_ids(run.run_id) == {f.fill_id for f in fills}
    assert set(stored) == set(states)
    for coid, (status, _, _) in stored.items():
        if states[coid]:
            assert status == states[coid][0].value, coid
        else:
            assert status in ("ACCEPTED", "PARTIALLY_FILLED") and coid in open_ids, coid


def test_failing_cancels_keep_the_working_order_view_in_step_with_the_venue() -> None:
    data = load_data("synthetic:n_bars=300,seed=5")
    config = hardened(execution=EXEC_BREAKER)
    strategy = Quoter()

    def give_venue(engine: Engine) -> None:
        strategy.venue = engine.parts.broker

    engine, capture, faulty = run_session(
        strategy,
        data,
        config,
        lambda b: FaultyBroker(b, fail_rate=0.3, seed=11, mode="mixed"),
        before_run=give_venue,
    )
    assert faulty is not None and strategy.venue is faulty

    cancel_before = faulty.fault_ids("cancel", "before")
    cancel_after = faulty.fault_ids("cancel", "after")
    assert cancel_before and cancel_after
    assert strategy.cancel_results.count(False) >= len(cancel_before) + len(cancel_after)
    failed = " ".join(audit_details(capture, "execution.cancel_failed"))
    assert all(coid in failed for coid in cancel_before + cancel_after)
    for coid in cancel_after:  # the venue cancelled it: the response alone was lost
        order = faulty.inner.get_order(coid)
        assert order is not None and order.status is OrderStatus.CANCELLED
    assert (CLOSED, OPEN) in moves(transitions(engine, "execution")), "cancels count too"
    open_ids = {o.client_order_id for o in faulty.inner.open_orders()}
    for coid, reached in final_states(capture).items():
        assert len(reached) == 1 or (not reached and coid in open_ids), (coid, reached)
    assert_books_reconcile(engine, faulty.inner, engine.parts.recorder.all_fills)


# -- 2. market data: corrupted bars and a paced stall ---------------------------------------
class Seen(NamedTuple):
    """What a strategy saw at one bar."""

    ts_ns: int
    close: float
    last_price: float | None
    equity: float
    state: TradingState


class MarketProbe(Strategy):
    """Holds 50 from bar 5; from bar ``start`` on, tries +1 (adds) and -1 (reduces) per bar."""

    name = "market_probe"

    def __init__(self, start: int = 0, stop: int = 10**9) -> None:
        super().__init__()
        self.start, self.stop, self.i = start, stop, 0
        self.seen: list[Seen] = []
        self.denials: list[OrderDenied] = []
        self.approved_buys: list[int] = []
        self.approved_sells: list[int] = []
        self.risk: RiskEngine | None = None  # the run's risk engine: reads the trading state

    def before_run(self, engine: Engine) -> None:
        """``run_session``'s hook: see the run's risk engine."""
        self.risk = engine.parts.risk

    def on_bar(self, bar: Bar) -> None:
        if self.i == 5:
            self.buy(bar.symbol, 50)
        if self.start <= self.i < self.stop:
            n_denied = len(self.denials)
            self.buy(bar.symbol, 1)
            if len(self.denials) == n_denied:
                self.approved_buys.append(bar.ts_ns)
            n_denied = len(self.denials)
            self.sell(bar.symbol, 1)
            if len(self.denials) == n_denied:
                self.approved_sells.append(bar.ts_ns)
        assert self.risk is not None
        ctx = self.ctx
        last = ctx.last_price(bar.symbol)
        self.seen.append(Seen(bar.ts_ns, bar.close, last, ctx.equity(), self.risk.state))
        self.i += 1

    def on_order_denied(self, denied: OrderDenied) -> None:
        self.denials.append(denied)


def corrupted_minute_data() -> tuple[MarketData, list[int]]:
    data = load_data("synthetic:n_bars=200,seed=3")  # 1-minute bars, one symbol
    bad = [100, 101, 102]
    data = corrupt_bars(data, bad[:2], "nan_close")
    return corrupt_bars(data, bad[2:], "negative_close"), bad


def test_corrupted_bars_trip_market_data_reduce_then_trading_resumes() -> None:
    data, bad = corrupted_minute_data()
    strategy = MarketProbe(start=90, stop=120)
    md = breaker("market_data", failure_threshold=1, recovery_timeout_s=600.0)
    engine, capture, _ = run_session(
        strategy, data, hardened(market_data=md), before_run=strategy.before_run
    )
    guards = guards_of(engine)
    ts = transitions(engine, "market_data")
    bad_ts = {int(data.ts_ns[i]) for i in bad}
    last_good = int(data.ts_ns[bad[0] - 1])

    # the bad bars are dropped: never seen by the strategy, never a price
    assert guards.n_bad_bars == 3 and engine.kernel.n_bars == len(data) - 3
    assert not bad_ts & {s.ts_ns for s in strategy.seen}
    for seen in strategy.seen:
        assert seen.last_price == seen.close > 0 and math.isfinite(seen.equity)
    assert all(math.isfinite(p.last_price) for p in engine.parts.portfolio.positions().values())
    # the breaker trips on the first bad bar (the clock stays at the last good bar) ...
    assert moves(ts) == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert ts[0].ts_ns == last_good and "bad bar SYN" in ts[0].reason
    assert "close=nan" in ts[0].reason
    # ... trading is REDUCING: adding orders are denied DATA_STALE, reducing ones pass ...
    stale = [d for d in strategy.denials if d.reason is DenyReason.DATA_STALE]
    assert stale and all(d.ts_ns in range(ts[0].ts_ns, ts[2].ts_ns + 1) for d in stale)
    assert all(d.reason is DenyReason.DATA_STALE for d in strategy.denials)
    reducing = {s.ts_ns for s in strategy.seen if s.state is TradingState.REDUCING}
    assert reducing and reducing == {d.ts_ns for d in stale}
    assert reducing <= set(strategy.approved_sells), "reducing orders pass"
    # ... and once recovery_timeout_s (600 s bar time) has passed, the first good bar at or
    # after that moment closes it and trades ACTIVE
    assert ts[1].ts_ns - ts[0].ts_ns == 600 * 1_000_000_000 == ts[2].ts_ns - ts[0].ts_ns
    assert ts[2].ts_ns not in reducing
    assert engine.parts.risk.state is TradingState.ACTIVE
    assert any(t > ts[2].ts_ns for t in strategy.approved_buys), "adding orders pass again"
    states = [(e.name, e.detail.split(":")[0]) for e in guards.events if e.kind != "breaker"]
    assert states == [("REDUCING", "market_data"), ("ACTIVE", "every REDUCING request cleared")]
    assert audit_details(capture, "trading_state.REDUCING")
    assert_books_reconcile(engine, engine.parts.broker, engine.parts.recorder.all_fills)


def test_the_first_good_bar_after_the_recovery_timeout_is_traded_active() -> None:
    data, bad = corrupted_minute_data()
    strategy = MarketProbe(start=90, stop=120)
    run_session(strategy, data, hardened(), before_run=strategy.before_run)
    first_good = int(data.ts_ns[bad[-1] + 1])  # 4 minutes after the last good bar: > 60 s

    state_at = {s.ts_ns: s.state for s in strategy.seen}
    assert state_at[first_good] is TradingState.ACTIVE
    assert first_good in strategy.approved_buys


def test_a_paced_feed_stall_makes_the_feed_watchdog_reduce_until_the_next_bar() -> None:
    # 50 minute bars with a 20-bar halt at bar 15, replayed at 2000x: 30 ms per bar, a
    # 0.63 s stall; stale after max(8 x 30 ms, min_stale_s) = 0.24 s of wall time
    data = load_data("synthetic:n_bars=50,seed=3,halt=15/20")
    pre_gap, post_gap = int(data.ts_ns[14]), int(data.ts_ns[15])
    assert post_gap - pre_gap == 21 * MINUTE
    config = hardened(
        min_stale_s=0.05,
        stale_bar_multiple=8.0,
        # trips on a single failure: a stall must not count as one
        market_data=breaker("market_data", failure_threshold=1, recovery_timeout_s=0.1),
    ).model_copy(update={"speed": 2000.0})
    strategy = MarketProbe(start=6)
    t0 = time.perf_counter()
    engine, capture, _ = run_session(strategy, data, config, before_run=strategy.before_run)
    elapsed = time.perf_counter() - t0
    guards = guards_of(engine)

    assert elapsed >= (data.end_ns - data.start_ns) / 1e9 / 2000.0, "the session was paced"
    # paced staleness is now the feed watchdog (a session input), no market_data transition
    assert transitions(engine, "market_data") == []
    gap = [
        (e.ts_ns, e.kind, e.name)
        for e in guards.events
        if e.kind in ("feed", "trading_state") and e.ts_ns in (pre_gap, post_gap)
    ]
    # stale while the kernel waits for the bar after the halt (the clock still at the last
    # bar): REDUCING on behalf of the feed; fresh, and ACTIVE, as soon as that bar arrives
    assert gap[:4] == [
        (pre_gap, "feed", "stale"),
        (pre_gap, "trading_state", "REDUCING"),
        (post_gap, "feed", "fresh"),
        (post_gap, "trading_state", "ACTIVE"),
    ], [e for e in guards.events if e.kind != "breaker"]
    stale = next(e for e in guards.events if e.kind == "feed" and e.ts_ns == pre_gap)
    assert stale.detail.startswith("no bar for ")
    waited_s = float(stale.detail.split()[3])  # measured by the watchdog (monotonic clock)
    assert waited_s >= 0.24
    (reducing,) = [d for d in audit_details(capture, "trading_state.REDUCING") if "feed" in d]
    assert reducing.startswith("feed: no bar for ")
    assert audit_details(capture, "feed.fresh")[0] == "a bar arrived"
    # the watchdog asks for REDUCING only until the next bar arrives (intended): the bar after
    # the stall is traded ACTIVE, so no strategy order is denied DATA_STALE
    state_at = {s.ts_ns: s.state for s in strategy.seen}
    assert state_at[post_gap] is TradingState.ACTIVE
    assert post_gap in strategy.approved_buys and post_gap in strategy.approved_sells
    assert not [d for d in strategy.denials if d.reason is DenyReason.DATA_STALE]
    assert not guards.feed_stale and guards.market_data.state is CLOSED
    assert engine.parts.risk.state is TradingState.ACTIVE
    assert strategy.approved_buys[-1] == data.end_ns, "the last bar trades ACTIVE"


# -- 3. a model raising ----------------------------------------------------------------------
class Toggle:
    """A stand-in model: p = 0.9 for ``period`` predictions, then 0.1, and so on."""

    def __init__(self, period: int = 4) -> None:
        self.period, self.n = period, 0

    def __call__(self, x: np.ndarray) -> float:
        self.n += 1
        return 0.9 if (self.n // self.period) % 2 == 0 else 0.1


Predictor = Callable[[np.ndarray], float]
ML_DATA = "synthetic:n_bars=200,seed=9,freq=5s"


def ml_run(
    predict: Predictor,
    members: tuple[tuple[str, Predictor], ...] = (),
    fail_on_bar: tuple[int, ...] = (),
) -> tuple[Engine, BatchCapture, MLStrategy]:
    """An ML strategy on a hand-made bundle (no training): ``predict`` is the ensemble."""
    data = load_data(ML_DATA)
    n = len(FEATURE_NAMES)
    bundle = ModelBundle(
        version="toy-1",
        predict_row=predict,
        feature_index=np.arange(n),
        feature_names=list(FEATURE_NAMES),
        low=np.full(n, -1e12),
        high=np.full(n, 1e12),
        train_start_ns=0,
        train_end_ns=data.end_ns,
        periods_per_year=365.25 * 86_400 / 5,
        members=members,
    )
    ml = MLStrategy(max_model_age_days=None).attach_model(bundle)
    strategy: Strategy = RaisingStrategy(ml, at=fail_on_bar) if fail_on_bar else ml
    engine, capture, _ = run_session(strategy, data, hardened())
    return engine, capture, ml


def test_a_failing_ensemble_falls_back_to_its_members_in_order() -> None:
    ensemble = faulty_predictor(Toggle(), fail_rate=0.3, seed=1)
    gbm = faulty_predictor(lambda x: 0.8, fail_rate=0.5, seed=2)
    linear = faulty_predictor(lambda x: 0.2)
    engine, capture, strategy = ml_run(ensemble, (("gbm", gbm), ("linear", linear)))

    assert ensemble.n_faults >= 20
    assert gbm.n_calls == ensemble.n_faults, "the first member answers when the ensemble fails"
    assert linear.n_calls == gbm.n_faults >= 5, "the next one when that member fails too"
    assert strategy.fallback_counts == {"gbm": gbm.n_calls - gbm.n_faults, "linear": linear.n_calls}
    assert strategy.n_predictions == ensemble.n_calls, "every bar still gets a decision"
    assert "model_error" not in strategy.hold_counts
    fallbacks = audit_details(capture, "decision.fallback")
    assert len(fallbacks) == ensemble.n_faults
    assert all("ensemble failed: InjectedFault" in f for f in fallbacks)
    assert sum("used linear" in f for f in fallbacks) == linear.n_calls
    assert transitions(engine, "decision") == [], "the fallback contains it: no breaker trip"
    assert capture.records("requests")
    assert_books_reconcile(engine, engine.parts.broker, engine.parts.recorder.all_fills)


def test_a_model_without_a_healthy_member_holds_on_every_bar() -> None:
    broken = faulty_predictor(lambda x: math.nan)  # not a probability: treated as a failure
    member = faulty_predictor(lambda x: 0.9, fail_rate=1.0)
    engine, capture, strategy = ml_run(broken, (("gbm", member),))

    ready = engine.kernel.n_bars - WARMUP_BARS + 1
    assert strategy.n_predictions == 0 and strategy.fallback_counts == {}
    # each model_error is a failed decision: the decision breaker trips after 3 and holds
    guards = guards_of(engine)
    assert guards is not None
    assert moves(transitions(engine, "decision"))[:1] == [(CLOSED, OPEN)]
    n_errors = strategy.hold_counts["model_error"]
    assert n_errors + guards.n_holds == ready and member.n_calls == n_errors
    assert n_errors < ready, "the breaker held some bars without asking the model"
    holds = audit_details(capture, "decision.hold")
    assert "ValueError('probability nan outside [0, 1]')" in holds[0]
    assert holds[0].endswith("no healthy member")
    assert capture.records("requests") == [], "a hold never trades"
    assert engine.kernel.n_bars == len(load_data(ML_DATA)), "and never stops the run"


FAIL_AT = (70, 71, 72)  # on_bar calls (bars) 70..72 raise: 3 failures within 10 s


def test_a_raising_strategy_trips_the_decision_breaker_holds_then_a_probe_closes_it() -> None:
    engine, capture, strategy = ml_run(Toggle(), fail_on_bar=FAIL_AT)
    guards = guards_of(engine)
    assert guards is not None
    ts = transitions(engine, "decision")
    bars = load_data(ML_DATA).ts_ns.tolist()

    assert moves(ts) == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    tripped, half_open, closed = (t.ts_ns for t in ts)
    assert tripped == bars[FAIL_AT[-1]]
    assert "3 failures within window_s=60.0" in ts[0].reason and "InjectedFault" in ts[0].reason
    assert half_open - tripped == 30 * 1_000_000_000, "HALF_OPEN after 30 s of bar time"
    assert closed == half_open, "the probe (the next on_bar) succeeded"
    # fallback: hold; the strategy is not called while OPEN, and no order is sent
    held = [t for t in bars if tripped < t < half_open]
    assert len(held) == 5
    assert guards.n_holds == len(FAIL_AT) + len(held)
    # the held bars still reach the strategy's own state through on_bar_held
    assert strategy.n_bars == len(bars) - len(FAIL_AT)
    assert not [r for r in capture.records("requests") if tripped <= r.ts_ns < half_open]
    assert len(audit_details(capture, "decision.error")) == len(FAIL_AT)
    # the strategy traded before and trades again after
    assert [r for r in capture.records("requests") if r.ts_ns < tripped]
    assert [r for r in capture.records("requests") if r.ts_ns > closed]
    assert_books_reconcile(engine, engine.parts.broker, engine.parts.recorder.all_fills)


def test_ml_features_keep_updating_while_the_decision_breaker_holds() -> None:
    engine, _, strategy = ml_run(Toggle(), fail_on_bar=FAIL_AT)
    assert guards_of(engine).n_holds == len(FAIL_AT) + 5

    # the 3 bars whose on_bar raised are lost to the fault itself; the 5 held ones should not
    assert strategy._symbols["SYN"].features.n_bars == engine.kernel.n_bars - len(FAIL_AT)


def test_a_strategy_raising_at_random_is_contained_by_the_decision_breaker() -> None:
    data = load_data("synthetic:n_bars=400,seed=2,freq=10s")
    raising = RaisingStrategy(SmaCross(fast=5, slow=20), fail_rate=0.2, seed=3)
    engine, capture, _ = run_session(raising, data, hardened())
    ts = transitions(engine, "decision")

    assert raising.fault.n_faults >= 20
    assert (CLOSED, OPEN) in moves(ts) and (HALF_OPEN, CLOSED) in moves(ts)
    assert len(audit_details(capture, "decision.error")) == raising.fault.n_faults
    for start, end in open_spans(ts):  # no decision, no order while OPEN
        assert not [r for r in capture.records("requests") if start < r.ts_ns < end]
    assert engine.kernel.n_bars == len(data), "the run never stops"
    recovered = next(t.ts_ns for t in ts if t.from_state is HALF_OPEN and t.to_state is CLOSED)
    after = [r for r in capture.records("requests") if r.ts_ns > recovered]
    assert after, "it trades after recovery"
    assert raising.stats()["injected_faults"] == raising.fault.n_faults
    assert_books_reconcile(engine, engine.parts.broker, engine.parts.recorder.all_fills)


# -- 4. a risk component raising ------------------------------------------------------------
class Operated(Strategy):
    """Buys 10 at bar 5; tries to buy 1 on every bar from 20; ``hook`` runs first."""

    name = "operated"

    def __init__(self, hook: Callable[[Operated, int], None]) -> None:
        super().__init__()
        self.hook, self.i = hook, 0
        self.denials: list[OrderDenied] = []
        self.log: list[tuple[int, TradingState, float]] = []
        self.risk: RiskEngine | None = None  # the run's risk engine: reads the trading state

    def on_bar(self, bar: Bar) -> None:
        self.hook(self, self.i)
        if self.i == 5:
            self.buy(bar.symbol, 10)
        elif self.i >= 20:
            self.buy(bar.symbol, 1)
        assert self.risk is not None
        self.log.append((self.i, self.risk.state, self.position(bar.symbol)))
        self.i += 1

    def on_order_denied(self, denied: OrderDenied) -> None:
        self.denials.append(denied)


def test_a_raising_risk_check_halts_flattens_and_only_an_operator_resumes() -> None:
    data = load_data("synthetic:n_bars=60,seed=4")  # 1-minute bars
    resume_at = 40
    engine_ref: list[Engine] = []
    checks: list[FaultyCall[..., Any]] = []

    def hook(s: Operated, i: int) -> None:
        if i == resume_at:
            control_of(engine_ref[0]).apply(
                Resume(operator="alice", reason="limits table restored, book checked")
            )

    strategy = Operated(hook)

    def inject(engine: Engine) -> None:
        engine_ref.append(engine)
        risk = strategy.risk = engine.parts.risk
        # the real check, failing on its 2nd call (bar 20): the risk component breaks
        check = FaultyCall(risk._check, at={1})
        risk._check = check  # type: ignore[method-assign]
        checks.append(check)

    engine, capture, _ = run_session(strategy, data, hardened(), before_run=inject)
    (check,) = checks
    ts = transitions(engine, "risk")
    log = {i: (state, pos) for i, state, pos in strategy.log}

    assert check.failed_calls == [1]
    assert moves(ts) == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert "risk check failed" in ts[0].reason and "InjectedFault" in ts[0].reason
    # OPEN fires the kill switch: HALTED, the position flattened by a risk-bypassing order
    assert engine.parts.kill_switch.n_triggers == 1
    assert "risk_breaker" in engine.parts.kill_switch.last_reason
    assert log[19] == (TradingState.ACTIVE, 10.0)
    assert log[20][0] is TradingState.HALTED
    assert log[21] == (TradingState.HALTED, 0.0), "flattened at the next bar"
    flatten = [r for r in capture.records("requests") if r.tag == "kill_switch"]
    assert len(flatten) == 1 and flatten[0].side is Side.SELL and flatten[0].quantity == 10
    # the breaker recovers by itself, trading does not: HALTED until the operator resumes
    assert ts[2].ts_ns < int(data.ts_ns[resume_at])
    assert all(log[i][0] is TradingState.HALTED for i in range(20, resume_at))
    halted = [d for d in strategy.denials if d.ts_ns < int(data.ts_ns[resume_at])]
    assert len(halted) == resume_at - 20
    assert all(d.reason is DenyReason.TRADING_HALTED for d in halted)
    assert not [d for d in strategy.denials if d.ts_ns >= int(data.ts_ns[resume_at])]
    assert log[resume_at][0] is TradingState.ACTIVE
    resumes = audit_details(capture, "killswitch.resumed")
    assert resumes and "alice" in resumes[0]
    assert engine.parts.portfolio.position("SYN") == len(data) - 1 - resume_at, "buys fill again"
    assert_books_reconcile(engine, engine.parts.broker, engine.parts.recorder.all_fills)


class Halting(Strategy):
    """Buys 50, rests five limit buys, then has the venue fail 60 % and an operator halt."""

    name = "halting"

    def __init__(self) -> None:
        super().__init__()
        self.engine: Engine | None = None
        self.venue: FaultyBroker | None = None
        self.i = 0
        self.flat_at: int | None = None

    def before_run(self, engine: Engine) -> None:
        """``run_session``'s hook: the session (for the operator) and its failing venue."""
        assert isinstance(engine.parts.broker, FaultyBroker)
        self.engine, self.venue = engine, engine.parts.broker

    def on_bar(self, bar: Bar) -> None:
        engine, venue, i = self.engine, self.venue, self.i
        assert engine is not None and venue is not None
        self.i += 1
        if i == 5:
            self.buy(bar.symbol, 50)
        elif 10 <= i < 15:
            self.buy(bar.symbol, 2, limit=round(bar.close * 0.93, 2))
        elif i == 20:
            venue.fail_rate = 0.6
            control_of(engine).apply(Halt(operator="bob", reason="the venue is failing"))
        elif (
            self.flat_at is None
            and i > 20
            and not engine.parts.kill_switch.verify_flat()
            and not venue.open_orders()
        ):
            self.flat_at = i


def test_the_kill_switch_gets_flat_through_a_failing_broker() -> None:
    data = load_data("synthetic:n_bars=60,seed=3")
    strategy = Halting()
    engine, capture, venue = run_session(
        strategy,
        data,
        hardened(),
        lambda inner: FaultyBroker(inner, fail_rate=0.0, seed=2, mode="before"),
        before_run=strategy.before_run,
    )
    assert venue is not None
    states = final_states(capture)
    flatten = [r.client_order_id for r in capture.records("requests") if r.tag == "kill_switch"]

    # cancels that failed were retried at the next bars until every order was cancelled
    failed_cancels = venue.fault_ids("cancel", "before")
    assert failed_cancels and len(audit_details(capture, "killswitch.cancel_failed")) >= 2
    for coid in failed_cancels:
        assert states[coid] == [OrderStatus.CANCELLED]
    # flatten orders the venue never received were REJECTED and sent again; the last filled
    assert len(flatten) >= 2
    assert [states[c] for c in flatten[:-1]] == [[OrderStatus.REJECTED]] * (len(flatten) - 1)
    assert states[flatten[-1]] == [OrderStatus.FILLED]
    assert set(venue.fault_ids("submit", "before")) == set(flatten[:-1])
    assert strategy.flat_at is not None and strategy.flat_at <= 25
    assert engine.parts.kill_switch.verify_flat() == {}
    assert engine.parts.risk.state is TradingState.HALTED and venue.open_orders() == []
    assert all(len(reached) == 1 for reached in states.values())
    assert_books_reconcile(engine, venue.inner, engine.parts.recorder.all_fills)


# -- 5. determinism ---------------------------------------------------------------------------
def test_the_same_seeds_give_the_same_run_and_another_seed_another() -> None:
    first, first_capture, first_faulty = flaky_broker_run()
    second, second_capture, second_faulty = flaky_broker_run()
    other, _, other_faulty = flaky_broker_run(seed=8)

    assert first.parts.recorder.all_fills == second.parts.recorder.all_fills
    assert first_faulty.faults == second_faulty.faults
    assert [t[:4] for t in transitions(first, "execution")] == [
        t[:4] for t in transitions(second, "execution")
    ]
    assert first_capture.records("events") == second_capture.records("events")
    assert first_capture.records("denials") == second_capture.records("denials")
    assert first.parts.portfolio.equity() == second.parts.portfolio.equity()
    assert other_faulty.faults != first_faulty.faults
    assert other.parts.recorder.all_fills != first.parts.recorder.all_fills
