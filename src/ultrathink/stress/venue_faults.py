"""Venue faults beside ``faults.FaultyBroker``: rejects, duplicated fills, and their stack.

``FaultyBroker`` makes calls raise (a timeout before the venue saw the call, a lost ack after
it processed it). A venue also says no (``VenueRejects``: the order ends REJECTED with the
venue's reason, journaled as the paper venue journals its own rejects) and may report one
execution twice (``DuplicatingSink``: the same fill, same id, delivered again, as a resent
execution report). ``FaultyVenue`` is the broker factory that stacks them, each with its own
seed, and keeps every injector for the scenario's counts::

    engine ─▶ FaultyBroker(before: timeouts) ─▶ FaultyBroker(after: lost acks)
           ─▶ VenueRejects ─▶ PaperBroker ─▶ DuplicatingSink ─▶ the engine's sink
"""

from __future__ import annotations

import random

from ultrathink.core.clock import Clock
from ultrathink.core.events import Fill, OrderEvent, OrderRequest
from ultrathink.execution.broker import Broker, ExecutionSink
from ultrathink.execution.costs import PaperBrokerConfig
from ultrathink.execution.orders import Order
from ultrathink.execution.paper import JournalSink, PaperBroker
from ultrathink.stress.faults import FaultyBroker

#: The reason a ``VenueRejects`` rejection carries.
REJECT_REASON = "injected venue reject"


class DuplicatingSink:
    """An ``ExecutionSink`` that passes everything on, and some fills twice.

    Parameters
    ----------
    inner : ExecutionSink
        The engine's sink.
    rate : float
        Probability that a fill is delivered a second time (same ``Fill``, same id).
    seed : int
        Seed of its own ``random.Random`` (one draw per fill).
    """

    def __init__(self, inner: ExecutionSink, rate: float, seed: int) -> None:
        self.inner = inner
        self.rate = rate
        self._rng = random.Random(seed)
        #: ids of the fills delivered twice
        self.duplicated: list[str] = []

    def on_order_event(self, event: OrderEvent) -> None:
        self.inner.on_order_event(event)

    def on_fill(self, fill: Fill, order: Order) -> None:
        self.inner.on_fill(fill, order)
        if self._rng.random() < self.rate:
            self.duplicated.append(fill.fill_id)
            self.inner.on_fill(fill, order)


class VenueRejects(FaultyBroker):
    """A broker that rejects a share of submits itself, and forwards everything else.

    A rejected order is journaled and reported REJECTED with ``REJECT_REASON``, exactly as
    the paper venue reports its own rejects; ``get_order`` knows it afterwards. It is a
    ``FaultyBroker`` whose raising faults are off: it reuses the forwarding of every other
    call to the inner venue.
    """

    def __init__(
        self,
        inner: Broker,
        *,
        rate: float,
        seed: int,
        clock: Clock,
        sink: ExecutionSink,
        journal: JournalSink | None,
    ) -> None:
        super().__init__(inner, fail_rate=0.0, seed=seed, fail_submit=False, fail_cancel=False)
        self.rate = rate
        self._reject_rng = random.Random(seed)
        self._clock = clock
        self._sink = sink
        self._journal = journal
        self._rejected: dict[str, Order] = {}

    @property
    def rejected(self) -> list[str]:
        """Client order ids rejected here, in order."""
        return list(self._rejected)

    def submit(self, request: OrderRequest) -> Order:
        known = self._rejected.get(request.client_order_id)
        if self._reject_rng.random() >= self.rate or known is not None:
            return known or self.inner.submit(request)
        now = self._clock.now_ns()
        order = Order(request, eligible_ns=now)
        event = order.reject(now, REJECT_REASON)
        if self._journal is not None:
            self._journal.record(order, reason=REJECT_REASON, updated_ns=now)
        self._rejected[request.client_order_id] = order
        self._sink.on_order_event(event)
        return order

    def get_order(self, client_order_id: str) -> Order | None:
        return self._rejected.get(client_order_id) or self.inner.get_order(client_order_id)


class FaultyVenue:
    """A ``RunSpec.broker_factory``: the paper venue under every fault above, seeded.

    Parameters
    ----------
    timeout, lost_ack, reject, duplicate_fill : float
        Rates of each fault in [0, 1] (0: that injector is still built, and never fires).
    seed : int
        Each injector draws from ``seed + k`` (k = 0..3), so one rate never shifts another's
        pattern.
    cancel : bool
        Whether cancels may time out or lose their ack too.
    """

    def __init__(
        self,
        *,
        timeout: float,
        lost_ack: float,
        reject: float,
        duplicate_fill: float,
        seed: int,
        cancel: bool = True,
    ) -> None:
        self.rates = {
            "timeout": timeout,
            "lost_ack": lost_ack,
            "reject": reject,
            "duplicate_fill": duplicate_fill,
        }
        self.seed = seed
        self.cancel = cancel
        self.timeouts: FaultyBroker | None = None
        self.lost_acks: FaultyBroker | None = None
        self.rejects: VenueRejects | None = None
        self.duplicates: DuplicatingSink | None = None

    def __call__(
        self,
        config: PaperBrokerConfig,
        clock: Clock,
        sink: ExecutionSink,
        journal: JournalSink | None,
    ) -> Broker:
        r, s = self.rates, self.seed
        self.duplicates = DuplicatingSink(sink, r["duplicate_fill"], s + 3)
        venue = PaperBroker(config, clock, self.duplicates, journal)
        self.rejects = VenueRejects(
            venue, rate=r["reject"], seed=s + 2, clock=clock, sink=self.duplicates, journal=journal
        )
        self.lost_acks = FaultyBroker(
            self.rejects, fail_rate=r["lost_ack"], seed=s + 1, mode="after", fail_cancel=self.cancel
        )
        self.timeouts = FaultyBroker(
            self.lost_acks, fail_rate=r["timeout"], seed=s, mode="before", fail_cancel=self.cancel
        )
        return self.timeouts
