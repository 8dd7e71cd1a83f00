"""Seeded fault injectors for stress and scenario tests of the hardening layer.

Each injector wraps one real component and makes it fail on purpose, deterministically: the
same seed and the same sequence of calls give the same faults. Every call draws from the
injector's own ``random.Random(seed)`` whether or not it fails, so a fault pattern depends
only on the call sequence, never on the failure rate of another injector.

=====================  ==========================  =========================================
injector               wraps                       exercises
=====================  ==========================  =========================================
``FaultyBroker``       a ``Broker``                the execution breaker, unknown-order
                                                   resolution (adopt / REJECTED)
``FaultyCall``         any callable (a model's     the decision breaker (via ``on_bar``), the
                       ``predict_row``, a risk     risk breaker (via ``RiskEngine.check``)
                       check)
``RaisingStrategy``    a ``Strategy``              the decision breaker and its hold fallback
``corrupt_bars``       ``MarketData``              the market-data breaker (bad bars dropped)
=====================  ==========================  =========================================

``WrappedBroker`` is a ``RunSpec.broker_factory`` that wraps the run's paper broker (e.g. in a
``FaultyBroker``) and keeps the wrapper for inspection; ``build_engine_with_broker`` wires a
run with it. This is test and stress tooling; the engine only knows the factory seam.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Collection, Iterable
from typing import Any, Generic, Literal, NamedTuple, ParamSpec, TypeVar

import numpy as np

from ultrathink.core.clock import Clock
from ultrathink.core.events import Bar, Fill, OrderDenied, OrderEvent, OrderRequest
from ultrathink.core.timing import TimingPoint
from ultrathink.data.frame import MarketData
from ultrathink.decision.strategy import IndicatorSet, Strategy, StrategyContext
from ultrathink.engine.recorder import Recorder
from ultrathink.engine.spec import RunSpec
from ultrathink.engine.wiring import Engine, build_engine
from ultrathink.errors import BrokerError, ConfigError
from ultrathink.execution.broker import Broker, ExecutionSink
from ultrathink.execution.costs import PaperBrokerConfig
from ultrathink.execution.orders import Order
from ultrathink.execution.paper import JournalSink, PaperBroker

P = ParamSpec("P")
R = TypeVar("R")
B = TypeVar("B", bound=Broker)

#: When a broker fault strikes: ``before`` the venue sees the call (nothing happened there),
#: ``after`` it processed the call (the response was lost), ``mixed`` either, 50/50.
FaultMode = Literal["before", "after", "mixed"]
_MODES = ("before", "after", "mixed")

#: How ``corrupt_bars`` breaks a bar.
Corruption = Literal["nan_close", "negative_close", "zero_close", "inverted", "inf_high"]
_CORRUPTIONS = ("nan_close", "negative_close", "zero_close", "inverted", "inf_high")


class InjectedFault(RuntimeError):
    """The exception a ``FaultyCall`` raises (a bug or outage in the wrapped component)."""


class BrokerFault(NamedTuple):
    """One injected broker fault: which call, on which order, and when it struck."""

    call: Literal["submit", "cancel"]
    client_order_id: str
    when: Literal["before", "after"]


def _check_rate(fail_rate: float) -> float:
    rate = float(fail_rate)
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"fail_rate must be in [0, 1], was {fail_rate!r}")
    return rate


class FaultyBroker(Broker):
    """A ``Broker`` whose ``submit`` and ``cancel`` raise ``BrokerError`` at random.

    Parameters
    ----------
    inner : Broker
        The real venue; every other method (``open_orders``, ``get_order``, ``positions``,
        ``on_bar``, ``wants_bars`` and any extra attribute) is forwarded to it unchanged.
    fail_rate : float
        Probability that one ``submit``/``cancel`` call fails, in [0, 1]. It may be changed
        between calls (e.g. set to 0 to end an outage).
    seed : int
        Seed of the injector's own ``random.Random``.
    mode : {"before", "after", "mixed"}
        ``before``: the inner broker never sees the failed call. ``after``: the inner broker
        processed it (the order exists, the cancel happened) but the response is lost.
        ``mixed``: each fault picks one of the two with equal probability.
    fail_submit, fail_cancel : bool
        Which calls may fail.

    Attributes
    ----------
    faults : list of BrokerFault
        Every injected fault, in order.
    n_submits, n_cancels : int
        Calls received (failed ones included).
    """

    def __init__(
        self,
        inner: Broker,
        *,
        fail_rate: float,
        seed: int,
        mode: FaultMode = "mixed",
        fail_submit: bool = True,
        fail_cancel: bool = True,
    ) -> None:
        if mode not in _MODES:
            raise ConfigError(f"mode must be one of {', '.join(_MODES)}, was {mode!r}")
        self.inner = inner
        self.fail_rate = _check_rate(fail_rate)
        self.mode: FaultMode = mode
        self.fail_submit = fail_submit
        self.fail_cancel = fail_cancel
        self._rng = random.Random(seed)
        self.faults: list[BrokerFault] = []
        self.n_submits = 0
        self.n_cancels = 0

    # -- fault bookkeeping ------------------------------------------------------------------
    @property
    def n_faults(self) -> int:
        """Faults injected so far."""
        return len(self.faults)

    def fault_ids(self, call: str, when: str) -> list[str]:
        """Client order ids of the ``call`` ("submit"/"cancel") faults that struck ``when``."""
        return [f.client_order_id for f in self.faults if f.call == call and f.when == when]

    def _draw(self, enabled: bool) -> Literal["before", "after"] | None:
        # two draws per call, always: the pattern depends on the call sequence only
        fails, coin = self._rng.random(), self._rng.random()
        if not enabled or fails >= self.fail_rate:
            return None
        if self.mode == "mixed":
            return "before" if coin < 0.5 else "after"
        return self.mode

    def _raise(
        self, call: Literal["submit", "cancel"], coid: str, when: Literal["before", "after"]
    ) -> BrokerError:
        self.faults.append(BrokerFault(call, coid, when))
        lost = "the venue never saw it" if when == "before" else "the response was lost"
        return BrokerError(f"injected {call} fault on {coid} ({lost})", retryable=True)

    # -- Broker interface -------------------------------------------------------------------
    def submit(self, request: OrderRequest) -> Order:
        self.n_submits += 1
        when = self._draw(self.fail_submit)
        coid = request.client_order_id
        if when == "before":
            raise self._raise("submit", coid, when)
        order = self.inner.submit(request)
        if when == "after":
            raise self._raise("submit", coid, when)
        return order

    def cancel(self, client_order_id: str, reason: str) -> bool:
        self.n_cancels += 1
        when = self._draw(self.fail_cancel)
        if when == "before":
            raise self._raise("cancel", client_order_id, when)
        done = self.inner.cancel(client_order_id, reason)
        if when == "after":
            raise self._raise("cancel", client_order_id, when)
        return done

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return self.inner.open_orders(symbol)

    def get_order(self, client_order_id: str) -> Order | None:
        return self.inner.get_order(client_order_id)

    def positions(self) -> dict[str, float]:
        return self.inner.positions()

    def on_bar(self, bar: Bar) -> None:
        self.inner.on_bar(bar)

    @property
    def wants_bars(self) -> bool:
        """Whether the inner broker needs bars now (read at every bar by the kernel)."""
        return self.inner.wants_bars

    @wants_bars.setter
    def wants_bars(self, value: bool) -> None:
        self.inner.wants_bars = value

    def __getattr__(self, name: str) -> Any:
        # anything else the inner venue offers (trim_history, restore, n_open, ...)
        if name == "inner":  # not set yet (e.g. during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


class FaultyCall(Generic[P, R]):
    """Wrap ``fn`` so that some calls raise ``InjectedFault`` instead of running it.

    A call fails when its 0-based index is in ``at`` or, independently, with probability
    ``fail_rate``. A failed call does not call ``fn`` at all.

    Examples
    --------
    >>> predict = FaultyCall(lambda x: 0.5, at={1})
    >>> predict(0.0)
    0.5
    >>> try:
    ...     predict(0.0)
    ... except InjectedFault as exc:
    ...     print(exc)
    injected fault in call 1 of <lambda>
    """

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        fail_rate: float = 0.0,
        seed: int = 0,
        at: Iterable[int] = (),
    ) -> None:
        self.fn = fn
        self.fail_rate = _check_rate(fail_rate)
        self._at: Collection[int] = frozenset(at)
        self._rng = random.Random(seed)
        self._name = getattr(fn, "__qualname__", type(fn).__name__)
        self.n_calls = 0
        #: indices of the calls that failed
        self.failed_calls: list[int] = []

    @property
    def n_faults(self) -> int:
        """Calls that failed so far."""
        return len(self.failed_calls)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        i = self.n_calls
        self.n_calls += 1
        draw = self._rng.random()  # drawn on every call: see the module docstring
        if i in self._at or draw < self.fail_rate:
            self.failed_calls.append(i)
            raise InjectedFault(f"injected fault in call {i} of {self._name}")
        return self.fn(*args, **kwargs)


def faulty_predictor(
    predict_row: Callable[[np.ndarray], float],
    *,
    fail_rate: float = 0.0,
    seed: int = 0,
    at: Iterable[int] = (),
) -> FaultyCall[[np.ndarray], float]:
    """A ``ModelBundle.predict_row`` that raises ``InjectedFault`` (see ``FaultyCall``)."""
    return FaultyCall(predict_row, fail_rate=fail_rate, seed=seed, at=at)


class RaisingStrategy(Strategy):
    """Runs ``inner`` but makes some ``on_bar`` calls raise ``InjectedFault`` first.

    A failed ``on_bar`` never reaches ``inner`` (its decision is lost, its indicators still
    update: the kernel feeds them). Call indices in ``at`` count the ``on_bar`` calls this
    strategy receives; a hardened run does not call it while the decision breaker is OPEN.
    Every other hook is forwarded to ``inner``.
    """

    name = "raising"

    def __init__(
        self,
        inner: Strategy,
        *,
        fail_rate: float = 0.0,
        seed: int = 0,
        at: Iterable[int] = (),
    ) -> None:
        super().__init__()
        self.inner = inner
        self.fault: FaultyCall[[Bar], None] = FaultyCall(
            inner.on_bar, fail_rate=fail_rate, seed=seed, at=at
        )

    def get_params(self) -> dict[str, Any]:
        return {"inner": self.inner.name, **self.inner.get_params(),
                "fail_rate": self.fault.fail_rate}  # fmt: skip

    def bind(self, ctx: StrategyContext) -> None:
        super().bind(ctx)
        self.inner.bind(ctx)

    @property
    def indicators(self) -> list[IndicatorSet]:
        return self.inner.indicators

    def on_start(self) -> None:
        self.inner.on_start()
        self.fault.fn = self.inner.on_bar  # rebind: on_start may have replaced it

    def on_bar(self, bar: Bar) -> None:
        self.fault(bar)
        self.failed_decision, self.inner.failed_decision = self.inner.failed_decision, ""

    def on_bar_held(self, bar: Bar) -> None:
        self.inner.on_bar_held(bar)

    def on_fill(self, fill: Fill) -> None:
        self.inner.on_fill(fill)

    def on_order_event(self, event: OrderEvent) -> None:
        self.inner.on_order_event(event)

    def on_order_denied(self, denied: OrderDenied) -> None:
        self.inner.on_order_denied(denied)

    def on_stop(self) -> None:
        self.inner.on_stop()

    def timing_points(self) -> list[TimingPoint]:
        return self.inner.timing_points()

    def symbol_timing_points(self, symbol: str) -> list[TimingPoint]:
        return self.inner.symbol_timing_points(symbol)

    def stats(self) -> dict[str, Any]:
        return {**self.inner.stats(), "injected_faults": self.fault.n_faults}


def corrupt_bars(
    data: MarketData, indices: Iterable[int], how: Corruption = "nan_close"
) -> MarketData:
    """A copy of ``data`` whose rows ``indices`` (positions in its time order) are broken.

    ``nan_close``/``negative_close``/``zero_close`` break the close, ``inverted`` swaps high
    and low (high < low), ``inf_high`` makes the high infinite. Timestamps and symbols stay
    as they are. ``MarketData`` does not validate (only the file loaders do), so the broken
    rows reach the kernel, as a bad tick from a live feed would. ``data`` is not modified.
    """
    if how not in _CORRUPTIONS:
        raise ConfigError(f"how must be one of {', '.join(_CORRUPTIONS)}, was {how!r}")
    rows = np.asarray(sorted(set(indices)), dtype=np.int64)
    if rows.size and (rows[0] < 0 or rows[-1] >= len(data)):
        raise ConfigError(f"bar indices must be in [0, {len(data)}), were {rows.tolist()}")
    high, low, close = data.high.copy(), data.low.copy(), data.close.copy()
    if how == "nan_close":
        close[rows] = np.nan
    elif how == "negative_close":
        close[rows] = -np.abs(close[rows])
    elif how == "zero_close":
        close[rows] = 0.0
    elif how == "inverted":
        high[rows], low[rows] = data.low[rows], data.high[rows]
        # a bar whose high equals its low is not broken by the swap: push the high below
        flat = high[rows] >= low[rows]
        high[rows[flat]] = low[rows[flat]] * 0.99
    else:
        high[rows] = np.inf
    return dataclasses.replace(
        data, high=high, low=low, close=close, name=f"{data.name}+corrupt({how}@{rows.size})"
    )


class WrappedBroker(Generic[B]):
    """A broker factory: the paper broker, wrapped by ``wrap``; the wrapper is kept.

    Parameters
    ----------
    wrap : callable
        ``Broker -> B``, e.g. ``lambda b: FaultyBroker(b, fail_rate=0.1, seed=1)``.
    """

    def __init__(self, wrap: Callable[[Broker], B]) -> None:
        self._wrap = wrap
        self.broker: B | None = None

    def __call__(
        self,
        config: PaperBrokerConfig,
        clock: Clock,
        sink: ExecutionSink,
        journal: JournalSink | None,
    ) -> Broker:
        self.broker = self._wrap(PaperBroker(config, clock, sink, journal))
        return self.broker


def build_engine_with_broker(
    spec: RunSpec, wrap: Callable[[Broker], B], recorder: Recorder | None = None
) -> tuple[Engine, B]:
    """Wire ``spec`` with its paper broker wrapped by ``wrap`` (e.g. a ``FaultyBroker``);
    return the engine and the wrapper. ``recorder`` defaults to one without a sink."""
    rec = recorder if recorder is not None else Recorder(None, spec.config.starting_cash)
    factory = WrappedBroker(wrap)
    engine = build_engine(dataclasses.replace(spec, broker_factory=factory), rec)
    assert factory.broker is not None
    return engine, factory.broker
