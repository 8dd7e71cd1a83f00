"""What to run: ``RunSpec`` and the seams a caller may plug in (broker, profiler)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ultrathink.core.clock import Clock
from ultrathink.data.frame import MarketData
from ultrathink.decision.strategy import Strategy
from ultrathink.engine.config import EngineConfig
from ultrathink.execution.broker import Broker, ExecutionSink
from ultrathink.execution.costs import PaperBrokerConfig
from ultrathink.execution.paper import JournalSink, PaperBroker

if TYPE_CHECKING:
    from ultrathink.engine.feed_bars import FeedBars
    from ultrathink.engine.kernel import KernelProfiler

#: builds the run's broker: (costs, clock, the engine's execution sink, the venue journal)
BrokerFactory = Callable[[PaperBrokerConfig, Clock, ExecutionSink, JournalSink | None], Broker]
#: builds the profiler of a run from the config's ``profile_sample_every`` (None: default)
ProfilerFactory = Callable[[int | None], "KernelProfiler"]


def paper_broker(
    config: PaperBrokerConfig, clock: Clock, sink: ExecutionSink, journal: JournalSink | None
) -> Broker:
    """The default broker factory: the simulated paper venue."""
    return PaperBroker(config, clock, sink, journal)


@dataclass(frozen=True)
class RunSpec:
    """What to run: the strategy instance, the data, the config and where to store it.

    Attributes
    ----------
    strategy : Strategy
        A new strategy instance (its state is the run's).
    data : MarketData or FeedBars
        The bars: stored data to replay, or a live feed (``paper --feed``).
    config : EngineConfig
        Capital, costs, limits, hardening, pacing.
    mode : str
        ``backtest``, ``paper`` or ``run``.
    db_path : Path or None
        The store; None keeps nothing.
    resume_run_id : int or None
        Continue this stored paper run after a crash (``engine/recovery.py``).
    broker_factory : BrokerFactory
        Builds the venue (the paper broker; fault injection and real brokers plug in here).
    profiler : ProfilerFactory or None
        Profiles the run (``ultrathink profile``); None: not profiled.
    """

    strategy: Strategy
    data: MarketData | FeedBars
    config: EngineConfig
    mode: str = "backtest"  # backtest | paper | run
    db_path: Path | None = None
    resume_run_id: int | None = None
    broker_factory: BrokerFactory = paper_broker
    profiler: ProfilerFactory | None = None
