"""Operator control of a running session: commands queued by any thread, run by the kernel.

The HTTP endpoint (``web/control_api.py``) and Python callers hand a validated command
(``hardening/overrides.py``) to ``SessionControl.execute``, which queues it and waits; the
kernel thread runs queued commands at every new timestamp and, in a paced session, while it
waits for the next bar (every 20 ms). A command that has not started when its caller gives
up is cancelled, never run late. ``status`` is answered from the latest engine snapshot
without waiting for the kernel; ``status_json`` gives the same answer as bytes, from the JSON
the snapshot publisher encodes once per snapshot, and nothing when the caller already has
that snapshot (the control API's ``GET /v1/status?since=SEQ``).

Every command is a session input (``engine/inputs.py``): written ahead to the input log, then
applied, so a restart replays it at the same bar. Every command that changes something writes
an ``operator.<action>`` audit row with who, when (wall clock, UTC), what, the reason, and the
fields it changed before and after; a refused command writes ``operator.refused``.
"""

from __future__ import annotations

import json
import queue
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from pydantic import ValidationError

from ultrathink.core.clock import Clock
from ultrathink.core.enums import DenyReason, TradingState
from ultrathink.core.times import iso_ns
from ultrathink.engine.guards import Guards
from ultrathink.engine.inputs import SessionInputs
from ultrathink.engine.killswitch import KillSwitch
from ultrathink.engine.metrics import RunMetrics
from ultrathink.engine.router import OrderRouter
from ultrathink.engine.snapshot import SnapshotPublisher
from ultrathink.engine.working import WorkingOrders
from ultrathink.execution.broker import Broker
from ultrathink.hardening.overrides import (
    MUTABLE_LIMITS,
    Command,
    Flatten,
    ForceBreaker,
    Halt,
    OverrideError,
    Reduce,
    Resume,
    SetLimit,
    Status,
    SymbolSwitch,
    parse_command,
)
from ultrathink.portfolio.portfolio import Portfolio
from ultrathink.risk.engine import RiskEngine

_Item = tuple[Command, "Future[dict[str, Any]]"]
#: the status answer around the snapshot's JSON (the shape ``status()`` returns)
_STATUS_HEAD = b'{"action":"status","ok":true,"message":"","before":{},"after":'
_STATUS_STARTING = _STATUS_HEAD + b'{"state":"starting"}}'


class SessionControl:
    """Runs operator commands against one kernel; see the module docstring."""

    def __init__(
        self,
        *,
        clock: Clock,
        risk: RiskEngine,
        kill: KillSwitch,
        router: OrderRouter,
        portfolio: Portfolio,
        broker: Broker,
        working: WorkingOrders,
        guards: Guards | None,
        symbols: Sequence[str],
        metrics: RunMetrics,
        inputs: SessionInputs,
        snapshots: SnapshotPublisher,
    ) -> None:
        self._clock = clock
        self._risk = risk
        self._kill = kill
        self._router = router
        self._portfolio = portfolio
        self._broker = broker
        self._working = working
        self._guards = guards
        self._symbols = tuple(symbols)
        self.metrics = metrics
        self._inputs = inputs
        self._snapshots = snapshots
        inputs.on("operator", self._apply_recorded)
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._handlers: dict[type, Callable[[Any], str]] = {
            Halt: self._halt,
            Resume: self._resume,
            Reduce: self._reduce,
            Flatten: self._flatten,
            SetLimit: self._set_limit,
            SymbolSwitch: self._symbol_switch,
            ForceBreaker: self._force_breaker,
            Status: lambda cmd: "",
        }

    # -- any thread -------------------------------------------------------------------------
    def execute(self, command: Command, timeout_s: float) -> dict[str, Any]:
        """Queue ``command`` for the kernel thread and wait for its result.

        Raises ``OverrideError`` if it cannot apply and ``TimeoutError`` if the session did
        not run it within ``timeout_s`` (it is then cancelled and never runs).
        """
        if isinstance(command, Status):  # read-only: the latest snapshot, no kernel round trip
            return self.status()
        future: Future[dict[str, Any]] = Future()
        self._queue.put((command, future))
        try:
            return future.result(timeout_s)
        except (FutureTimeout, CancelledError):
            if future.cancel():
                raise TimeoutError(
                    f"the session did not run {command.action!r} within {timeout_s:g} s "
                    "(is it still running?); the command was cancelled"
                ) from None
            return future.result()  # it started meanwhile: wait for the outcome

    def status(self) -> dict[str, Any]:
        """The session as its latest snapshot shows it (any thread; no kernel round trip)."""
        snap = self._snapshots.latest
        after = snap.to_dict() if snap is not None else {"state": "starting"}
        return {"action": "status", "ok": True, "message": "", "before": {}, "after": after}

    def status_json(self, since: int | None = None) -> bytes | None:
        """``status()`` as JSON bytes (any thread; no kernel round trip, no lock), or None when
        the latest snapshot is ``since`` (the caller has it already)."""
        latest = self._snapshots.latest_json()
        if latest is None:
            return _STATUS_STARTING
        seq, body = latest
        if since is not None and seq == since:
            return None
        return b"".join((_STATUS_HEAD, body, b"}"))

    def metrics_text(self) -> bytes:
        """The session's metrics in the Prometheus text format (from the latest snapshot)."""
        snap = self._snapshots.latest
        if snap is not None:
            self.metrics.bars.set(snap.n_bars)
            self.metrics.equity.set(snap.equity)
        return self.metrics.exposition()

    # -- kernel thread ----------------------------------------------------------------------
    def drain(self) -> None:
        """Run every queued command (called by the kernel between bars)."""
        q = self._queue
        while not q.empty():
            command, future = q.get_nowait()
            if not future.set_running_or_notify_cancel():
                continue  # its caller gave up: never run late
            try:
                future.set_result(self.apply(command))
            except Exception as exc:
                future.set_exception(exc)

    def apply(self, command: Command) -> dict[str, Any]:
        """Run ``command`` now, on the kernel thread, as a session input (written ahead).

        Returns action, before, after and message; raises ``OverrideError`` if refused.
        """
        if isinstance(command, Status):
            return self.status()
        result: dict[str, Any] = self._inputs.submit("operator", command.model_dump())
        return result

    def _apply_recorded(self, data: dict[str, Any], wall_ns: int) -> dict[str, Any]:
        # an operator input, live or replayed: the same command at the same bar
        command = parse_command(data)
        if not self._inputs.replaying:
            return self._run(command, wall_ns)
        try:
            return self._run(command, wall_ns)
        except OverrideError as exc:
            # refused when it was sent (written ahead, then refused): the replay refuses it
            # again, at the same bar, and goes on; the operator heard the refusal back then
            return {"action": command.action, "ok": False, "message": str(exc)}

    def _run(self, command: Command, wall_ns: int) -> dict[str, Any]:
        handler = self._handlers[type(command)]
        before = self.snapshot()
        try:
            message = handler(command)
        except OverrideError as exc:
            self.metrics.operator_commands.labels(command.action, "refused").inc()
            self._audit("operator.refused", command, {"error": str(exc)}, wall_ns)
            raise
        after = self.snapshot()
        self.metrics.operator_commands.labels(command.action, "ok").inc()
        changed = [k for k in after if after[k] != before[k]]
        result = {
            "action": command.action,
            "ok": True,
            "message": message,
            "before": {k: before[k] for k in changed},
            "after": {k: after[k] for k in changed},
        }
        self._audit(f"operator.{command.action}", command, result, wall_ns)
        return result

    def snapshot(self) -> dict[str, Any]:
        """The session state an operator sees and that commands change."""
        risk, pf = self._risk, self._portfolio
        snap: dict[str, Any] = {
            "trading_state": risk.state.value,
            "state_reason": risk.state_reason,
            "disabled_symbols": sorted(risk.disabled_symbols),
            "limits": {name: getattr(risk.config, name) for name in MUTABLE_LIMITS},
            "positions": {s: p.quantity for s, p in sorted(pf.positions().items()) if p.quantity},
            "open_orders": self._working.n_open_orders(),
            "equity": round(pf.equity(), 2),
            "clock": iso_ns(self._clock.now_ns()),
        }
        if self._guards is not None:
            snap.update(self._guards.snapshot())
        return snap

    # -- handlers: each returns a message or raises OverrideError ---------------------------
    def _halt(self, cmd: Halt) -> str:
        n = self._kill.trigger(cmd.reason or "operator halt", source=f"operator {cmd.operator}",
                               flatten=cmd.flatten)  # fmt: skip
        return f"HALTED; working orders cancelled; {n} flatten orders sent"

    def _resume(self, cmd: Resume) -> str:
        risk, guards = self._risk, self._guards
        if risk.state is TradingState.ACTIVE:
            raise OverrideError("trading is already ACTIVE: nothing to resume")
        if risk.state is TradingState.HALTED:
            self._kill.resume(cmd.operator, cmd.reason)
        else:
            risk.set_state(TradingState.ACTIVE, f"resumed by {cmd.operator}: {cmd.reason}")
        if guards is not None:  # automatic REDUCING (stale data, degraded) still applies
            guards.arbiter.clear_operator()
            guards.arbiter.apply()
        return f"trading is {risk.state.value}"

    def _reduce(self, cmd: Reduce) -> str:
        risk, guards = self._risk, self._guards
        if risk.state is TradingState.HALTED:
            raise OverrideError("trading is HALTED: resume first, then set REDUCING")
        detail = f"{cmd.operator}: {cmd.reason or 'operator order'}"
        if guards is not None:
            guards.arbiter.reduce("operator", DenyReason.REDUCE_ONLY, detail)
        else:
            risk.set_state(TradingState.REDUCING, f"operator: {detail}")
        return "REDUCING: only exposure-reducing orders pass"

    def _flatten(self, cmd: Flatten) -> str:
        symbols = [cmd.symbol] if cmd.symbol is not None else self._symbols
        if cmd.symbol is not None:
            self._known(cmd.symbol)
        why = f"operator {cmd.operator}: {cmd.reason or 'flatten'}"
        n = 0
        for symbol in symbols:
            for order in self._broker.open_orders(symbol):
                self._router.cancel_order(order.client_order_id, why)
            qty = self._portfolio.position(symbol)
            if qty:
                self._router.submit_flatten(symbol, -qty, why)
                n += 1
        return f"{n} flatten orders sent (they fill at the next bar of each symbol)"

    def _set_limit(self, cmd: SetLimit) -> str:
        try:
            self._risk.set_limit(cmd.limit, cmd.value)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise OverrideError(f"{cmd.limit} {err['msg'].lower()}, was {cmd.value!r}") from None
        return f"{cmd.limit} = {cmd.value}"

    def _symbol_switch(self, cmd: SymbolSwitch) -> str:
        self._known(cmd.symbol)
        disabled = self._risk.disabled_symbols
        if cmd.action == "disable_symbol":
            disabled.add(cmd.symbol)
            return f"{cmd.symbol} disabled: only reducing orders pass"
        disabled.discard(cmd.symbol)
        return f"{cmd.symbol} enabled"

    def _force_breaker(self, cmd: ForceBreaker) -> str:
        guards = self._guards
        if guards is None:
            raise OverrideError(
                "circuit breakers are off in this run (hardening.enabled = false); "
                "start the session with hardening on"
            )
        breaker = guards.breakers[cmd.breaker]
        why = f"{cmd.operator}: {cmd.reason or 'operator order'}"
        if cmd.state == "open":
            breaker.force_open(why)
        else:
            breaker.force_closed(why)
        return f"breaker {cmd.breaker} is {breaker.state.value}"

    # -- helpers ----------------------------------------------------------------------------
    def _known(self, symbol: str) -> None:
        if symbol not in self._symbols:
            raise OverrideError(
                f"unknown symbol {symbol!r}; this session trades {', '.join(self._symbols)}"
            )

    def _audit(self, kind: str, command: Command, result: dict[str, Any], wall_ns: int) -> None:
        record = {
            "who": command.operator,
            "when": iso_ns(wall_ns),
            "what": command.model_dump(exclude={"operator", "reason"}),
            "reason": command.reason,
            **{k: v for k, v in result.items() if k in ("before", "after", "message", "error")},
        }
        self._router.audit(kind, json.dumps(record, sort_keys=True, default=str))
