"""Shared test tooling: engine builders, fakes and contract suites for every interface.

``ultrathink.testing.engine`` wires a real engine for a test (the production wiring, with a
sink that keeps what the store would get); ``ultrathink.testing.fakes`` holds the small fakes
tests share; ``ultrathink.testing.contracts`` holds one contract suite per interface
(``Broker``, store writer, ``Clock``, ``StrategyContext``), run by ``tests/`` over every
implementation — the pattern of Optuna's storage tests.
"""
