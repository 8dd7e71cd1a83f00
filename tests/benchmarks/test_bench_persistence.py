"""Persistence benchmarks (``make bench``): writer throughput and audit verification speed.

Budgets (2-core shared VM): 100,000 orders, each a risk approval, two order events and a
fill, every one a row of the audit chain (400,000 rows), written and flushed in under 2.0 s
by either writer — the thread ``StoreWriter`` and the ``ProcessStoreWriter`` the engine uses.
That is >= 50,000 orders/s, over twice the ~21,500 orders/s the 1,000,000-bar sma_cross
benchmark produces at 545,000 bars/s, so the writer never holds the kernel back. A
1,000,000-row audit chain is verified — the chain, and the runs, orders, fills, equity and
positions tables cross-checked against it — in under ``BUDGET_VERIFY_S``. Medians of
``REPEATS`` runs are printed with their spread.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from ultrathink.perf.bench_persistence import writer_batches
from ultrathink.persistence import Store, StoreWriter, verify_audit
from ultrathink.persistence.process_writer import ProcessStoreWriter

pytestmark = pytest.mark.bench

REPEATS = 3
N_ORDERS = 100_000
ORDERS_PER_BATCH = 1000
BUDGET_WRITE_S = 2.0
N_VERIFY_ORDERS = 250_000  # four audit rows each (approval, ACCEPTED, fill, FILLED)
BUDGET_VERIFY_S = 20.0


def _summary(name: str, times: list[float], budget: float) -> float:
    median = statistics.median(times)
    print(f"\n{name}: median {median:.3f} s, min {min(times):.3f}, max {max(times):.3f}")
    print(f"  budget {budget} s, {len(times)} repeats")
    return median


@pytest.mark.parametrize("writer_cls", [StoreWriter, ProcessStoreWriter])
def test_writer_throughput(tmp_path: Path, writer_cls: type) -> None:
    times = []
    for repeat in range(REPEATS):
        db = tmp_path / f"w{repeat}.db"
        with Store(db) as store:
            run_id = store.create_run("backtest", "bench", {}, {}, "bench", "h", "v", 0)
        batches = writer_batches(run_id, N_ORDERS)
        with writer_cls(db) as writer:
            t0 = time.perf_counter()  # after start-up: a run starts its writer before timing
            for batch in batches:
                writer.put(batch)
            writer.flush()
            times.append(time.perf_counter() - t0)
    name = f"{writer_cls.__name__}: write {N_ORDERS:,} orders (+flush)"
    median = _summary(name, times, BUDGET_WRITE_S)
    print(f"  {N_ORDERS / median:,.0f} orders/s, {4 * N_ORDERS / median:,.0f} audit rows/s")
    assert median < BUDGET_WRITE_S


def test_verify_a_million_row_store(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    with Store(db) as store:
        run_id = store.create_run("backtest", "bench", {}, {}, "bench", "0" * 64, "v", 0)
    with StoreWriter(db) as writer:
        for batch in writer_batches(run_id, N_VERIFY_ORDERS):
            writer.put(batch)
    with Store(db) as store:
        store.finish_run(run_id, "completed", {}, 1)
        n_rows = store.audit_head()[0]
    assert n_rows >= 1_000_000
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        report = verify_audit(db)
        times.append(time.perf_counter() - t0)
        assert report.ok and report.n_rows == n_rows
    median = _summary(f"verify {n_rows:,} audit rows and their tables", times, BUDGET_VERIFY_S)
    print(f"  {n_rows / median:,.0f} audit rows/s")
    assert median < BUDGET_VERIFY_S
