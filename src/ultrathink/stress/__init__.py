"""Stress tooling: seeded fault injectors, and the ``ultrathink stress`` framework.

The fault injectors (``faults.py``, ``venue_faults.py``) wrap real components and make them
fail on purpose, deterministically. The framework runs declarative scenarios (``scenario.py``:
TOML files with a seed, a load shape, faults, a duration and k6-style thresholds,
``thresholds.py``), checks the invariants of every run (``invariants.py``) and writes the
JSON and HTML report (``report.py``); the scenario kinds live in ``stress/scenarios``.
"""

from ultrathink.stress.faults import (
    BrokerFault,
    FaultMode,
    FaultyBroker,
    FaultyCall,
    InjectedFault,
    RaisingStrategy,
    WrappedBroker,
    build_engine_with_broker,
    corrupt_bars,
    faulty_predictor,
)
from ultrathink.stress.thresholds import Threshold, Verdict, evaluate, parse_threshold

__all__ = [
    "BrokerFault",
    "FaultMode",
    "FaultyBroker",
    "FaultyCall",
    "InjectedFault",
    "RaisingStrategy",
    "Threshold",
    "Verdict",
    "WrappedBroker",
    "build_engine_with_broker",
    "corrupt_bars",
    "evaluate",
    "faulty_predictor",
    "parse_threshold",
]
