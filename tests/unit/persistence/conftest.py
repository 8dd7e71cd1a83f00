"""Fixtures for the persistence tests: real SQLite files under tmp_path, no mocks."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from ultrathink.core.enums import OrderStatus, OrderType, Side
from ultrathink.core.events import Fill, OrderEvent, OrderRequest
from ultrathink.persistence import Store, WriteBatch

BatchFactory = Callable[..., WriteBatch]


def _order_batch(
    run_id: int, first: int, n: int, *, ts0_ns: int = 1_000_000, filled: bool = True
) -> WriteBatch:
    """``n`` orders ``first..first+n-1``: request, approval, ACCEPTED, one fill, FILLED."""
    requests, events, fills = [], [], []
    for i in range(first, first + n):
        oid, ts_ns = f"O-{run_id}-{i:09d}", ts0_ns + 1000 * i
        side = Side.BUY if i % 2 == 0 else Side.SELL
        limit = 100.0 + i if i % 3 == 0 else None
        order_type = OrderType.LIMIT if limit is not None else OrderType.MARKET
        requests.append(
            OrderRequest(oid, ts_ns, "SPX", side, 1.0 + i, order_type, limit, tag=f"t{i}")
        )
        events.append(OrderEvent(ts_ns + 1, oid, "SPX", OrderStatus.ACCEPTED, 0.0))
        if filled:
            price = 100.0 + i / 7
            fills.append(
                Fill(ts_ns + 2, oid, f"F-{run_id}-{i:09d}", "SPX", side, 1.0 + i, price, 0.5)
            )
            events.append(OrderEvent(ts_ns + 2, oid, "SPX", OrderStatus.FILLED, 1.0 + i))
    approvals = [r.client_order_id for r in requests]
    return WriteBatch(run_id, requests=requests, approvals=approvals, events=events, fills=fills)


@pytest.fixture(scope="session")
def order_batch() -> BatchFactory:
    """Factory of batches of fully filled orders (pure: safe with Hypothesis)."""
    return _order_batch


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A database path whose parent directory does not exist yet."""
    return tmp_path / "store" / "ultrathink.db"


def create_run(path: Path, kind: str = "backtest", started_ns: int = 1_000) -> int:
    with Store(path) as store:
        return store.create_run(
            kind, "sma_cross", {"fast": 10}, {"cash": 1e5}, "spx", "hash", "0.1", started_ns
        )


@pytest.fixture(scope="session")
def new_run() -> Callable[..., int]:
    """Factory: create a run in the store at ``path`` and return its id."""
    return create_run


def _sql(path: Path, *statements: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run statements on a raw connection (no triggers re-created, no migrations)."""
    rows: list[tuple[Any, ...]] = []
    with closing(sqlite3.connect(path)) as conn:
        for statement in statements:
            rows = conn.execute(statement, params if statement is statements[-1] else ()).fetchall()
        conn.commit()
    return rows


@pytest.fixture(scope="session")
def raw_sql() -> Callable[..., list[tuple[Any, ...]]]:
    """Run SQL behind the store's back (tamper tests); the last statement gets ``params``."""
    return _sql


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    with Store(db_path) as opened:
        yield opened
