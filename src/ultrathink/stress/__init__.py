"""Stress tooling: seeded fault injectors for scenario tests of the hardening layer."""

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

__all__ = [
    "BrokerFault",
    "FaultMode",
    "FaultyBroker",
    "FaultyCall",
    "InjectedFault",
    "RaisingStrategy",
    "WrappedBroker",
    "build_engine_with_broker",
    "corrupt_bars",
    "faulty_predictor",
]
