"""Operator commands on a real kernel (``engine/control.py``) and the REDUCING arbiter.

The kernel is built by the engine's own wiring (``build_kernel``) over synthetic data and run
to the end; commands are then applied on this thread, as the kernel thread would between
bars. Every changing command leaves an ``operator.<action>`` audit row with who, when, what,
why, before and after; a refused one an ``operator.refused`` row.
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
from ultrathink.engine.guards import StateArbiter
from ultrathink.engine.kernel import Kernel
from ultrathink.engine.recorder import Recorder
from ultrathink.engine.runner import RunSpec, build_kernel
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

DATA = "synthetic:n_bars=300,seed=4"


def kernel_after_run(hardening: bool = True) -> tuple[Kernel, list[tuple[int, str, str]]]:
    values = realistic_defaults()
    values["hardening"] = {"enabled": hardening, "degraded": None}
    config = EngineConfig(**values)
    data = load_data(DATA)
    audit: list[tuple[int, str, str]] = []
    recorder = Recorder(lambda batch: audit.extend(batch["audit_extra"]), config.starting_cash)
    kernel = build_kernel(RunSpec(SmaCross(fast=3, slow=8), data, config, "paper"), recorder)
    kernel.run(data)
    kernel.finish()
    return kernel, audit


def rows(kernel: Kernel, audit: list[tuple[int, str, str]], kind: str) -> list[dict[str, Any]]:
    kernel.flush_now()
    return [json.loads(detail) for _ts, k, detail in audit if k == kind]


def test_halt_then_resume_is_audited_with_who_when_what_before_after() -> None:
    kernel, audit = kernel_after_run()

    result = kernel.control.apply(Halt(operator="alice", reason="outage", flatten=False))
    assert result["before"]["trading_state"] == "ACTIVE"
    assert result["after"]["trading_state"] == "HALTED"
    kernel.control.apply(Resume(operator="bob", reason="outage over"))

    assert kernel.risk.state is TradingState.ACTIVE
    (halt,) = rows(kernel, audit, "operator.halt")
    assert halt["who"] == "alice" and halt["reason"] == "outage"
    assert halt["what"] == {"action": "halt", "flatten": False}
    assert (
        halt["before"]["trading_state"] == "ACTIVE" and halt["after"]["trading_state"] == "HALTED"
    )
    assert halt["when"].startswith("20")
    (resume,) = rows(kernel, audit, "operator.resume")
    assert resume["who"] == "bob" and resume["after"]["trading_state"] == "ACTIVE"


def test_refused_commands_change_nothing_and_are_audited() -> None:
    kernel, audit = kernel_after_run()
    before = kernel.control.snapshot()

    with pytest.raises(OverrideError, match="already ACTIVE"):
        kernel.control.apply(Resume(operator="a", reason="x"))
    with pytest.raises(OverrideError, match="less than or equal to 100"):
        kernel.control.apply(SetLimit(operator="a", limit="max_drawdown_pct", value=150))
    with pytest.raises(OverrideError, match="unknown symbol 'NOPE'"):
        kernel.control.apply(Flatten(operator="a", symbol="NOPE"))
    kernel.control.apply(Halt(operator="a", flatten=False))
    with pytest.raises(OverrideError, match="HALTED: resume first"):
        kernel.control.apply(Reduce(operator="a"))

    moved = ("trading_state", "state_reason", "open_orders")  # by the halt, not the refusals
    after = kernel.control.snapshot()
    assert {k: v for k, v in after.items() if k not in moved} == {
        k: v for k, v in before.items() if k not in moved
    }
    assert len(rows(kernel, audit, "operator.refused")) == 4


def test_set_limit_disable_symbol_and_force_breaker_take_effect() -> None:
    kernel, _ = kernel_after_run()
    ctl = kernel.control

    ctl.apply(SetLimit(operator="a", limit="max_position_qty", value=5))
    ctl.apply(SymbolSwitch(operator="a", action="disable_symbol", symbol="SYN"))
    ctl.apply(ForceBreaker(operator="a", breaker="execution", state="open"))

    assert kernel.risk.config.max_position_qty == 5
    assert kernel.risk.disabled_symbols == {"SYN"}
    status = ctl.apply(Status(operator="a"))["after"]
    assert status["breakers"]["execution"] == "OPEN"
    assert status["limits"]["max_position_qty"] == 5
    ctl.apply(SymbolSwitch(operator="a", action="enable_symbol", symbol="SYN"))
    ctl.apply(SetLimit(operator="a", limit="max_position_qty", value=None))
    assert kernel.risk.disabled_symbols == set() and kernel.risk.config.max_position_qty is None


def test_flatten_sends_reduce_only_orders_for_held_positions() -> None:
    kernel, _ = kernel_after_run()
    held = kernel.portfolio.position("SYN")

    result = kernel.control.apply(Flatten(operator="a", reason="end of day"))

    sent = [o for o in kernel.broker.open_orders() if o.tag == "kill_switch"]
    if held:
        assert len(sent) == 1 and sent[0].reduce_only
        assert (sent[0].quantity, sent[0].side.sign) == (abs(held), -1 if held > 0 else 1)
        assert result["message"].startswith("1 flatten")
    else:
        assert not sent


def test_execute_from_another_thread_runs_on_drain_and_times_out_cleanly() -> None:
    kernel, _ = kernel_after_run()
    out: dict[str, Any] = {}
    caller = threading.Thread(
        target=lambda: out.update(kernel.control.execute(Status(operator="t"), timeout_s=5))
    )
    caller.start()
    while not out:
        kernel.control.drain()  # what the kernel thread does between bars
    caller.join()
    assert out["after"]["trading_state"] == "ACTIVE"

    with pytest.raises(TimeoutError, match="cancelled"):
        kernel.control.execute(Halt(operator="t"), timeout_s=0.05)
    kernel.control.drain()  # the cancelled command never runs late
    assert kernel.risk.state is TradingState.ACTIVE


def test_force_breaker_without_hardening_is_refused() -> None:
    kernel, _ = kernel_after_run(hardening=False)
    with pytest.raises(OverrideError, match=r"hardening\.enabled"):
        kernel.control.apply(ForceBreaker(operator="a", breaker="risk", state="open"))


# -- StateArbiter ----------------------------------------------------------------------------
def test_arbiter_is_active_only_when_the_last_source_clears() -> None:
    kernel, _ = kernel_after_run()
    risk, events = kernel.risk, []
    arb = StateArbiter(risk, lambda *e: events.append(e))

    arb.reduce("market_data", DenyReason.DATA_STALE, "stale")
    arb.reduce("degraded", DenyReason.DEGRADED_MODE, "cpu")
    arb.release("market_data")
    assert risk.state is TradingState.REDUCING and "degraded" in risk.state_reason
    arb.release("degraded")
    assert risk.state is TradingState.ACTIVE
    assert [e[1] for e in events] == ["REDUCING", "REDUCING", "ACTIVE"]


def test_arbiter_never_ends_halted_nor_a_drawdown_reducing() -> None:
    kernel, _ = kernel_after_run()
    risk = kernel.risk
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
