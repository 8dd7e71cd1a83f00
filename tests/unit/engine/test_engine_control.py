"""Operator commands on a real engine (``engine/control.py``) and the REDUCING arbiter.

The engine is built by the production wiring (``ultrathink.testing.engine.engine_for``) over
synthetic data and run to the end; commands are then applied on this thread, as the kernel
thread would between bars. Every changing command leaves an ``operator.<action>`` audit row
with who, when, what, why, before and after; a refused one an ``operator.refused`` row.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from ultrathink.config import load_engine_config, realistic_defaults
from ultrathink.core.enums import DenyReason, TradingState
from ultrathink.data import load_data
from ultrathink.decision.builtin import SmaCross
from ultrathink.engine.config import EngineConfig, HardeningConfig
from ultrathink.engine.control import SessionControl
from ultrathink.engine.guards import StateArbiter
from ultrathink.engine.wiring import Engine
from ultrathink.hardening.overrides import (
    Flatten,
    ForceBreaker,
    Halt,
    OverrideError,
    Reduce,
    Resume,
    SetLimit,
    Status,
    SymbolSwitch,
)
from ultrathink.testing.engine import BatchCapture, engine_for, run_engine

DATA = "synthetic:n_bars=300,seed=4"


def engine_after_run(hardening: bool = True) -> tuple[Engine, BatchCapture]:
    values = realistic_defaults()
    values["hardening"] = {"enabled": hardening, "degraded": None}
    config = EngineConfig(**values)
    data = load_data(DATA)
    capture = BatchCapture()
    engine = engine_for(SmaCross(fast=3, slow=8), data, config, mode="paper", capture=capture)
    run_engine(engine, data)
    return engine, capture


def control(engine: Engine) -> SessionControl:
    assert engine.control is not None, "a paper session always has a control channel"
    return engine.control


def rows(engine: Engine, capture: BatchCapture, kind: str) -> list[dict[str, Any]]:
    engine.kernel.flush_now()
    return [json.loads(detail) for _ts, _k, detail in capture.audit(kind)]


def publish(engine: Engine) -> None:
    """Publish a snapshot now, as the kernel thread does at its next tick."""
    engine.snapshots.publish(engine.kernel.position.n, engine.parts.clock.now_ns())


def test_halt_then_resume_is_audited_with_who_when_what_before_after() -> None:
    engine, capture = engine_after_run()
    ctl = control(engine)

    result = ctl.apply(Halt(operator="alice", reason="outage", flatten=False))
    assert result["before"]["trading_state"] == "ACTIVE"
    assert result["after"]["trading_state"] == "HALTED"
    ctl.apply(Resume(operator="bob", reason="outage over"))

    assert engine.parts.risk.state is TradingState.ACTIVE
    (halt,) = rows(engine, capture, "operator.halt")
    assert halt["who"] == "alice" and halt["reason"] == "outage"
    assert halt["what"] == {"action": "halt", "flatten": False}
    assert (
        halt["before"]["trading_state"] == "ACTIVE" and halt["after"]["trading_state"] == "HALTED"
    )
    assert halt["when"].startswith("20")
    (resume,) = rows(engine, capture, "operator.resume")
    assert resume["who"] == "bob" and resume["after"]["trading_state"] == "ACTIVE"


def test_refused_commands_change_nothing_and_are_audited() -> None:
    engine, capture = engine_after_run()
    ctl = control(engine)
    before = ctl.snapshot()

    with pytest.raises(OverrideError, match="already ACTIVE"):
        ctl.apply(Resume(operator="a", reason="x"))
    with pytest.raises(OverrideError, match="less than or equal to 100"):
        ctl.apply(SetLimit(operator="a", limit="max_drawdown_pct", value=150))
    with pytest.raises(OverrideError, match="unknown symbol 'NOPE'"):
        ctl.apply(Flatten(operator="a", symbol="NOPE"))
    ctl.apply(Halt(operator="a", flatten=False))
    with pytest.raises(OverrideError, match="HALTED: resume first"):
        ctl.apply(Reduce(operator="a"))

    moved = ("trading_state", "state_reason", "open_orders")  # by the halt, not the refusals
    after = ctl.snapshot()
    assert {k: v for k, v in after.items() if k not in moved} == {
        k: v for k, v in before.items() if k not in moved
    }
    assert len(rows(engine, capture, "operator.refused")) == 4


def test_set_limit_disable_symbol_and_force_breaker_take_effect() -> None:
    engine, _ = engine_after_run()
    ctl, risk = control(engine), engine.parts.risk

    ctl.apply(SetLimit(operator="a", limit="max_position_qty", value=5))
    ctl.apply(SymbolSwitch(operator="a", action="disable_symbol", symbol="SYN"))
    ctl.apply(ForceBreaker(operator="a", breaker="execution", state="open"))

    assert risk.config.max_position_qty == 5
    assert risk.disabled_symbols == {"SYN"}
    # status is now the latest engine snapshot (no kernel round trip): the commands show
    # once the kernel publishes its next one
    publish(engine)
    status = ctl.apply(Status(operator="a"))["after"]
    assert status["hardening"]["breakers"]["execution"] == "OPEN"
    assert status["limits"]["max_position_qty"] == 5
    assert status["disabled_symbols"] == ("SYN",)
    ctl.apply(SymbolSwitch(operator="a", action="enable_symbol", symbol="SYN"))
    ctl.apply(SetLimit(operator="a", limit="max_position_qty", value=None))
    assert risk.disabled_symbols == set() and risk.config.max_position_qty is None


def test_flatten_sends_reduce_only_orders_for_held_positions() -> None:
    engine, _ = engine_after_run()
    held = engine.parts.portfolio.position("SYN")

    result = control(engine).apply(Flatten(operator="a", reason="end of day"))

    sent = [o for o in engine.parts.broker.open_orders() if o.tag == "kill_switch"]
    if held:
        assert len(sent) == 1 and sent[0].reduce_only
        assert (sent[0].quantity, sent[0].side.sign) == (abs(held), -1 if held > 0 else 1)
        assert result["message"].startswith("1 flatten")
    else:
        assert not sent


def test_execute_from_another_thread_runs_on_drain_and_times_out_cleanly() -> None:
    engine, _ = engine_after_run()
    ctl = control(engine)
    out: dict[str, Any] = {}
    # Status no longer goes through the kernel thread (it reads the latest snapshot), so a
    # command that changes something shows that execute runs on the kernel's drain
    caller = threading.Thread(
        target=lambda: out.update(
            ctl.execute(SetLimit(operator="t", limit="max_position_qty", value=7), timeout_s=30)
        )
    )
    caller.start()
    while not out:
        ctl.drain()  # what the kernel thread does between bars
    caller.join()
    assert out["after"]["limits"]["max_position_qty"] == 7
    assert engine.parts.risk.config.max_position_qty == 7
    # status needs no drain at all: answered from the latest snapshot on the caller's thread
    assert ctl.execute(Status(operator="t"), timeout_s=0.05)["action"] == "status"

    with pytest.raises(TimeoutError, match="cancelled"):
        ctl.execute(Halt(operator="t"), timeout_s=0.05)
    ctl.drain()  # the cancelled command never runs late
    assert engine.parts.risk.state is TradingState.ACTIVE


def test_force_breaker_without_hardening_is_refused() -> None:
    engine, _ = engine_after_run(hardening=False)
    with pytest.raises(OverrideError, match=r"hardening\.enabled"):
        control(engine).apply(ForceBreaker(operator="a", breaker="risk", state="open"))


# -- StateArbiter ----------------------------------------------------------------------------
def test_arbiter_is_active_only_when_the_last_source_clears() -> None:
    engine, _ = engine_after_run()
    risk, events = engine.parts.risk, []
    arb = StateArbiter(risk, lambda *e: events.append(e))

    arb.reduce("feed", DenyReason.DATA_STALE, "stale")
    arb.reduce("degraded", DenyReason.DEGRADED_MODE, "cpu")
    arb.release("feed")
    assert risk.state is TradingState.REDUCING and "degraded" in risk.state_reason
    arb.release("degraded")
    assert risk.state is TradingState.ACTIVE
    assert [e[1] for e in events] == ["REDUCING", "REDUCING", "ACTIVE"]


def test_arbiter_never_ends_halted_nor_a_drawdown_reducing() -> None:
    engine, _ = engine_after_run()
    risk = engine.parts.risk
    arb = StateArbiter(risk, lambda *e: None)

    risk.set_state(TradingState.REDUCING, "drawdown", DenyReason.MAX_DRAWDOWN)
    arb.reduce("degraded", DenyReason.DEGRADED_MODE, "cpu")
    arb.release("degraded")
    assert risk.state is TradingState.REDUCING and risk.state_reason == "drawdown"
    risk.set_state(TradingState.HALTED, "kill switch")
    arb.reduce("market_data", DenyReason.DATA_STALE, "stale")
    arb.release("market_data")
    assert risk.state is TradingState.HALTED


def test_a_partial_breaker_table_keeps_the_other_defaults(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "h.toml"
    path.write_text("[hardening]\nenabled = true\n[hardening.execution]\nfailure_threshold = 5\n")

    cfg = load_engine_config(path).hardening

    assert cfg.enabled and cfg.execution.name == "execution"
    assert cfg.execution.failure_threshold == 5
    assert cfg.execution.recovery_timeout_s == HardeningConfig().execution.recovery_timeout_s


def test_status_json_is_the_status_answer_encoded_once_per_snapshot() -> None:
    engine, _ = engine_after_run()
    ctl = control(engine)
    publish(engine)

    raw = ctl.status_json()
    assert raw is not None
    answer = json.loads(raw)
    expected = ctl.status()
    assert answer["action"] == "status" and answer["ok"] is True and answer["before"] == {}
    assert answer["after"] == json.loads(json.dumps(expected["after"]))
    seq = answer["after"]["seq"]
    assert ctl.status_json(since=seq) is None, "the caller has this snapshot already"
    assert ctl.status_json(since=seq - 1) == raw
    assert engine.snapshots.latest_json() is not None
    first = engine.snapshots.latest_json()
    assert first is not None and engine.snapshots.latest_json()[1] is first[1]  # type: ignore[index]

    publish(engine)
    newer = ctl.status_json(since=seq)
    assert newer is not None and json.loads(newer)["after"]["seq"] == seq + 1
