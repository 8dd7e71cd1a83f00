"""Hash-chained, append-only audit log.

Every row carries ``hash = sha256(prev_hash + canonical(row))`` (hex), where ``prev_hash`` is
the previous row's hash (64 zeros for the first row) and ``canonical`` joins the row's fields
``seq, ts_ns, run_id, kind, client_order_id, symbol, status, quantity, price, detail`` with
``"\\x1f"``: ints in decimal, floats as ``repr`` (shortest round-trip form), ``None`` as ``""``.
If a text field itself contains ``"\\x1f"``, the fields are backslash-escaped and the string is
prefixed with ``"E"`` (``seq`` is an integer, so plain strings never start with ``"E"``): the
encoding stays injective, so text cannot be shifted from one field into another unnoticed.

Triggers reject ``UPDATE`` and ``DELETE`` on ``audit_log``. The ``audit_head`` table holds the
latest ``(seq, hash)``, written in the same transaction as the rows it covers.
:func:`verify_audit` recomputes the chain and reports, by ``seq``:

- an edited row: its stored hash does not match its content;
- a deleted row: a gap in ``seq`` and a ``prev_hash`` that does not link;
- an inserted or reordered row: a ``prev_hash`` that does not link or a hash that does not
  match (``seq`` is hashed, so moving a row changes its hash);
- rows deleted from, or appended to, the end: the last row differs from ``audit_head``.

Limit: the chain is not anchored outside the database. Someone who can write the file, drop
the triggers and rewrite every hash from the first changed row onwards *and* ``audit_head``
produces a chain that verifies. Publishing the head hash elsewhere (a run summary, a report,
a log shipped off the machine) and comparing it later turns such a rewrite into a detectable
mismatch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any

from ultrathink.errors import AuditError
from ultrathink.persistence.db import connect, insert_many

GENESIS_HASH = "0" * 64
MAX_PROBLEMS = 1000

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

_SEP = "\x1f"
_N_FIELDS = 10
_INSERT_HEAD = (
    "INSERT INTO audit_log (seq, ts_ns, run_id, kind, client_order_id, symbol, status, "
    "quantity, price, detail, prev_hash, hash)"
)
_UPSERT_HEAD = (
    "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash"
)
_SELECT_CHAIN = (
    "SELECT seq, ts_ns, run_id, kind, client_order_id, symbol, status, quantity, price, "
    "detail, prev_hash, hash FROM audit_log ORDER BY seq"
)


@dataclass(frozen=True)
class AuditReport:
    """Result of :func:`verify_audit`.

    Attributes
    ----------
    ok : bool
        True when the chain and its head are intact.
    n_rows : int
        Number of audit rows checked.
    problems : list of str
        One message per problem found, naming the ``seq`` (at most ``MAX_PROBLEMS``).
    last_seq : int
        ``seq`` of the last row (0 when empty).
    last_hash : str
        Hash of the last row: publish it to anchor the chain.
    """

    ok: bool
    n_rows: int
    problems: list[str] = field(default_factory=list)
    last_seq: int = 0
    last_hash: str = GENESIS_HASH


def canonical(fields: Sequence[object]) -> str:
    """Return the canonical text of a row's hashed fields (see the module docstring)."""
    text = _SEP.join(["" if v is None else str(v) for v in fields])
    if text.count(_SEP) != len(fields) - 1:
        text = "E" + _SEP.join(["" if v is None else _escape(str(v)) for v in fields])
    return text


def row_hash(prev_hash: str, fields: Sequence[object]) -> str:
    """Return the hex sha256 of ``prev_hash`` followed by the canonical row text."""
    return sha256((prev_hash + canonical(fields)).encode()).hexdigest()


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
    seq, prev = chained[-1][0], chained[-1][11]
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
        if text.count(_SEP) != _N_FIELDS - 1:
            fields = (seq, ts_ns, run_id, kind, order_id, symbol, status, qty, price, detail)
            text = prev + canonical(fields)
        digest = sha256(text.encode()).hexdigest()
        append(
            (seq, ts_ns, run_id, kind, order_id, symbol, status, qty, price, detail, prev, digest)
        )
        prev = digest
    return out


def verify_audit(source: str | Path | sqlite3.Connection) -> AuditReport:
    """Recompute the audit chain and report every break, by ``seq``.

    Rows are streamed from a cursor, so memory stays flat for any size of log.

    Parameters
    ----------
    source : str, Path or sqlite3.Connection
        Database file (opened and closed here) or an open connection.

    Returns
    -------
    AuditReport
        ``ok`` is true when no problem was found.

    Raises
    ------
    PersistenceError
        If the database does not exist, is not SQLite or has no audit log.
    """
    if isinstance(source, sqlite3.Connection):
        return _verify(source)
    conn = connect(source, create=False)
    try:
        return _verify(conn)
    finally:
        conn.close()


class _Problems(list[str]):
    # Keeps the first MAX_PROBLEMS messages and counts the rest: memory stays flat.
    n_dropped = 0

    def add(self, message: str) -> None:
        if len(self) < MAX_PROBLEMS:
            self.append(message)
        else:
            self.n_dropped += 1


def _verify(conn: sqlite3.Connection) -> AuditReport:
    problems = _Problems()
    n_rows, prev_seq, prev_hash = 0, 0, GENESIS_HASH
    try:
        cursor = conn.execute(_SELECT_CHAIN)
    except sqlite3.Error as exc:
        raise AuditError(
            f"cannot read the audit log: {exc}; is this an ultrathink database?"
        ) from exc
    for row in cursor:
        n_rows += 1
        seq, stored_prev, stored_hash = row[0], row[10], row[11]
        if seq != prev_seq + 1:
            n_missing = seq - prev_seq - 1
            problems.add(f"seq {seq}: gap after seq {prev_seq} ({n_missing} row(s) missing)")
        if stored_prev != prev_hash:
            problems.add(
                f"seq {seq}: prev_hash does not link to the hash of seq {prev_seq} "
                "(row deleted, inserted or reordered)"
            )
        if row_hash(stored_prev, row[:_N_FIELDS]) != stored_hash:
            problems.add(f"seq {seq}: hash does not match the row's content (row edited)")
        prev_seq, prev_hash = seq, stored_hash
    for message in _check_head(conn, n_rows, prev_seq, prev_hash):
        problems.add(message)
    messages = list(problems)
    if problems.n_dropped:
        messages.append(f"... and {problems.n_dropped} more problems")
    return AuditReport(not messages, n_rows, messages, prev_seq, prev_hash)


def _check_head(conn: sqlite3.Connection, n_rows: int, last_seq: int, last_hash: str) -> list[str]:
    try:
        head = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
    except sqlite3.Error as exc:
        return [f"audit_head cannot be read: {exc}"]
    if head is None:
        return [f"audit_head is missing but audit_log has {n_rows} rows"] if n_rows else []
    if head[0] != last_seq or head[1] != last_hash:
        return [
            f"audit_head is at seq {head[0]} but the last row is seq {last_seq}: rows were "
            f"deleted from the end, or appended without moving the head"
            if head[0] != last_seq
            else f"seq {last_seq}: hash differs from audit_head (last row replaced)"
        ]
    return []
