"""Engine snapshots (``engine/snapshot.py``): immutable pictures published at a bounded rate.

The publisher reads a real portfolio, working-orders view and risk engine; its wall and
monotonic clocks are injected, so the rate limit is tested without waiting.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from ultrathink.core.enums import DenyReason, Side, TradingState
from ultrathink.core.events import Fill
from ultrathink.core.latency import LatencyLog
from ultrathink.engine.snapshot import (
    EngineSnapshot,
    PositionView,
    SnapshotPublisher,
    SnapshotSource,
)
from ultrathink.engine.working import WorkingOrders
from ultrathink.portfolio.portfolio import Portfolio
from ultrathink.risk.config import RiskConfig
from ultrathink.risk.engine import RiskEngine

T0 = 1_600_000_000_000_000_000
MS = 1_000_000
WALL = 1_700_000_000_000_000_000


class Mono:
    """An injected monotonic clock: moves only when the test says so."""

    def __init__(self) -> None:
        self.ns = 5_000 * MS

    def __call__(self) -> int:
        return self.ns


class Book:
    """The components a snapshot reads, and the counters the wiring hands it."""

    def __init__(self) -> None:
        self.portfolio = Portfolio(10_000.0)
        self.working = WorkingOrders(self.portfolio.last_price)
        self.risk = RiskEngine(RiskConfig(max_position_qty=50.0), self.portfolio, self.working)
        self.counts: dict[str, int] = {}
        self.denials: dict[str, int] = {}
        self.hardening: dict[str, object] = {"breakers": {"risk": "CLOSED"}}

    def source(self, with_hardening: bool = True) -> SnapshotSource:
        return SnapshotSource(
            self.portfolio, self.working, self.risk,
            order_counts=lambda: self.counts, denials=lambda: self.denials,
            n_fills=lambda: self.portfolio.n_fills,
            hardening=(lambda: self.hardening) if with_hardening else None,
            limits=lambda: {"max_position_qty": self.risk.config.max_position_qty},
        )  # fmt: skip

    def fill(self, symbol: str, signed_qty: float, price: float) -> None:
        side = Side.BUY if signed_qty > 0 else Side.SELL
        n = self.portfolio.n_fills + 1
        self.portfolio.apply_fill(
            Fill(T0, f"O-{n}", f"O-{n}-F1", symbol, side, abs(signed_qty), price, 1.0)
        )


def publisher(
    book: Book, mono: Mono, latency: LatencyLog | None = None, **kw: object
) -> SnapshotPublisher:
    return SnapshotPublisher(
        book.source(), 42, "paper", latency, interval_s=0.25, wall_ns=lambda: WALL,
        mono_ns=mono, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_snapshots_are_published_at_most_once_per_interval() -> None:
    book, mono = Book(), Mono()
    pub = publisher(book, mono)
    assert pub.latest is None

    seqs: list[tuple[int, int]] = []
    for step_ms in range(0, 1_001, 50):  # a tick every 50 ms for one second
        mono.ns = 5_000 * MS + step_ms * MS
        pub.maybe_publish(step_ms, T0 + step_ms, False)
        assert pub.latest is not None
        seqs.append((step_ms, pub.latest.seq))

    published = [ms for (ms, seq), (_, prev) in zip(seqs[1:], seqs, strict=False) if seq != prev]
    assert seqs[0] == (0, 1), "the first tick publishes"
    assert published == [250, 500, 750, 1000], "then once every interval_s, never more"
    last = pub.latest
    assert last is not None and last.seq == 5 and last.n_bars == 1000


def test_publish_is_immediate_and_restarts_the_interval() -> None:
    book, mono = Book(), Mono()
    pub = publisher(book, mono)
    pub.maybe_publish(0, T0, False)

    mono.ns += 100 * MS
    final = pub.publish(10, T0 + 1, finished=True)  # e.g. at the end of the run
    mono.ns += 200 * MS  # 300 ms after the first, 200 ms after the forced one
    pub.maybe_publish(11, T0 + 2, False)

    assert pub.latest is final and final.finished and final.seq == 2


def test_a_snapshot_carries_the_account_the_orders_and_the_state() -> None:
    book, mono = Book(), Mono()
    book.portfolio.mark("AAA", 100.0)
    book.portfolio.mark("BBB", 20.0)
    book.fill("BBB", -10.0, 20.0)
    book.fill("AAA", 5.0, 100.0)
    book.fill("CCC", 1.0, 7.0)
    book.fill("CCC", -1.0, 7.0)  # flat again: not a position any more
    book.portfolio.mark("AAA", 110.0)
    book.risk.on_equity(T0, book.portfolio.equity())
    book.working.add("O-7", "AAA", Side.SELL, 2.0, 120.0)
    book.working.add("O-8", "BBB", Side.BUY, 4.0, None)
    book.working.filled("O-8", 1.0)
    book.risk.set_state(TradingState.REDUCING, "operator: test", DenyReason.REDUCE_ONLY)
    book.risk.disabled_symbols.update({"ZZZ", "BBB"})
    book.counts.update({"FILLED": 4, "DENIED": 1})
    book.denials.update({"MAX_POSITION": 1})

    snap = publisher(book, mono).publish(123, T0 + 9, replaying=True)

    assert (snap.run_id, snap.mode, snap.wall_ns, snap.clock_ns) == (42, "paper", WALL, T0 + 9)
    assert (snap.n_bars, snap.replaying, snap.finished) == (123, True, False)
    assert snap.equity == pytest.approx(book.portfolio.equity())
    assert snap.cash == book.portfolio.cash and snap.peak_equity == book.risk.peak_equity
    assert [p.symbol for p in snap.positions] == ["AAA", "BBB"]
    aaa = snap.positions[0]
    assert aaa == PositionView("AAA", 5.0, 100.0, 110.0, 50.0, 0.0)
    assert snap.working_orders == (
        ("O-7", "AAA", "SELL", 2.0, 120.0),
        ("O-8", "BBB", "BUY", 3.0, None),
    )
    assert (snap.trading_state, snap.state_reason) == ("REDUCING", "operator: test")
    assert snap.disabled_symbols == ("BBB", "ZZZ")
    assert snap.limits == {"max_position_qty": 50.0}
    assert snap.order_counts == {"FILLED": 4, "DENIED": 1} and snap.denials == {"MAX_POSITION": 1}
    assert snap.n_fills == 4 and snap.hardening == {"breakers": {"risk": "CLOSED"}}
    assert json.loads(json.dumps(snap.to_dict()))["working_orders"][0][0] == "O-7"


def test_a_snapshot_is_immutable_and_keeps_its_instant() -> None:
    book, mono = Book(), Mono()
    book.portfolio.mark("AAA", 100.0)
    book.fill("AAA", 5.0, 100.0)
    book.working.add("O-7", "AAA", Side.BUY, 2.0, 99.0)
    book.counts["FILLED"] = 1
    snap = publisher(book, mono).publish(1, T0)

    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.equity = 0.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.positions[0].quantity = 0.0  # type: ignore[misc]
    assert isinstance(snap.positions, tuple) and isinstance(snap.working_orders, tuple)
    # the engine moves on: the snapshot does not
    book.fill("AAA", 5.0, 100.0)
    book.portfolio.mark("AAA", 90.0)
    book.working.ended("O-7")
    book.counts["FILLED"] = 2
    book.risk.set_state(TradingState.HALTED, "kill switch")
    assert snap.positions[0].quantity == 5.0 and snap.positions[0].last_price == 100.0
    assert snap.working_orders == (("O-7", "AAA", "BUY", 2.0, 99.0),)
    assert snap.order_counts == {"FILLED": 1} and snap.trading_state == "ACTIVE"


def test_each_snapshot_reports_the_decision_latency_since_the_previous_one() -> None:
    book, mono = Book(), Mono()
    latency = LatencyLog()
    pub = publisher(book, mono, latency)

    latency.values.extend([1_000, 2_000, 3_000])
    first = pub.publish(3, T0)
    second = pub.publish(3, T0)  # nothing new
    latency.values.extend([50_000])
    third = pub.publish(4, T0)

    assert first.decision_latency_us is not None
    assert first.decision_latency_us["count"] == 3.0 and first.decision_latency_us["max"] >= 2.9
    assert second.decision_latency_us is None
    assert third.decision_latency_us is not None and third.decision_latency_us["count"] == 1.0
    assert third.decision_latency_us["p50"] == pytest.approx(50.0, rel=0.01)
    assert publisher(book, mono).publish(1, T0).decision_latency_us is None, "not measured"


def test_the_bar_rate_is_bars_over_monotonic_time_between_snapshots() -> None:
    book, mono = Book(), Mono()
    pub = publisher(book, mono)
    pub.publish(0, T0)

    mono.ns += 2_000 * MS
    assert pub.publish(1_000, T0).bars_per_s == pytest.approx(500.0)
    assert pub.publish(1_000, T0).bars_per_s == 0.0, "no time passed"


def test_without_guards_the_hardening_section_is_empty() -> None:
    book, mono = Book(), Mono()
    pub = SnapshotPublisher(book.source(with_hardening=False), None, "backtest", mono_ns=mono)

    snap = pub.publish(0, T0)

    assert snap.hardening == {} and snap.run_id is None and isinstance(snap, EngineSnapshot)


def test_a_snapshot_carries_the_newest_fills_prices_rate_headroom_and_strategy_stats() -> None:
    from ultrathink.core.clock import TestClock
    from ultrathink.engine.snapshot import RECENT_FILLS
    from ultrathink.hardening.rate_limit import OrderRateLimiter, RateLimitConfig, RateWindow

    book, mono = Book(), Mono()
    book.portfolio.mark("AAA", 100.0)
    book.portfolio.mark("BBB", 20.0)
    fills: list[Fill] = []
    for i in range(RECENT_FILLS + 5):
        fill = Fill(T0 + i, f"O-{i}", f"O-{i}-F1", "AAA", Side.BUY, 1.0, 100.0 + i, 0.0)
        fills.append(fill)
    limiter = OrderRateLimiter(
        RateLimitConfig(windows=(RateWindow(limit=10, per_s=1.0),)), TestClock(T0)
    )
    assert limiter.check_order("AAA") is None
    latency = LatencyLog()
    source = SnapshotSource(
        book.portfolio, book.working, book.risk,
        order_counts=lambda: book.counts, denials=lambda: book.denials,
        n_fills=lambda: len(fills), hardening=None, limits=dict,
        recent_fills=lambda: fills, rate_limits=limiter.headroom,
        strategy_stats=lambda: {"fallbacks": {"forest": 2}}, duplicate_fills=lambda: 3,
    )  # fmt: skip
    pub = SnapshotPublisher(source, 1, "paper", latency, wall_ns=lambda: WALL, mono_ns=mono)

    mono.ns += 500 * MS
    latency.values.extend([1_000] * 40)
    snap = pub.publish(40, T0)

    assert len(snap.recent_fills) == RECENT_FILLS
    assert snap.recent_fills[-1] == (T0 + RECENT_FILLS + 4, "AAA", "BUY", 1.0, 100.0 + 24)
    assert snap.recent_fills[0][0] == T0 + 5, "the newest ones, oldest first"
    assert snap.prices == {"AAA": 100.0, "BBB": 20.0}
    headroom = snap.rate_limits["account limit 10 per 1 s"]
    assert headroom == {"available": 9.0, "limit": 10.0}
    assert snap.strategy == {"fallbacks": {"forest": 2}}
    assert snap.decisions_per_s == pytest.approx(80.0)
    assert len(snap.gc_collections) == 3
    assert snap.n_duplicate_fills == 3, "the venue's repeated fills, dropped by the booker"
    assert json.loads(json.dumps(snap.to_dict()))["recent_fills"][0][1] == "AAA"


def test_a_failing_strategy_stats_is_shown_not_raised() -> None:
    book, mono = Book(), Mono()

    def broken() -> dict[str, object]:
        raise AttributeError("'S' object has no attribute 'model' (set in on_start)")

    source = book.source()
    source.strategy_stats = broken
    snap = SnapshotPublisher(source, 1, "paper", wall_ns=lambda: WALL, mono_ns=mono).publish(1, T0)
    assert snap.strategy["error"].startswith("stats() failed: AttributeError")


def test_the_latency_window_percentiles_are_exact_nearest_rank_values() -> None:
    book, mono = Book(), Mono()
    latency = LatencyLog()
    pub = publisher(book, mono, latency)
    latency.values.extend(range(1_000, 101_000, 1_000))  # 1..100 µs, shuffled below
    latency.values.reverse()

    lat = pub.publish(100, T0).decision_latency_us

    assert lat == {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 100.0, "max": 100.0,
                   "count": 100.0}  # fmt: skip


def test_latest_json_is_encoded_once_per_snapshot_in_the_shape_of_to_dict() -> None:
    book, mono = Book(), Mono()
    book.fill("AAA", 5.0, 100.0)
    book.portfolio.mark("AAA", 101.0)
    pub = publisher(book, mono)
    assert pub.latest_json() is None, "nothing published yet"

    snap = pub.publish(1, T0)
    first = pub.latest_json()
    again = pub.latest_json()

    assert first is not None and again is not None
    assert first[0] == snap.seq and again[1] is first[1], "one encoding per snapshot"
    assert json.loads(first[1]) == json.loads(json.dumps(snap.to_dict()))
    pub.publish(2, T0)
    newer = pub.latest_json()
    assert newer is not None and newer[0] == snap.seq + 1 and newer[1] != first[1]


def test_json_of_odd_values_never_raises() -> None:
    book, mono = Book(), Mono()
    book.hardening = {"set": {"b", "a"}, "nan": float("nan"), "keys": {1: "one"},
                      "side": Side.BUY, "other": object}  # fmt: skip
    pub = publisher(book, mono)
    pub.publish(1, T0)

    latest = pub.latest_json()
    assert latest is not None
    hardening = json.loads(latest[1])["hardening"]
    assert hardening["set"] == ["a", "b"] and hardening["nan"] is None
    assert hardening["keys"] == {"1": "one"} and hardening["side"] == "BUY"
    assert "object" in hardening["other"]


def test_the_stage_source_is_read_at_each_snapshot_and_a_failing_one_is_shown() -> None:
    book, mono = Book(), Mono()
    pub = publisher(book, mono)
    assert pub.publish(1, T0).stages == {}, "not profiled"

    pub.stage_source = lambda: {"model": {"p50": 3.0, "p99": 9.0, "n": 12}}
    assert pub.publish(2, T0).stages == {"model": {"p50": 3.0, "p99": 9.0, "n": 12}}

    def broken() -> dict[str, dict[str, float]]:
        raise RuntimeError("boom")

    pub.stage_source = broken
    assert "boom" in pub.publish(3, T0).stages["error"]["message"]


def test_a_window_reads_on_across_a_fold_of_the_latency_log() -> None:
    book, mono = Book(), Mono()
    latency = LatencyLog(limit=8, keep=2)
    pub = publisher(book, mono, latency)
    latency.values.extend([1_000] * 5)
    assert pub.publish(5, T0).decision_latency_us["count"] == 5.0  # type: ignore[index]
    latency.values.extend([2_000] * 5)
    latency.fold()  # 10 > 8: the oldest 8 go into the histogram, the newest 2 stay
    assert len(latency.values) == 2 and len(latency) == 10
    lat = pub.publish(10, T0).decision_latency_us
    assert lat is not None and lat["count"] == 2.0, "only what is still held of the new 5"


def test_ctl_status_shows_dropped_duplicate_fills_only_when_there_were_some() -> None:
    from ultrathink.cli._status import format_snapshot

    book, mono = Book(), Mono()
    count = [0]
    source = book.source()
    source.duplicate_fills = lambda: count[0]
    pub = SnapshotPublisher(source, 7, "paper", None, wall_ns=lambda: WALL, mono_ns=mono)
    quiet = format_snapshot(pub.publish(1, T0).to_dict())
    count[0] = 2
    noisy = format_snapshot(pub.publish(2, T0).to_dict())

    assert "duplicates" not in quiet
    assert "; fills 0 (2 duplicates dropped); denials: none" in noisy
