"""Paper sessions run in this process, on the real engine, with a store and a venue journal.

``paper_run`` is what ``ultrathink paper --speed max`` does (``engine.runner.Session``: the
store writer process, the venue journal, the input log, hardening), with a broker factory
of the caller's choosing (fault injection: ``stress/faults.py``, ``stress/venue_faults.py``)
and the kernel's decision latencies kept for the scenario's HdrHistogram.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ultrathink import services
from ultrathink.data.frame import MarketData
from ultrathink.decision.strategy import Strategy
from ultrathink.engine.config import EngineConfig
from ultrathink.engine.results import RunResult
from ultrathink.engine.runner import Session
from ultrathink.engine.spec import BrokerFactory, RunSpec, paper_broker
from ultrathink.stress.invariants import check_run, completed
from ultrathink.stress.outcome import Invariant
from ultrathink.stress.scenario import merge_tables

#: Degraded mode judges this machine's load (CPU, decision latency), which a scenario about
#: something else must not confuse with its own effect; the resources scenario turns it on.
NO_DEGRADED: dict[str, Any] = {"hardening": {"enabled": True, "degraded": None}}


@dataclass
class PaperRun:
    """One in-process paper session: its result (None if it raised), error and latencies."""

    db: Path | None
    run_id: int | None
    result: RunResult | None
    error: Exception | None
    latency_ns: list[int] = field(default_factory=list)

    def invariants(self) -> list[Invariant]:
        """The store invariants and ``no_crash`` (a run without a store: ``no_crash`` only)."""
        if self.db is None or self.run_id is None:
            detail = "completed" if self.error is None else f"raised {self.error!r}"[:300]
            return [Invariant("no_crash", self.error is None, detail)]
        return [*check_run(self.db, self.run_id), completed(self.db, self.run_id, self.error)]


def paper_config(overrides: dict[str, Any]) -> EngineConfig:
    """A paper session's configuration (realistic costs, production limits, hardening) with
    ``overrides`` (nested tables, as in a config file) on top, measuring decision latency."""
    values = merge_tables(NO_DEGRADED, overrides)
    return services.engine_config(
        realistic=True, overrides={**values, "measure_latency": True, "speed": None}
    )


def paper_run(
    strategy: Strategy,
    data: MarketData,
    config: EngineConfig,
    db: Path | None,
    broker_factory: BrokerFactory = paper_broker,
) -> PaperRun:
    """Run one unpaced paper session to the end; an exception is kept, not raised."""
    spec = RunSpec(strategy, data, config, "paper", db, broker_factory=broker_factory)
    session = Session(spec)
    try:
        with session.open():
            result = session.run()
            latency = list(session.engine.kernel.latency_ns or ())
    except Exception as exc:  # the run's failure is what the scenario measures
        return PaperRun(db, session.run_id, None, exc)
    skip = strategy.warmup_bars * data.n_symbols
    return PaperRun(db, session.run_id, result, None, latency[skip:])
