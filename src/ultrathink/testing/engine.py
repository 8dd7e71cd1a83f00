"""Wire a real engine for a test: the production wiring, no store, batches kept in memory."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ultrathink.data.frame import MarketData
from ultrathink.decision.strategy import Strategy
from ultrathink.engine.config import EngineConfig
from ultrathink.engine.recorder import Recorder
from ultrathink.engine.spec import BrokerFactory, RunSpec, paper_broker
from ultrathink.engine.wiring import Engine, build_engine


class BatchCapture:
    """A recorder sink that keeps every batch the store would have received.

    Parameters
    ----------
    forward : callable or None
        Also receives each batch, after it is kept (e.g. a store writer's ``put``).
    """

    def __init__(self, forward: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.batches: list[dict[str, Any]] = []
        self._forward = forward

    def __call__(self, batch: dict[str, Any]) -> None:
        self.batches.append(batch)
        if self._forward is not None:
            self._forward(batch)

    def records(self, key: str) -> list[Any]:
        """Every record of one kind (``requests``, ``events``, ``fills``, ``audit_extra``…)."""
        return [r for b in self.batches for r in b[key]]

    def audit(self, kind: str | None = None) -> list[tuple[int, str, str]]:
        """Free-form audit rows ``(ts_ns, kind, detail)``, of one kind if given."""
        rows = self.records("audit_extra")
        return [r for r in rows if kind is None or r[1] == kind]


def engine_for(
    strategy: Strategy,
    data: MarketData,
    config: EngineConfig | None = None,
    *,
    mode: str = "paper",
    broker_factory: BrokerFactory = paper_broker,
    capture: BatchCapture | None = None,
    run_id: int | None = None,
) -> Engine:
    """Build the engine of one run with the production wiring (nothing persisted).

    ``capture`` receives the batches; ``engine.kernel.run(data)`` then runs it and
    ``engine.kernel.finish()`` flushes the last batch.
    """
    config = config if config is not None else EngineConfig()
    recorder = Recorder(capture, config.starting_cash)
    spec = RunSpec(strategy, data, config, mode, broker_factory=broker_factory)
    return build_engine(spec, recorder, run_id=run_id)


def run_engine(engine: Engine, data: MarketData) -> Engine:
    """Run ``engine`` over ``data`` to the end and flush; return it."""
    engine.kernel.run(data)
    engine.kernel.finish()
    return engine


def with_broker(spec: RunSpec, factory: BrokerFactory) -> RunSpec:
    """``spec`` with another broker factory."""
    return dataclasses.replace(spec, broker_factory=factory)
