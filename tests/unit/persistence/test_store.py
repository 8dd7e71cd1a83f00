"""The read/run API of Store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from ultrathink.errors import ConfigError, PersistenceError
from ultrathink.persistence import RunRecord, Store


def _create(store: Store, kind: str = "backtest", started_ns: int = 5) -> int:
    return store.create_run(
        kind=kind,
        strategy="sma_cross",
        params={"fast": 10, "slow": 30},
        config={"broker": {"commission_bps": 1.5}},
        data_name="spx",
        data_hash="abc123",
        code_version="0.1.0+deadbeef",
        started_ns=started_ns,
    )


def test_create_and_get_run(store: Store) -> None:
    run_id = _create(store)

    record = store.get_run(run_id)

    assert record == RunRecord(
        run_id=run_id,
        kind="backtest",
        strategy="sma_cross",
        params={"fast": 10, "slow": 30},
        config={"broker": {"commission_bps": 1.5}},
        data_name="spx",
        data_hash="abc123",
        code_version="0.1.0+deadbeef",
        started_ns=5,
        ended_ns=None,
        status="running",
        summary=None,
    )


def test_finish_run_stores_status_summary_and_end(store: Store) -> None:
    run_id = _create(store)

    store.finish_run(run_id, "completed", {"sharpe": np.float64(1.25), "n": np.int64(3)}, 99)
    record = store.get_run(run_id)

    assert (record.status, record.summary, record.ended_ns) == (
        "completed", {"sharpe": 1.25, "n": 3}, 99,
    )  # fmt: skip


def test_list_runs_is_newest_first_and_limited(store: Store) -> None:
    ids = [_create(store, kind) for kind in ("backtest", "paper", "run")]

    assert [r.run_id for r in store.list_runs()] == ids[::-1]
    assert [r.kind for r in store.list_runs(limit=2)] == ["run", "paper"]


def test_a_run_is_visible_to_another_store_on_the_same_file(db_path: Path) -> None:
    with Store(db_path) as writer_side, Store(db_path) as reader_side:
        run_id = _create(writer_side)
        assert reader_side.get_run(run_id).strategy == "sma_cross"


@pytest.mark.parametrize(
    "method",
    ["get_run", "load_orders", "load_fills", "count_fills", "load_equity", "load_positions",
     "load_order_events", "order_status_counts"],
)  # fmt: skip
def test_unknown_run_is_a_clean_error(store: Store, method: str) -> None:
    with pytest.raises(PersistenceError, match=r"^run 42 not found; see `ultrathink runs`$"):
        getattr(store, method)(42)


def test_finishing_an_unknown_run_is_a_clean_error(store: Store) -> None:
    with pytest.raises(PersistenceError, match="run 7 not found"):
        store.finish_run(7, "completed", {}, 1)


def test_bad_kind_and_status_name_the_choices(store: Store) -> None:
    with pytest.raises(ConfigError, match=r"kind must be one of backtest, paper, run; was 'live'"):
        _create(store, kind="live")
    run_id = _create(store)
    with pytest.raises(ConfigError, match=r"status must be one of .*completed.*; was 'done'"):
        store.finish_run(run_id, "done", {}, 1)


def test_unserialisable_params_are_a_config_error(store: Store) -> None:
    with pytest.raises(ConfigError, match="JSON-serialisable"):
        store.create_run("backtest", "s", {"f": object()}, {}, "d", "h", "v", 0)


def test_empty_run_loads_empty_results(store: Store) -> None:
    run_id = _create(store)

    ts_ns, equity, cash = store.load_equity(run_id)
    orders = store.load_orders(run_id)

    assert (ts_ns.dtype, equity.dtype, cash.dtype) == (np.int64, np.float64, np.float64)
    assert ts_ns.size == equity.size == cash.size == 0
    assert orders.empty and "client_order_id" in orders.columns
    assert store.load_fills(run_id) == []
    assert store.count_fills(run_id) == 0
    assert store.load_positions(run_id) == []
    assert store.order_status_counts(run_id) == {}
    assert store.load_order_events(run_id).empty


def test_a_fresh_store_has_an_empty_verified_audit(store: Store) -> None:
    report = store.verify_audit()

    assert (report.ok, report.n_rows, report.problems, report.last_seq) == (True, 0, [], 0)
    assert store.audit_head() == (0, "0" * 64)


def test_close_is_idempotent_and_closes_the_connection(db_path: Path) -> None:
    store = Store(db_path)
    store.close()
    store.close()

    with pytest.raises(sqlite3.ProgrammingError):
        store.list_runs()
