"""``ctl status``: an engine snapshot (``engine/snapshot.py``) as a few readable lines."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def is_snapshot(values: Any) -> bool:
    """True for the JSON form of an ``EngineSnapshot``."""
    return isinstance(values, dict) and {"seq", "n_bars", "equity", "trading_state"} <= set(values)


def format_snapshot(s: dict[str, Any]) -> str:
    """The session at the snapshot's instant: where it is, the account, state, orders."""
    when = datetime.fromtimestamp(s["clock_ns"] / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    phase = "replaying" if s["replaying"] else "finished" if s["finished"] else "live"
    run = f"run {s['run_id']}" if s["run_id"] is not None else "not stored"
    lines = [
        f"{run} ({s['mode']}, {phase}): {s['n_bars']:,} bars, at {when} UTC, "
        f"{s['bars_per_s']:,.1f} bars/s",
        f"equity {s['equity']:,.2f}, cash {s['cash']:,.2f}, peak {s['peak_equity']:,.2f}",
        _state(s),
        "positions: " + (", ".join(_position(p) for p in s["positions"]) or "flat"),
        "working orders: "
        + (", ".join(f"{o[0]} {o[2]} {o[3]:g} {o[1]}" for o in s["working_orders"]) or "none"),
        "ended orders: "
        + (", ".join(f"{k} {v:,}" for k, v in s["order_counts"].items()) or "none")
        + f"; fills {s['n_fills']:,}"
        + (f" ({dup:,} duplicates dropped)" if (dup := s.get("n_duplicate_fills")) else "")
        + "; denials: "
        + (", ".join(f"{k} {v:,}" for k, v in s["denials"].items()) or "none"),
    ]
    lat = s.get("decision_latency_us")
    if lat:
        lines.append(f"decision latency p50 {lat['p50']:.1f} µs, p99 {lat['p99']:.1f} µs "
                     f"(last {lat['count']:,.0f} decisions)")  # fmt: skip
    limits = {k: v for k, v in s["limits"].items() if v is not None}
    lines.append("limits: " + ", ".join(f"{k} {v:g}" for k, v in limits.items()))
    return "\n".join(lines)


def _state(s: dict[str, Any]) -> str:
    text = f"trading {s['trading_state']}"
    if s["state_reason"]:
        text += f" ({s['state_reason']})"
    h = s.get("hardening") or {}
    breakers = h.get("breakers") or {}
    not_closed = {k: v for k, v in breakers.items() if v != "CLOSED"}
    if breakers:
        text += "; breakers " + (
            ", ".join(f"{k} {v}" for k, v in not_closed.items()) if not_closed else "all CLOSED"
        )
    if h.get("degraded"):
        text += "; DEGRADED"
    if h.get("feed_stale"):
        text += "; feed STALE"
    if s["disabled_symbols"]:
        text += "; disabled: " + ", ".join(s["disabled_symbols"])
    return text


def _position(p: dict[str, Any]) -> str:
    return (
        f"{p['symbol']} {p['quantity']:g} @ {p['avg_price']:,.2f} (last {p['last_price']:,.2f}, "
        f"unrealized {p['unrealized_pnl']:+,.2f})"
    )
