"""The layout of the economic audit rows (audit format 2), as written by the writer and Store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ultrathink.core.enums import OrderStatus, Side
from ultrathink.core.events import Fill, OrderEvent, OrderRequest
from ultrathink.persistence import Store, StoreWriter, WriteBatch, verify_audit
from ultrathink.persistence.audit_format import (
    blobs_sha256,
    dumps_detail,
    fill_rows,
    parse_detail,
    text_sha256,
)

COLUMNS = "ts_ns, run_id, kind, client_order_id, symbol, status, quantity, price, detail"


def _rows(raw_sql, db: Path, where: str) -> list[tuple]:
    return raw_sql(db, f"SELECT {COLUMNS} FROM audit_log WHERE {where} ORDER BY seq")


@pytest.mark.parametrize(
    "fill",
    [Fill(5, "O-1", "F-1", "SPX", Side.SELL, 2.0, 101.5, 0.25, 1.5),
     Fill(5, "O-1", 'F "quoted" \\ é \x1f', "SPX", Side.BUY, 2.0, 101.5, float("nan"),
          float("-inf")),
     Fill(5, "O-1", "F-2", "SPX", Side.BUY, 2.0, 101.5, np.float64(0.1), 0)],
)  # fmt: skip
def test_the_fill_detail_is_canonical_json(fill: Fill) -> None:
    [row] = fill_rows(7, [fill])

    assert row[:8] == (5, 7, "fill", "O-1", "SPX", None, 2.0, 101.5)
    assert row[8] == dumps_detail(  # fee and slippage as the REAL they are stored as
        {"fee": float(fill.fee), "fill_id": fill.fill_id, "side": fill.side.value,
         "slippage_bps": float(fill.slippage_bps)}
    )  # fmt: skip
    parsed = parse_detail(row[8])
    assert parsed is not None and parsed["fill_id"] == fill.fill_id
    assert "\x1f" not in row[8]


def test_run_lifecycle_rows(db_path: Path, raw_sql) -> None:
    with Store(db_path) as store:
        run_id = store.create_run("paper", "sma", {"fast": 3}, {"cash": 1.0}, "spx", "h1", "v9", 11)
        store.finish_run(run_id, "interrupted", {"final_equity": 99.5, "orders": {"NEW": 1}}, 12)
        store.reopen_run(run_id, ts_ns=13)
        head = store.finish_run(run_id, "completed", {"final_equity": 98.0}, 14)
        summary_json = raw_sql(db_path, "SELECT summary_json FROM runs")[0][0]

    rows = _rows(raw_sql, db_path, "kind GLOB 'run.*'")

    assert [r[:8] for r in rows] == [
        (11, 1, "run.created", None, None, "running", None, None),
        (12, 1, "run.finished", None, None, "interrupted", None, None),
        (13, 1, "run.reopened", None, None, "running", None, None),
        (14, 1, "run.finished", None, None, "completed", None, None),
    ]
    assert json.loads(rows[0][8]) == {
        "code_version": "v9", "config_sha256": text_sha256('{"cash": 1.0}'), "data_hash": "h1",
        "data_name": "spx", "kind": "paper", "params_sha256": text_sha256('{"fast": 3}'),
        "strategy": "sma",
    }  # fmt: skip
    assert json.loads(rows[2][8]) == {"previous_status": "interrupted"}
    assert json.loads(rows[3][8]) == {
        "final_equity": 98.0, "max_drawdown": None, "n_denied": None, "n_fills": None,
        "n_trades": None, "orders": None, "total_return": None,
        "summary_sha256": text_sha256(summary_json),
    }  # fmt: skip
    assert head == (4, raw_sql(db_path, "SELECT hash FROM audit_head")[0][0])
    assert verify_audit(db_path).ok


def test_a_failed_finish_writes_no_audit_row(db_path: Path) -> None:
    with Store(db_path) as store:
        store.create_run("backtest", "s", {}, {}, "d", "h", "v", 0)
        before = store.audit_head()
        with pytest.raises(Exception, match="run 9 not found"):
            store.finish_run(9, "completed", {}, 1)
        assert store.audit_head() == before


def test_fills_equity_positions_and_event_prices(db_path: Path, new_run, raw_sql) -> None:
    run_id = new_run(db_path)
    ts = np.array([100, 200, 300], dtype=np.int64)
    equity, cash = np.array([1e5, 1e5 + 1, 1e5 + 2]), np.array([5e4, 5e4, 4e4])
    first = WriteBatch(
        run_id,
        requests=[OrderRequest("A", 10, "SPX", Side.BUY, 10.0)],
        approvals=["A"],
        events=[OrderEvent(20, "A", "SPX", OrderStatus.PARTIALLY_FILLED, 4.0)],
        fills=[Fill(20, "A", "F1", "SPX", Side.BUY, 4.0, 100.0, 0.4, 2.0)],
        equity=(ts, equity, cash),
    )
    # the rest fills in a later batch: the event's price counts the stored fill
    second = WriteBatch(
        run_id,
        events=[OrderEvent(400, "A", "SPX", OrderStatus.FILLED, 10.0)],
        fills=[Fill(400, "A", "F2", "SPX", Side.BUY, 6.0, 105.0, 0.6)],
        positions=[("SPX", 10.0, 103.0, 0.0, 104.0)],
    )
    with StoreWriter(db_path) as writer:
        writer.put(first)
        writer.put(second)

    events = _rows(raw_sql, db_path, "kind GLOB 'order.*'")
    fills = _rows(raw_sql, db_path, "kind = 'fill'")
    [chunk] = _rows(raw_sql, db_path, "kind = 'equity.chunk'")
    [position] = _rows(raw_sql, db_path, "kind = 'position'")

    assert [e[5:8] for e in events] == [("PARTIALLY_FILLED", 4.0, 100.0), ("FILLED", 10.0, 103.0)]
    assert [f[3:8] for f in fills] == [
        ("A", "SPX", None, 4.0, 100.0), ("A", "SPX", None, 6.0, 105.0)
    ]  # fmt: skip
    assert json.loads(fills[0][8]) == {
        "fee": 0.4, "fill_id": "F1", "side": "BUY", "slippage_bps": 2.0
    }  # fmt: skip
    assert chunk[:8] == (300, run_id, "equity.chunk", None, None, None, 3.0, 1e5 + 2)
    assert json.loads(chunk[8]) == {
        "chunk_no": 0, "first_ts_ns": 100, "last_cash": 4e4, "last_equity": 1e5 + 2,
        "last_ts_ns": 300, "n_rows": 3,
        "sha256": blobs_sha256(ts.tobytes(), equity.tobytes(), cash.tobytes()),
    }  # fmt: skip
    assert position[:8] == (None, run_id, "position", None, "SPX", None, 10.0, 103.0)
    assert json.loads(position[8]) == {"last_price": 104.0, "realized_pnl": 0.0}
    assert verify_audit(db_path).ok
