"""Property: any sequence of batches verifies; any single edit or deletion is caught."""

from __future__ import annotations

import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ultrathink.persistence import Store, verify_audit
from ultrathink.persistence.apply import write_batch
from ultrathink.persistence.db import connect

TEXT_COLUMNS = ("kind", "client_order_id", "symbol", "status", "detail", "prev_hash", "hash")
NUMBER_COLUMNS = ("ts_ns", "run_id", "quantity", "price")

# free-form rows may use the kinds of economic rows: the verifier tells them apart
_KINDS = ["run.started", "op.note", "breaker.OPEN", "fill", "run.finished", "equity.chunk",
          "position", "run.created"]  # fmt: skip
_extra = st.tuples(
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from(_KINDS),
    st.text(alphabet=st.sampled_from("ab \x1f\\é\n"), max_size=6),
)
_batch_spec = st.tuples(
    st.sampled_from([1, 2]),  # run
    st.integers(0, 4),  # orders
    st.booleans(),  # filled
    st.lists(_extra, max_size=2),
)


def _write(conn: sqlite3.Connection, specs, order_batch) -> None:
    next_order = {1: 0, 2: 0}
    for run_id, n_orders, filled, extra in specs:
        batch = order_batch(run_id, next_order[run_id], n_orders, filled=filled)
        next_order[run_id] += n_orders
        write_batch(conn, batch._replace(audit_extra=extra))


def _tamper(conn: sqlite3.Connection, seq: int, action: str, column: str) -> None:
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("DROP TRIGGER audit_log_no_delete")
    if action == "delete":
        conn.execute("DELETE FROM audit_log WHERE seq = ?", (seq,))
    else:
        # A change of the stored value: NULL -> '' + 'x' or 0 + 1 changes it too.
        change = (
            f"COALESCE({column}, '') || 'x'"
            if column in TEXT_COLUMNS
            else f"COALESCE({column}, 0) + 1"
        )
        conn.execute(f"UPDATE audit_log SET {column} = {change} WHERE seq = ?", (seq,))


@settings(max_examples=40, deadline=None)
@given(specs=st.lists(_batch_spec, min_size=1, max_size=5), data=st.data())
def test_chain_verifies_and_any_single_tamper_is_detected(order_batch, specs, data) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.db"
        with Store(path) as store:  # runs 1 and 2, created through the audited path
            for kind in ("backtest", "paper"):
                store.create_run(kind, "s", {}, {}, "d", "h", "v", 0)
        with closing(connect(path)) as conn:
            _write(conn, specs, order_batch)
            clean = verify_audit(conn)
            n_rows = clean.n_rows
            seq = data.draw(st.integers(1, n_rows), label="seq")
            action = data.draw(st.sampled_from(["edit", "delete"]), label="action")
            column = data.draw(st.sampled_from(TEXT_COLUMNS + NUMBER_COLUMNS), label="column")
            _tamper(conn, seq, action, column)
            tampered = verify_audit(conn)

    assert clean.ok, clean.problems
    assert not tampered.ok
    assert any(f"seq {seq}" in p or f"seq {seq + 1}" in p or "audit_head" in p
               for p in tampered.problems)  # fmt: skip
