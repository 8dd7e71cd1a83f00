"""Prometheus metrics of one session (prometheus-client, one registry per run, no globals).

They change only on events (a breaker or trading-state transition, an operator command, a
fallback), never per bar, so the hot path pays nothing for them. The control endpoint serves
``exposition()`` at ``/metrics``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, generate_latest

from ultrathink.core.enums import TradingState

_BREAKER_LEVEL = {"CLOSED": 0, "HALF_OPEN": 1, "OPEN": 2}


class RunMetrics:
    """The session's counters and gauges, in their own ``CollectorRegistry``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.breaker_state = Gauge(
            "ultrathink_breaker_state",
            "circuit breaker state: 0 closed, 1 half-open, 2 open",
            ["breaker"],
            registry=r,
        )
        self.breaker_transitions = Counter(
            "ultrathink_breaker_transitions",
            "circuit breaker transitions",
            ["breaker", "to_state"],
            registry=r,
        )
        self.trading_state = Enum(
            "ultrathink_trading_state",
            "trading state of the session",
            states=[s.value for s in TradingState],
            registry=r,
        )
        self.degraded = Gauge("ultrathink_degraded", "1 while in degraded mode", registry=r)
        self.fallbacks = Counter(
            "ultrathink_decision_fallbacks",
            "decisions served by a fallback",
            ["kind"],
            registry=r,
        )
        self.operator_commands = Counter(
            "ultrathink_operator_commands",
            "operator commands by action and outcome",
            ["action", "outcome"],
            registry=r,
        )
        self.kill_switch = Counter(
            "ultrathink_kill_switch_triggers", "kill switch triggers", ["source"], registry=r
        )
        self.bars = Gauge("ultrathink_bars_processed", "bars processed so far", registry=r)
        self.equity = Gauge("ultrathink_equity", "mark-to-market equity", registry=r)

    def set_breaker(self, name: str, state: str, *, transition: bool) -> None:
        """Record a breaker's state (and count the transition into it)."""
        self.breaker_state.labels(breaker=name).set(_BREAKER_LEVEL[state])
        if transition:
            self.breaker_transitions.labels(breaker=name, to_state=state).inc()

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
