"""Crash-safe restart: rebuild a paper session from its store and its venue, then continue.

A paper session keeps two durable records: the engine's store (written by the writer
process, one transaction per bar: everything up to the last equity point ``T`` is there and
nothing after it) and the paper venue's journal (written synchronously before the engine
hears of anything: it is always ahead). After a ``kill -9`` at any instant:

1. The venue is restored from its journal; it is the truth for orders and fills.
2. Orders and fills are reconciled: venue orders and fills the store lacks are imported;
   an order the store has but the venue never received ends REJECTED ("lost before reaching
   the venue; not resubmitted") — its outcome is known by asking the venue, never by
   sending it again; an order whose state differs gets the venue's state. A fill in the
   store that the venue does not know is a reconciliation mismatch: the kill switch fires.
3. The portfolio is rebuilt from the venue's fills; working orders from its open book.
4. Operator state is restored from the audit trail: a HALTED session comes back HALTED
   (only an audited resume re-opens exposure), and runtime limits and disabled symbols
   are re-applied. Breakers start CLOSED.
5. The bars up to ``T`` are replayed to warm up indicators and the strategy with its orders
   suppressed; the drawdown and daily-loss references are replayed from the stored equity.
6. Trading continues from the first bar after ``T`` with the client-order-id sequence where
   the store left it: the deterministic strategy re-issues the same ids for the same
   decisions, and an id the venue already has is adopted, not sent twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ultrathink.core.enums import TERMINAL_STATUSES, OrderStatus, TradingState
from ultrathink.core.events import OrderEvent, OrderRequest
from ultrathink.engine.kernel import Kernel
from ultrathink.execution.journal import VenueState
from ultrathink.execution.orders import Order
from ultrathink.persistence import Store

_LOST = "lost before reaching the venue (session crashed); not resubmitted"


class RecoveryReport(NamedTuple):
    """What a restart found and did."""

    resume_after_ts_ns: int | None
    n_imported_orders: int
    n_imported_fills: int
    n_lost_orders: int
    n_updated_orders: int
    mismatches: tuple[str, ...]
    trading_state: str


def journal_path(db_path: Path, run_id: int) -> Path:
    """Where the paper venue of run ``run_id`` keeps its journal (next to the store)."""
    return db_path.parent / f"{db_path.stem}.venue-run{run_id}.sqlite"


def recover(kernel: Kernel, store: Store, run_id: int, venue: VenueState) -> RecoveryReport:
    """Reconcile store and venue into ``kernel`` before it continues; see the module doc."""
    ts, equity, cash = store.load_equity(run_id)
    last_ts = int(ts[-1]) if ts.size else None
    stored = store.order_states(run_id)
    stored_fills = store.fill_ids(run_id)
    ctx, rec = kernel.ctx, kernel.recorder
    venue_fill_ids = {f.fill_id for f in venue.fills}
    mismatches = [
        f"fill {fid} is in the store but not at the venue"
        for fid in sorted(stored_fills - venue_fill_ids)
    ]
    imported, updated, lost = _reconcile_orders(kernel, stored, venue)
    n_fills = _rebuild_account(kernel, venue, stored_fills)
    _restore_equity(kernel, ts, equity, cash)
    _restore_counter(kernel, store.order_intents(run_id), venue, last_ts)
    _restore_operator_state(kernel, store, run_id)
    state = kernel.risk.state.value
    rec.audit((ctx.now_ns(), "recovery.reconciled", json.dumps({
        "resume_after_ts_ns": last_ts, "imported_orders": imported, "imported_fills": n_fills,
        "lost_orders": lost, "updated_orders": updated, "mismatches": mismatches,
        "trading_state": state,
    })))  # fmt: skip
    if mismatches and kernel.kill_switch is not None:
        kernel.kill_switch.trigger(
            "; ".join(mismatches[:3]), source="reconciliation", flatten=False
        )
        state = kernel.risk.state.value
    return RecoveryReport(last_ts, imported, n_fills, lost, updated, tuple(mismatches), state)


def _reconcile_orders(
    kernel: Kernel, stored: dict[str, tuple[str, float, str]], venue: VenueState
) -> tuple[int, int, int]:
    rec, now = kernel.recorder, kernel.ctx.now_ns()
    imported = updated = lost = 0
    for coid, order in venue.orders.items():
        reason = venue.reasons.get(coid, "")
        if coid not in stored:  # the venue got it; the store's batch was lost in the crash
            rec.request(_request_of(order))
            rec.approved(coid)
            rec.event(_event_of(order, reason, now))
            imported += 1
        elif stored[coid][:2] != (order.status.value, order.filled_qty):
            rec.event(_event_of(order, reason, now))
            updated += 1
    for coid, (status, _filled, symbol) in stored.items():
        if coid in venue.orders or OrderStatus(status) in TERMINAL_STATUSES:
            continue
        rec.event(OrderEvent(now, coid, symbol, OrderStatus.REJECTED, 0.0, _LOST))
        lost += 1
    return imported, updated, lost


def _rebuild_account(kernel: Kernel, venue: VenueState, stored_fills: set[str]) -> int:
    # the venue's fills in execution order; those the store lacks are recorded as well
    pf, rec, ctx = kernel.portfolio, kernel.recorder, kernel.ctx
    n = 0
    for fill in venue.fills:
        pf.apply_fill(fill)
        if fill.fill_id not in stored_fills:
            rec.fill(fill, pf.cash, pf.has_open_positions)
            n += 1
        else:
            rec.all_fills.append(fill)
            rec.set_account_state(pf.cash, pf.has_open_positions)
    for order in venue.orders.values():
        if order.is_open:
            ctx.adopt_working_order(order)
    return n


def _restore_equity(kernel: Kernel, ts: np.ndarray, equity: np.ndarray, cash: np.ndarray) -> None:
    # the stored curve is the run's history; the drawdown/daily references are replayed
    rec, risk = kernel.recorder, kernel.risk
    if ts.size:
        rec.prepend_history(ts, equity, cash)
        listener, risk.breach_listener = risk.breach_listener, None
        for t, e in zip(ts.tolist(), equity.tolist(), strict=True):
            risk.on_equity(t, e)
        risk.breach_listener = listener


def _restore_counter(
    kernel: Kernel,
    intents: dict[str, tuple[int, str, str, float, str]],
    venue: VenueState,
    last_ts: int | None,
) -> None:
    # Ids continue after the last order of a bar the store has fully (<= last_ts). Orders
    # of later bars — at the venue, or in the store from an earlier restart (imported, or
    # rejected as lost) — are decisions the replay will make again with the same ids: each
    # re-issued id is adopted (at the venue) or swallowed (already final), never sent anew.
    ctx = kernel.ctx
    done = -1 if last_ts is None else last_ts
    ctx.resume_ids(max((ctx.id_seq(c) for c, i in intents.items() if i[0] <= done), default=0))
    later = {c: (i[1], i[2], i[3], i[4]) for c, i in intents.items() if i[0] > done}
    later.update(
        (c, (o.symbol, o.side.value, o.quantity, o.tag))
        for c, o in venue.orders.items()
        if o.ts_ns > done
    )
    ctx.expect_reissue(later)


def _restore_operator_state(kernel: Kernel, store: Store, run_id: int) -> None:
    risk, kill = kernel.risk, kernel.kill_switch
    halted = False
    rows = store.audit_details(run_id, ("killswitch.", "operator."))
    for kind, detail in rows:
        if kind == "killswitch.triggered":
            halted = True
        elif kind == "killswitch.resumed":
            halted = False
        elif kind in ("operator.set_limit", "operator.disable_symbol", "operator.enable_symbol"):
            _reapply(kernel, kind, detail)
    if halted and kill is not None:
        kill.trigger("restarted after a crash while HALTED", source="recovery", flatten=False)
    elif halted:
        risk.set_state(TradingState.HALTED, "restarted after a crash while HALTED")


def _reapply(kernel: Kernel, kind: str, detail: str) -> None:
    try:
        what = json.loads(detail)["what"]
    except (ValueError, KeyError, TypeError):
        return
    risk = kernel.risk
    if kind == "operator.set_limit":
        risk.set_limit(what["limit"], what["value"])
    elif kind == "operator.disable_symbol":
        risk.disabled_symbols.add(what["symbol"])
    else:
        risk.disabled_symbols.discard(what["symbol"])


def _request_of(order: Order) -> OrderRequest:
    return OrderRequest(
        order.client_order_id, order.ts_ns, order.symbol, order.side, order.quantity,
        order.order_type, order.limit_price, order.stop_price, order.tif, order.reduce_only,
        order.tag,
    )  # fmt: skip


def _event_of(order: Order, reason: str, now_ns: int) -> OrderEvent:
    return OrderEvent(
        now_ns, order.client_order_id, order.symbol, order.status, order.filled_qty, reason
    )
