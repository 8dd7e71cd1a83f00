"""The outcome of one run, and its JSON-ready summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ultrathink.core.events import Fill
from ultrathink.core.times import iso_ns
from ultrathink.portfolio.metrics import Metrics
from ultrathink.portfolio.portfolio import ClosedTrade


@dataclass
class RunResult:
    """Everything a caller needs after a run: metrics, curve, fills, trades and speed."""

    run_id: int | None
    mode: str
    strategy: str
    params: dict[str, Any]
    data_name: str
    data_hash: str
    symbols: tuple[str, ...]
    n_bars: int
    elapsed_s: float
    metrics: Metrics
    fills: list[Fill]
    trades: list[ClosedTrade]
    ts_ns: np.ndarray
    equity: np.ndarray
    cash: np.ndarray
    order_counts: dict[str, int]
    n_denied: int
    final_positions: dict[str, float]
    denial_reasons: dict[str, int] = field(default_factory=dict)
    #: (seq, hash) of the audit chain's last row after this run: publish it to anchor the log
    audit_head: tuple[int, str] | None = None
    strategy_stats: dict[str, Any] = field(default_factory=dict)
    #: trading state at the end and why (e.g. HALTED by the kill switch)
    trading_state: str = "ACTIVE"
    trading_state_reason: str = ""
    #: decision latency (on_bar entry to return) percentiles in µs, when measured
    latency_us: dict[str, float] | None = None
    #: what a crash-safe restart reconciled (``engine/recovery.py``); None for a fresh run
    recovery: dict[str, Any] | None = None
    #: hardening events of the run (breaker transitions, REDUCING sources, degraded mode)
    hardening_events: list[dict[str, Any]] = field(default_factory=list)
    #: buys the sizing policy cut to what the account could pay for
    capped_buys: int = 0
    #: symbol -> reason -> count, where one symbol was denied for one reason many times
    repeated_denials: dict[str, dict[str, int]] = field(default_factory=dict)
    #: a live feed session's accounting (``FeedBars.stats``); None for stored data
    feed: dict[str, Any] | None = None

    @property
    def bars_per_s(self) -> float:
        """Bars processed per second of wall time, persistence included."""
        return self.n_bars / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self, include_fills: bool = True) -> dict[str, Any]:
        """JSON-ready summary (the ``--json`` output)."""
        m = self.metrics.to_dict()
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "mode": self.mode,
            "strategy": self.strategy,
            "params": self.params,
            "data": self.data_name,
            "data_hash": self.data_hash,
            "symbols": list(self.symbols),
            "n_bars": self.n_bars,
            "elapsed_s": round(self.elapsed_s, 6),
            "bars_per_s": round(self.bars_per_s, 1),
            "n_trades": self.metrics.n_trades,
            "n_fills": len(self.fills),
            "final_equity": self.metrics.final_equity,
            "total_return": self.metrics.total_return,
            "max_drawdown": self.metrics.max_drawdown,
            "metrics": m,
            "orders": self.order_counts,
            "n_denied": self.n_denied,
            "denial_reasons": self.denial_reasons,
            "repeated_denials": self.repeated_denials,
            "capped_buys": self.capped_buys,
            "final_positions": self.final_positions,
            "strategy_stats": self.strategy_stats,
            "trading_state": self.trading_state,
            "trading_state_reason": self.trading_state_reason,
            "recovery": self.recovery,
            "hardening_events": self.hardening_events,
            "decision_latency_us": self.latency_us,
            "feed": self.feed,
            "audit_head": (
                {"seq": self.audit_head[0], "hash": self.audit_head[1]} if self.audit_head else None
            ),
        }
        if include_fills:
            out["fills"] = [fill_dict(f) for f in self.fills]
        return out


def fill_dict(fill: Fill) -> dict[str, Any]:
    """A fill as a JSON-ready dict (time as ISO-8601 UTC)."""
    return {
        "time": iso_ns(fill.ts_ns),
        "client_order_id": fill.client_order_id,
        "symbol": fill.symbol,
        "side": fill.side.value,
        "quantity": fill.quantity,
        "price": fill.price,
        "fee": fill.fee,
    }
