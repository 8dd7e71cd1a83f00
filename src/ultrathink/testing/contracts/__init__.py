"""Contract test suites: one per interface, run by ``tests/`` over every implementation.

A suite is a plain class of ``test_*`` methods with abstract factory methods. A ``Test*``
subclass in ``tests/unit/contracts/`` implements the factories for one implementation and
pytest collects the inherited tests (the pattern of Optuna's storage tests). A contract
stays strict: a known violation is marked ``xfail(strict=True)`` in the subclass, with why.

===========================  ===========================================  ==================
suite                        interface                                    factory
===========================  ===========================================  ==================
``BrokerContract``           ``execution.broker.Broker``                  ``make_broker``
``StoreWriterContract``      ``StoreWriter``, ``ProcessStoreWriter``      ``make_writer``
``ClockContract``            ``core.clock.Clock``                         ``make_clock``
``StrategyContextContract``  ``decision.strategy.StrategyContext``        ``make_context``
===========================  ===========================================  ==================

These modules import pytest (a dev dependency): only tests import them.

Examples
--------
>>> from ultrathink.core.clock import Clock, TestClock
>>> class TestTestClock(ClockContract):
...     settable = True
...
...     def make_clock(self) -> Clock:
...         return TestClock(0)
"""

from ultrathink.testing.contracts.broker import LEGAL_TRANSITIONS, BrokerContract
from ultrathink.testing.contracts.clock import ClockContract, SettableClock
from ultrathink.testing.contracts.store_writer import StoreWriterContract, StoreWriterLike
from ultrathink.testing.contracts.strategy_context import MarketStep, StrategyContextContract

__all__ = [
    "LEGAL_TRANSITIONS",
    "BrokerContract",
    "ClockContract",
    "MarketStep",
    "SettableClock",
    "StoreWriterContract",
    "StoreWriterLike",
    "StrategyContextContract",
]
