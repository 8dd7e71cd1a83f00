"""The store writer contract suite (``persistence/writer.py``, ``process_writer.py``)."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import pytest

from ultrathink.core.enums import OrderStatus, Side
from ultrathink.core.events import Fill, OrderEvent, OrderRequest
from ultrathink.errors import PersistenceError
from ultrathink.persistence import Store, WriteBatch, verify_audit
from ultrathink.testing.contracts._teardown import Teardown

S = OrderStatus


class StoreWriterLike(Protocol):
    """What the kernel's recorder needs of a store writer."""

    def put(self, batch: WriteBatch) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class StoreWriterContract(Teardown, ABC):
    """The store writer contract (``persistence/writer.py``, ``persistence/process_writer.py``).

    Batches are written in order, each in one transaction, readable through ``Store`` once
    ``flush`` returns; a failed batch leaves nothing behind and makes every later
    ``put``/``flush`` raise ``PersistenceError``; ``close`` drains, is idempotent and raises
    a failure nobody was told of yet; a closed writer refuses work.
    """

    @abstractmethod
    def make_writer(self, path: Path) -> StoreWriterLike:
        """A writer of the store at ``path`` (created and migrated when missing)."""

    @pytest.fixture
    def store_path(self, _teardown: None, tmp_path: Path) -> Path:
        """A store file in a directory that does not exist yet."""
        return tmp_path / "store" / "ultrathink.db"

    @pytest.fixture
    def run_id(self, store_path: Path) -> int:
        """A run created in the store."""
        with Store(store_path) as store:
            return store.create_run("backtest", "contract", {}, {}, "data", "hash", "0", 1)

    def writer(self, path: Path) -> StoreWriterLike:
        """``make_writer(path)``, closed (errors ignored) when the test ends."""
        writer = self.make_writer(path)
        self.on_teardown(lambda: _quietly(writer.close))
        return writer

    def test_batches_put_then_flushed_are_readable(self, store_path: Path, run_id: int) -> None:
        writer = self.writer(store_path)
        for first in (0, 5, 10):
            writer.put(_orders(run_id, first, 5))
        writer.flush()
        with Store(store_path) as store:
            counts, fills = store.order_status_counts(run_id), store.load_fills(run_id)
        assert counts == {"FILLED": 15}
        assert [f.fill_id for f in fills] == [f"F-{i:06d}" for i in range(15)]
        assert verify_audit(store_path).ok

    def test_flush_waits_for_everything_put_before(self, store_path: Path, run_id: int) -> None:
        writer = self.writer(store_path)
        seen = []
        with Store(store_path) as store:
            for k in range(3):
                for first in range(200 * k, 200 * (k + 1), 10):
                    writer.put(_orders(run_id, first, 10))
                writer.flush()
                seen.append(store.order_status_counts(run_id))
            writer.flush()  # nothing queued: returns
        assert seen == [{"FILLED": 200}, {"FILLED": 400}, {"FILLED": 600}]

    def test_a_failed_batch_is_sticky_and_leaves_nothing(
        self, store_path: Path, run_id: int
    ) -> None:
        writer = self.writer(store_path)
        writer.put(_orders(run_id, 0, 3))
        writer.put(_orders(run_id, 3, 2, broken=True))
        with pytest.raises(PersistenceError):
            writer.flush()
        with pytest.raises(PersistenceError):
            writer.put(_orders(run_id, 5, 1))
        with pytest.raises(PersistenceError):
            writer.flush()
        writer.close()  # the failure was reported: not raised again
        writer.close()
        with Store(store_path) as store:
            stored = sorted(store.load_orders(run_id)["client_order_id"])
        assert stored == [f"O-{i:06d}" for i in range(3)]

    def test_close_raises_an_unreported_failure_once(self, store_path: Path, run_id: int) -> None:
        writer = self.writer(store_path)
        writer.put(_orders(run_id, 0, 2, broken=True))
        with pytest.raises(PersistenceError):
            writer.close()
        writer.close()
        with Store(store_path) as store:
            assert store.order_status_counts(run_id) == {}

    def test_close_drains_and_is_idempotent(self, store_path: Path, run_id: int) -> None:
        writer = self.writer(store_path)
        writer.put(_orders(run_id, 0, 4))
        writer.close()
        writer.close()
        with Store(store_path) as store:
            assert store.order_status_counts(run_id) == {"FILLED": 4}

    def test_put_and_flush_after_close_raise(self, store_path: Path, run_id: int) -> None:
        writer = self.writer(store_path)
        writer.close()
        with pytest.raises(PersistenceError):
            writer.put(_orders(run_id, 0, 1))
        with pytest.raises(PersistenceError):
            writer.flush()


def _orders(run_id: int, first: int, n: int, *, broken: bool = False) -> WriteBatch:
    # orders first..first+n-1, each requested, approved, accepted and filled; a broken batch
    # repeats its first fill id (a UNIQUE violation: the whole batch must roll back)
    requests, events, fills = [], [], []
    for i in range(first, first + n):
        coid, ts_ns, side = f"O-{i:06d}", 1_000 + 10 * i, Side.BUY if i % 2 else Side.SELL
        requests.append(OrderRequest(coid, ts_ns, "AAA", side, 1.0 + i))
        events.append(OrderEvent(ts_ns + 1, coid, "AAA", S.ACCEPTED, 0.0))
        fills.append(Fill(ts_ns + 2, coid, f"F-{i:06d}", "AAA", side, 1.0 + i, 100.0, 0.1))
        events.append(OrderEvent(ts_ns + 2, coid, "AAA", S.FILLED, 1.0 + i))
    if broken:
        fills.append(fills[0])
    approvals = [r.client_order_id for r in requests]
    return WriteBatch(run_id, requests=requests, approvals=approvals, events=events, fills=fills)


def _quietly(close: Callable[[], None]) -> None:
    with contextlib.suppress(PersistenceError):
        close()
