"""The seeded fault injectors of ``ultrathink.stress`` on their own."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from ultrathink.core.clock import TestClock
from ultrathink.core.enums import OrderStatus, Side
from ultrathink.core.events import Bar, Fill, OrderRequest
from ultrathink.data import load_data
from ultrathink.decision.builtin import SmaCross
from ultrathink.engine.config import EngineConfig, HardeningConfig
from ultrathink.engine.spec import RunSpec
from ultrathink.errors import BrokerError, ConfigError
from ultrathink.execution.paper import PaperBroker
from ultrathink.stress import (
    BrokerFault,
    FaultyBroker,
    FaultyCall,
    InjectedFault,
    RaisingStrategy,
    build_engine_with_broker,
    corrupt_bars,
    faulty_predictor,
)
from ultrathink.testing.engine import engine_for
from ultrathink.testing.fakes import RecordingSink, Venue

T0 = 1_600_000_000_000_000_000
HARDENED = HardeningConfig(enabled=True, degraded=None)


def paper() -> tuple[PaperBroker, RecordingSink, TestClock]:
    venue = Venue.paper(start_ns=T0)
    return venue.broker, venue.sink, venue.clock


def req(i: int, side: Side = Side.BUY) -> OrderRequest:
    return OrderRequest(f"O-{i}", T0, "X", side, 1.0)


def submit_all(broker: FaultyBroker, n: int) -> list[bool]:
    """Submit ``n`` orders; True where the call raised."""
    raised = []
    for i in range(n):
        try:
            broker.submit(req(i))
        except BrokerError:
            raised.append(True)
        else:
            raised.append(False)
    return raised


# -- FaultyBroker -----------------------------------------------------------------------------
def test_no_faults_forwards_every_call_unchanged() -> None:
    inner, sink, clock = paper()
    broker = FaultyBroker(inner, fail_rate=0.0, seed=1)

    order = broker.submit(req(1))
    assert order is inner.get_order("O-1") and broker.get_order("O-1") is order
    assert broker.open_orders() == [order] == broker.open_orders("X")
    assert broker.wants_bars is True is inner.wants_bars
    clock.set_ns(T0 + 60)
    broker.on_bar(Bar(T0 + 60, "X", 10.0, 11.0, 9.0, 10.5, 100.0))
    assert broker.positions() == {"X": 1.0} == inner.positions()
    assert broker.wants_bars is False, "read from the inner broker: nothing works any more"
    assert broker.n_open == 0, "other attributes are forwarded too"
    assert broker.submit(req(2)) is inner.get_order("O-2")
    assert broker.cancel("O-2", "test") is True
    assert [e.status for e in sink.events][-1] is OrderStatus.CANCELLED
    assert broker.faults == [] and (broker.n_submits, broker.n_cancels) == (2, 1)


def test_before_mode_fails_without_the_venue_seeing_the_call() -> None:
    inner, sink, _ = paper()
    broker = FaultyBroker(inner, fail_rate=1.0, seed=1, mode="before")

    with pytest.raises(BrokerError, match="never saw it") as info:
        broker.submit(req(1))
    assert info.value.retryable
    assert inner.get_order("O-1") is None and sink.events == []
    inner.submit(req(2))
    with pytest.raises(BrokerError):
        broker.cancel("O-2", "test")
    assert inner.get_order("O-2").is_open  # type: ignore[union-attr]
    assert broker.faults == [
        BrokerFault("submit", "O-1", "before"),
        BrokerFault("cancel", "O-2", "before"),
    ]


def test_after_mode_fails_after_the_venue_processed_the_call() -> None:
    inner, sink, _ = paper()
    broker = FaultyBroker(inner, fail_rate=1.0, seed=1, mode="after")

    with pytest.raises(BrokerError, match="response was lost"):
        broker.submit(req(1))
    order = inner.get_order("O-1")
    assert order is not None and order.status is OrderStatus.ACCEPTED
    with pytest.raises(BrokerError):
        broker.cancel("O-1", "test")
    assert order.status is OrderStatus.CANCELLED
    assert [e.status for e in sink.events] == [OrderStatus.ACCEPTED, OrderStatus.CANCELLED]
    assert broker.fault_ids("submit", "after") == ["O-1"] == broker.fault_ids("cancel", "after")


def test_mixed_mode_fails_at_the_rate_with_both_kinds_and_is_seeded() -> None:
    n = 2000
    runs = [FaultyBroker(paper()[0], fail_rate=0.3, seed=s, mode="mixed") for s in (5, 5, 6)]
    raised = [submit_all(b, n) for b in runs]

    assert raised[0] == raised[1] and runs[0].faults == runs[1].faults
    assert raised[0] != raised[2]
    rate = sum(raised[0]) / n
    assert abs(rate - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n)  # 4 sigma
    before = len(runs[0].fault_ids("submit", "before"))
    assert 0.4 < before / runs[0].n_faults < 0.6
    for fault in runs[0].faults:  # the venue has exactly the orders of "after" faults
        assert (runs[0].inner.get_order(fault.client_order_id) is None) is (fault.when == "before")


def test_the_fault_pattern_depends_on_the_call_sequence_only() -> None:
    # the same seed at another rate: every call still draws the same numbers, so the faults
    # at 0.1 are a subset of those at 0.3
    low = FaultyBroker(paper()[0], fail_rate=0.1, seed=9, mode="before")
    high = FaultyBroker(paper()[0], fail_rate=0.3, seed=9, mode="before")
    a, b = submit_all(low, 500), submit_all(high, 500)

    assert sum(a) < sum(b)
    assert all(y for x, y in zip(a, b, strict=True) if x)


def test_fail_submit_and_fail_cancel_choose_the_calls_that_fail() -> None:
    inner = paper()[0]
    broker = FaultyBroker(inner, fail_rate=1.0, seed=1, mode="before", fail_submit=False)
    broker.submit(req(1))
    with pytest.raises(BrokerError):
        broker.cancel("O-1", "test")
    broker.fail_rate = 0.0  # the outage ends
    assert broker.cancel("O-1", "test") is True


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"fail_rate": 1.5}, "fail_rate"), ({"fail_rate": -0.1}, "fail_rate"),
     ({"fail_rate": 0.1, "mode": "sometimes"}, "mode")],
)  # fmt: skip
def test_bad_injector_settings_are_config_errors(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        FaultyBroker(paper()[0], seed=1, **kwargs)


# -- FaultyCall / faulty_predictor / RaisingStrategy ----------------------------------------
def test_faulty_call_fails_at_the_given_calls_and_otherwise_passes_through() -> None:
    seen: list[float] = []

    def model(x: np.ndarray) -> float:
        seen.append(float(x[0]))
        return float(x.sum())

    predict = faulty_predictor(model, at=[1, 2])
    assert predict(np.ones(3)) == 3.0
    for _ in range(2):
        with pytest.raises(InjectedFault, match=r"call [12] of test_faulty_call"):
            predict(np.zeros(3))
    assert predict(np.full(3, 2.0)) == 6.0
    assert predict.failed_calls == [1, 2] and predict.n_calls == 4
    assert seen == [1.0, 2.0], "a failed call never reaches the model"


def test_faulty_call_at_a_rate_is_seeded() -> None:
    def outcomes(seed: int) -> list[bool]:
        call = FaultyCall(lambda: None, fail_rate=0.25, seed=seed)
        out = []
        for _ in range(400):
            try:
                call()
            except InjectedFault:
                out.append(True)
            else:
                out.append(False)
        return out

    assert outcomes(3) == outcomes(3) != outcomes(4)
    assert 60 < sum(outcomes(3)) < 140


def test_raising_strategy_without_faults_trades_exactly_like_its_inner_strategy() -> None:
    data = load_data("synthetic:n_bars=500,seed=2")
    config = EngineConfig(hardening=HARDENED)

    def fills(strategy: Any) -> list[Fill]:
        engine = engine_for(strategy, data, config, mode="backtest")
        engine.kernel.run(data)
        return engine.parts.recorder.all_fills

    wrapped = RaisingStrategy(SmaCross(fast=5, slow=20))
    assert fills(wrapped) == fills(SmaCross(fast=5, slow=20)) != []
    assert wrapped.get_params()["inner"] == "sma_cross" and wrapped.get_params()["fast"] == 5
    assert wrapped.indicators is wrapped.inner.indicators
    assert wrapped.stats() == {"injected_faults": 0}


def test_raising_strategy_raises_before_its_inner_strategy_decides() -> None:
    data = load_data("synthetic:n_bars=100,seed=2")
    wrapped = RaisingStrategy(SmaCross(fast=5, slow=20), at=[30])
    config = EngineConfig(hardening=HARDENED)
    engine = engine_for(wrapped, data, config, mode="backtest")
    engine.kernel.run(data)

    assert wrapped.fault.failed_calls == [30]
    guards = engine.parts.guards
    assert guards is not None and guards.n_holds == 1
    assert engine.kernel.n_bars == len(data)


# -- corrupt_bars -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "how", ["nan_close", "negative_close", "zero_close", "inverted", "inf_high"]
)
def test_corrupted_bars_are_exactly_the_ones_the_guards_reject(how: Any) -> None:
    data = load_data("synthetic:n_bars=50,symbols=AAA+BBB,seed=1")
    before = data.sha256()
    bad = corrupt_bars(data, [3, 17, 40], how)
    engine = engine_for(SmaCross(), data, EngineConfig(hardening=HARDENED), mode="backtest")
    guards = engine.parts.guards
    assert guards is not None

    rejected = [i for i, bar in enumerate(bad.iter_bars()) if guards.bad_bar(bar)]
    assert rejected == [3, 17, 40]
    assert data.sha256() == before, "the input is not modified"
    assert bad.sha256() != before and len(bad) == len(data)
    assert np.array_equal(bad.ts_ns, data.ts_ns) and bad.symbols == data.symbols
    assert how in bad.name


def test_corrupt_bars_refuses_rows_outside_the_data() -> None:
    data = load_data("synthetic:n_bars=10,seed=1")
    with pytest.raises(ConfigError, match="bar indices"):
        corrupt_bars(data, [10])
    with pytest.raises(ConfigError, match="how"):
        corrupt_bars(data, [1], "garbled")  # type: ignore[arg-type]


# -- build_engine_with_broker -------------------------------------------------------------------
def test_the_wrapper_replaces_the_paper_broker_everywhere() -> None:
    data = load_data("synthetic:n_bars=10,seed=1")
    spec = RunSpec(SmaCross(), data, EngineConfig())
    engine, broker = build_engine_with_broker(
        spec, lambda inner: FaultyBroker(inner, fail_rate=0.5, seed=1)
    )
    parts = engine.parts

    assert isinstance(broker.inner, PaperBroker)
    assert parts.broker is broker and engine.kernel.broker is broker
    assert parts.router._broker is broker and parts.router._submit == broker.submit
    assert parts.kill_switch._broker is broker
    assert broker.inner._sink is parts.booker, "the venue still reports to the engine's booking"
