"""Benchmarks of persistence: both store writers' throughput and audit-chain verification.

As ``tests/benchmarks/test_bench_persistence.py``: each order is a request, a risk approval,
an ACCEPTED and a FILLED event and one fill (three audit rows), sent in batches of 1,000
orders and flushed to disk; the writer is started before timing, as a run starts its writer
before its first bar. Full mode writes 100,000 orders and verifies a 1,000,000-row chain.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ultrathink.perf.suite import Measurement, benchmark

ORDERS_PER_BATCH = 1_000


def writer_batches(run_id: int, n_orders: int) -> list[Any]:
    """The writer workload: per order a request, an approval, ACCEPTED, FILLED and a fill."""
    from ultrathink.core.enums import OrderStatus, Side
    from ultrathink.core.events import Fill, OrderEvent, OrderRequest
    from ultrathink.persistence import WriteBatch

    batches = []
    for first in range(0, n_orders, ORDERS_PER_BATCH):
        requests, events, fills = [], [], []
        for i in range(first, min(first + ORDERS_PER_BATCH, n_orders)):
            oid, ts_ns = f"O-bench-{i:09d}", 1_000 * i
            requests.append(OrderRequest(oid, ts_ns, "SPX", Side.BUY, 10.0))
            events.append(OrderEvent(ts_ns + 1, oid, "SPX", OrderStatus.ACCEPTED, 0.0))
            fills.append(Fill(ts_ns + 2, oid, f"F-{i:09d}", "SPX", Side.BUY, 10.0, 100.0, 0.1))
            events.append(OrderEvent(ts_ns + 2, oid, "SPX", OrderStatus.FILLED, 10.0))
        approvals = [r.client_order_id for r in requests]
        batches.append(WriteBatch(run_id, requests, [], approvals, events, fills))
    return batches


class _StoreCase:
    # a new database holding one run and a started writer per repeat (set up untimed), the
    # database deleted after the repeat
    run_kind = "backtest"

    def __init__(self, kind: str = "process") -> None:
        self.kind = kind
        self._dir = Path(tempfile.mkdtemp(prefix="ultrathink-bench-"))
        self._n = 0

    def setup(self) -> None:
        from ultrathink.persistence import Store, StoreWriter
        from ultrathink.persistence.process_writer import ProcessStoreWriter

        self._n += 1
        db = self._dir / f"w{self._n}.db"
        with Store(db) as store:
            self.run_id = store.create_run(self.run_kind, "bench", {}, {}, "bench", "h", "v", 0)
        cls: Any = StoreWriter if self.kind == "thread" else ProcessStoreWriter
        self.writer = cls(db)

    def teardown(self) -> None:
        self.writer.close()
        for path in self._dir.glob(f"w{self._n}.db*"):
            path.unlink()

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


class _Writer(_StoreCase):
    # put + flush of 100,000 orders (5,000 quick) are timed
    def __init__(self, quick: bool, kind: str) -> None:
        super().__init__(kind)
        self.n_orders = 5_000 if quick else 100_000

    def setup(self) -> None:
        super().setup()
        self.batches = writer_batches(self.run_id, self.n_orders)

    def run(self) -> int:
        put = self.writer.put
        for batch in self.batches:
            put(batch)
        self.writer.flush()
        return self.n_orders


@benchmark("persistence.store_writer", "persistence", "ops/s", repeats=3)
def store_writer(quick: bool) -> _Writer:
    """``StoreWriter`` (thread): orders written and flushed per second."""
    return _Writer(quick, "thread")


@benchmark("persistence.process_writer", "persistence", "ops/s", repeats=3)
def process_writer(quick: bool) -> _Writer:
    """``ProcessStoreWriter`` (the engine's writer process): orders/s."""
    return _Writer(quick, "process")


class _LiveFlush(_StoreCase):
    # a live session's flushes: a batch of 100 equity points (one order in ten), handed to the
    # writer process every 2 ms of idle time (a session flushes when the feed is quiet); each
    # put is timed, on the kernel's thread, from the call to its return
    run_kind = "paper"

    def __init__(self, quick: bool) -> None:
        super().__init__("process")
        self.n_puts = 1_000  # quick too: a latency benchmark keeps at least 1,000 events

    def run(self) -> Measurement:
        import numpy as np

        from ultrathink.core.enums import Side
        from ultrathink.core.events import Fill, OrderRequest
        from ultrathink.persistence import WriteBatch

        put, clock = self.writer.put, time.perf_counter_ns
        events = [0] * self.n_puts
        ts = np.arange(100, dtype=np.int64)
        for i in range(self.n_puts):
            orders: dict[str, Any] = {}
            if i % 10 == 0:  # an order and its fill now and then
                cid = f"C-{i}"
                orders["requests"] = [OrderRequest(cid, i * 100, "SPY", Side.BUY, 1.0)]
                orders["approvals"] = [cid]
                orders["fills"] = [Fill(i * 100, cid, f"F-{i}", "SPY", Side.BUY, 1.0, 1e2, 0.01)]
            batch = WriteBatch(self.run_id, equity=(ts + i * 100, ts * 1.0, ts * 1.0), **orders)
            time.sleep(0.002)
            t0 = clock()
            put(batch)
            events[i] = clock() - t0
        self.writer.flush()
        return Measurement(value=float(np.median(events)) / 1e3, events_ns=events)


@benchmark("persistence.live_flush", "persistence", "us", repeats=3)
def live_flush(quick: bool) -> _LiveFlush:
    """A live session's hand-off of a small batch to the writer process (median µs a put)."""
    return _LiveFlush(quick)


class _Verify:
    # a real store written once (run, orders, fills, the chain); every repeat verifies all of
    # it: the chain and the cross-check of the tables against it
    def __init__(self, quick: bool) -> None:
        from ultrathink.persistence import Store, StoreWriter

        n_orders = 12_500 if quick else 250_000
        self._dir = Path(tempfile.mkdtemp(prefix="ultrathink-bench-"))
        self.db = self._dir / "audit.db"
        with Store(self.db) as store:
            run_id = store.create_run("backtest", "bench", {}, {}, "bench", "0" * 64, "bench", 0)
        with StoreWriter(self.db) as writer:
            for batch in writer_batches(run_id, n_orders):
                writer.put(batch)
        with Store(self.db) as store:
            store.finish_run(run_id, "completed", {}, 1)
            self.n_rows = store.audit_head()[0]

    def setup(self) -> None:
        pass

    def run(self) -> int:
        from ultrathink.persistence import verify_audit

        report = verify_audit(self.db)
        if not (report.ok and report.n_rows == self.n_rows):
            raise RuntimeError(f"audit chain did not verify: {report.problems[:3]}")
        return report.n_rows

    def teardown(self) -> None:
        pass

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


@benchmark("persistence.audit_verify", "persistence", "ops/s", repeats=3)
def audit_verify(quick: bool) -> _Verify:
    """``verify_audit`` of a store: chain and tables cross-checked (audit rows/s)."""
    return _Verify(quick)
