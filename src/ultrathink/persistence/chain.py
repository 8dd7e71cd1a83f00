"""The hash chain of the audit log: canonical row text, row hashes, appending.

Every row carries ``hash = sha256(prev_hash + canonical(row))`` (hex), where ``prev_hash`` is
the previous row's hash (64 zeros for the first row) and ``canonical`` joins the row's fields
``seq, ts_ns, run_id, kind, client_order_id, symbol, status, quantity, price, detail`` with
``"\\x1f"``: ints in decimal, floats as ``repr`` (shortest round-trip form), ``None`` as ``""``.
If a text field itself contains ``"\\x1f"``, the fields are backslash-escaped and the string is
prefixed with ``"E"`` (``seq`` is an integer, so plain strings never start with ``"E"``): the
encoding stays injective, so text cannot be shifted from one field into another unnoticed.

This form is the same for every kind of row and for rows written by every schema version:
the economic rows of audit format 2 (:mod:`ultrathink.persistence.audit_format`) put what has
no column of its own into ``detail``, so the chain of a store written before them verifies
unchanged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from hashlib import sha256
from typing import Any

from ultrathink.errors import AuditError
from ultrathink.persistence.db import insert_many

GENESIS_HASH = "0" * 64

# (ts_ns, run_id, kind, client_order_id, symbol, status, quantity, price, detail)
AuditRow = tuple[
    int | None,
    int | None,
    str,
    str | None,
    str | None,
    str | None,
    float | None,
    float | None,
    str | None,
]

# Columns of a stored row, in hashing order, then prev_hash and hash.
CHAIN_COLUMNS = (
    "seq, ts_ns, run_id, kind, client_order_id, symbol, status, quantity, price, detail, "
    "prev_hash, hash"
)
N_FIELDS = 10  # hashed fields of a stored row: CHAIN_COLUMNS without prev_hash and hash
PREV_HASH, HASH = 10, 11  # positions of prev_hash and hash in a stored row

_SEP = "\x1f"
_INSERT_HEAD = f"INSERT INTO audit_log ({CHAIN_COLUMNS})"
_UPSERT_HEAD = (
    "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash"
)


def canonical(fields: Sequence[object]) -> str:
    """Return the canonical text of a row's hashed fields (see the module docstring)."""
    text = _SEP.join(["" if v is None else str(v) for v in fields])
    if text.count(_SEP) != len(fields) - 1:
        text = "E" + _SEP.join(["" if v is None else _escape(str(v)) for v in fields])
    return text


def row_hash(prev_hash: str, fields: Sequence[object]) -> str:
    """Return the hex sha256 of ``prev_hash`` followed by the canonical row text."""
    return sha256((prev_hash + canonical(fields)).encode()).hexdigest()


def is_intact(row: Sequence[Any]) -> bool:
    """Return whether a stored row (``CHAIN_COLUMNS``) still hashes to its ``hash``."""
    return stored_row_hash(row) == row[HASH]


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(_SEP, "\\x1f")


def read_head(conn: sqlite3.Connection) -> tuple[int, str]:
    """Return ``(seq, hash)`` of the chain's head, ``(0, GENESIS_HASH)`` when empty.

    Raises
    ------
    AuditError
        If ``audit_head`` is missing while ``audit_log`` has rows (tampering).
    """
    row = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
    if row is not None:
        return int(row[0]), str(row[1])
    if conn.execute("SELECT 1 FROM audit_log LIMIT 1").fetchone() is not None:
        raise AuditError(
            "audit_head is missing but audit_log has rows; the log was tampered with: "
            "run `ultrathink audit verify` and restore the database from a backup"
        )
    return 0, GENESIS_HASH


def append_audit(conn: sqlite3.Connection, rows: Sequence[AuditRow]) -> tuple[int, str]:
    """Append rows to the audit chain, continuing from its head, and move the head.

    Call inside a transaction that holds the write lock (``BEGIN IMMEDIATE``): the head is
    read and written in that transaction, so concurrent appenders cannot fork the chain.

    Parameters
    ----------
    conn : sqlite3.Connection
        Connection with an open write transaction.
    rows : sequence of AuditRow
        ``(ts_ns, run_id, kind, client_order_id, symbol, status, quantity, price, detail)``:
        plain ``int``, ``float``, ``str`` or ``None`` (not enum members: their text differs
        from the value SQLite stores). Quantities and prices are stored as REAL, NaN as NULL.

    Returns
    -------
    tuple of (int, str)
        The new head ``(seq, hash)``.
    """
    seq, prev = read_head(conn)
    if not rows:
        return seq, prev
    chained = _chain(seq, prev, rows)
    seq, prev = chained[-1][0], chained[-1][HASH]
    insert_many(conn, _INSERT_HEAD, 12, chained)
    conn.execute(_UPSERT_HEAD, (seq, prev))
    return seq, prev


def _chain(seq: int, prev: str, rows: Sequence[AuditRow]) -> list[tuple[Any, ...]]:
    # Hot path of the writer: one f-string and one sha256 per row, no per-field calls.
    out: list[tuple[Any, ...]] = []
    append = out.append
    for ts_ns, run_id, kind, order_id, symbol, status, qty, price, detail in rows:
        seq += 1
        # Hash what SQLite gives back: REAL, NaN -> NULL, -0.0 -> 0.0.
        if qty is not None:
            qty = float(qty) + 0.0 if qty == qty else None
        if price is not None:
            price = float(price) + 0.0 if price == price else None
        # For int, float and str values this is prev + canonical(fields).
        text = (
            f"{prev}{seq}\x1f{'' if ts_ns is None else ts_ns}\x1f{'' if run_id is None else run_id}"
            f"\x1f{kind}\x1f{'' if order_id is None else order_id}"
            f"\x1f{'' if symbol is None else symbol}\x1f{'' if status is None else status}"
            f"\x1f{'' if qty is None else qty}\x1f{'' if price is None else price}"
            f"\x1f{'' if detail is None else detail}"
        )
        if text.count(_SEP) != N_FIELDS - 1:
            fields = (seq, ts_ns, run_id, kind, order_id, symbol, status, qty, price, detail)
            text = prev + canonical(fields)
        digest = sha256(text.encode()).hexdigest()
        append(
            (seq, ts_ns, run_id, kind, order_id, symbol, status, qty, price, detail, prev, digest)
        )
        prev = digest
    return out


def stored_row_hash(row: Sequence[Any]) -> str:
    """Return the hash a stored row (``CHAIN_COLUMNS``) should carry, from its own prev_hash.

    The fast form of :func:`row_hash` for rows read back from SQLite (plain ``int``,
    ``float``, ``str`` and ``None`` values): verification calls it once per row.
    """
    seq, ts_ns, run_id, kind, order_id, symbol, status, qty, price, detail, prev = row[:11]
    text = (
        f"{prev}{seq}\x1f{'' if ts_ns is None else ts_ns}\x1f{'' if run_id is None else run_id}"
        f"\x1f{'' if kind is None else kind}\x1f{'' if order_id is None else order_id}"
        f"\x1f{'' if symbol is None else symbol}\x1f{'' if status is None else status}"
        f"\x1f{'' if qty is None else qty}\x1f{'' if price is None else price}"
        f"\x1f{'' if detail is None else detail}"
    )
    if text.count(_SEP) != N_FIELDS - 1 or type(prev) is not str:
        return row_hash(str(prev), row[:N_FIELDS])
    return sha256(text.encode()).hexdigest()
