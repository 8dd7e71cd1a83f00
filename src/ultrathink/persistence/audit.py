"""Hash-chained, append-only audit log, and its verification against the tables.

The chain (:mod:`ultrathink.persistence.chain`): every row carries ``hash = sha256(prev_hash +
canonical(row))``. Triggers reject ``UPDATE`` and ``DELETE`` on ``audit_log``. The
``audit_head`` table holds the latest ``(seq, hash)``, written in the same transaction as the
rows it covers. Since schema 2 the chain also carries the economic record: every fill, equity
chunk, position and run lifecycle step (:mod:`ultrathink.persistence.audit_format`).

:func:`verify_audit` recomputes the chain and reports, by ``seq``:

- an edited row: its stored hash does not match its content;
- a deleted row: a gap in ``seq`` and a ``prev_hash`` that does not link;
- an inserted or reordered row: a ``prev_hash`` that does not link or a hash that does not
  match (``seq`` is hashed, so moving a row changes its hash);
- rows deleted from, or appended to, the end: the last row differs from ``audit_head``;

then cross-checks the tables against the audit rows (:mod:`ultrathink.persistence.crosscheck`),
reporting by run, order, fill, chunk or position: a fill, order, equity chunk, position or
run summary changed, added or deleted behind the audit's back; a store whose runs have no
audit trail at all.

Limit: the chain is not anchored outside the database. Someone who can write the file, drop
the triggers and rewrite every hash from the first changed row onwards *and* ``audit_head``
(and make the tables agree) produces a store that verifies. Publishing a head hash elsewhere
(a run summary, a report, a log shipped off the machine) and passing it later as
``expect_head`` turns such a rewrite into a detectable mismatch.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path

from ultrathink.errors import AuditError, ConfigError
from ultrathink.persistence.chain import (
    CHAIN_COLUMNS,
    GENESIS_HASH,
    N_FIELDS,
    AuditRow,
    append_audit,
    canonical,
    read_head,
    row_hash,
    stored_row_hash,
)
from ultrathink.persistence.crosscheck import check_tables
from ultrathink.persistence.db import connect, database_path

__all__ = [
    "GENESIS_HASH",
    "MAX_PROBLEMS",
    "AuditReport",
    "AuditRow",
    "append_audit",
    "canonical",
    "read_head",
    "row_hash",
    "verify_audit",
]

MAX_PROBLEMS = 1000

_SELECT_CHAIN = f"SELECT {CHAIN_COLUMNS} FROM audit_log ORDER BY seq"
_HASH_TEXT = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class AuditReport:
    """Result of :func:`verify_audit`.

    Attributes
    ----------
    ok : bool
        True when the chain, its head and the tables agree (and ``expect_head`` was found).
    n_rows : int
        Number of audit rows checked.
    problems : list of str
        One message per problem found, naming the ``seq``, run, order, fill, chunk or
        position (at most ``MAX_PROBLEMS``, then a count of the rest).
    last_seq : int
        ``seq`` of the last row (0 when empty).
    last_hash : str
        Hash of the last row: publish it to anchor the chain.
    anchor_seq : int or None
        ``seq`` of the row whose hash is ``expect_head`` (0 for the genesis hash), None
        when no ``expect_head`` was given or it was not found.
    counts : dict of str to int
        What was cross-checked: ``runs, orders, fills, equity_chunks, positions``.
    notes : list of str
        Facts that are not problems, e.g. runs that predate the economic audit.
    """

    ok: bool
    n_rows: int
    problems: list[str] = field(default_factory=list)
    last_seq: int = 0
    last_hash: str = GENESIS_HASH
    anchor_seq: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def verify_audit(
    source: str | Path | sqlite3.Connection, *, expect_head: str | None = None
) -> AuditReport:
    """Recompute the audit chain, cross-check the tables, and report every problem found.

    Rows are streamed from cursors in one read transaction (one consistent snapshot, even
    while a writer appends): memory stays flat for any size of store.

    Parameters
    ----------
    source : str, Path or sqlite3.Connection
        Database file (opened read-only and closed here) or an open connection.
    expect_head : str, optional
        A head hash kept outside the store (from an earlier ``audit verify``, a run
        summary's ``audit_head``): the chain must contain a row with this hash, i.e. the
        rows up to it are exactly those that were anchored. Rows appended since are fine.

    Returns
    -------
    AuditReport
        ``ok`` is true when no problem was found.

    Raises
    ------
    ConfigError
        If ``expect_head`` is not 64 hexadecimal digits.
    PersistenceError
        If the file does not exist, is a directory, or is not SQLite.
    AuditError
        If the database has no audit log or is damaged (unreadable pages).
    """
    anchor = _check_expect_head(expect_head)
    if isinstance(source, sqlite3.Connection):
        return _verify_snapshot(source, anchor)
    conn = connect(source, readonly=True)
    try:
        return _verify_snapshot(conn, anchor)
    finally:
        conn.close()


def _check_expect_head(expect_head: str | None) -> str | None:
    if expect_head is None:
        return None
    anchor = expect_head.strip().lower()
    if not _HASH_TEXT.fullmatch(anchor):
        raise ConfigError(
            f"expect_head must be the 64 hexadecimal digits of an audit hash (as "
            f"`ultrathink audit verify` prints it), was {expect_head!r}"
        )
    return anchor


class _Problems(list[str]):
    # Keeps the first MAX_PROBLEMS messages and counts the rest: memory stays flat.
    n_dropped = 0

    def add(self, message: str) -> None:
        if len(self) < MAX_PROBLEMS:
            self.append(message)
        else:
            self.n_dropped += 1


def _verify_snapshot(conn: sqlite3.Connection, anchor: str | None) -> AuditReport:
    own_transaction = not conn.in_transaction
    try:
        if own_transaction:
            conn.execute("BEGIN")  # deferred: one read snapshot for every statement below
        try:
            return _verify(conn, anchor)
        finally:
            if own_transaction and conn.in_transaction:
                conn.execute("ROLLBACK")
    except sqlite3.DatabaseError as exc:
        raise AuditError(
            f"cannot verify {database_path(conn)}: {exc}; the file is damaged or not an "
            "ultrathink store: restore it from a backup, or check the --db path"
        ) from exc


def _verify(conn: sqlite3.Connection, anchor: str | None) -> AuditReport:
    problems = _Problems()
    try:
        cursor = conn.execute(_SELECT_CHAIN)
    except sqlite3.OperationalError as exc:
        raise AuditError(
            f"cannot read the audit log: {exc}; is this an ultrathink database?"
        ) from exc
    n_rows, last_seq, last_hash, anchor_seq = _check_chain(cursor, problems, anchor)
    for message in _check_head(conn, n_rows, last_seq, last_hash):
        problems.add(message)
    if anchor is not None and anchor_seq is None:
        problems.add(
            f"expected head {anchor} is not in the chain: the log was rewritten or truncated "
            "since that hash was published, or it belongs to another store"
        )
    checked = check_tables(conn, problems.add, n_rows)
    messages = list(problems)
    if problems.n_dropped:
        messages.append(f"... and {problems.n_dropped} more problems")
    return AuditReport(
        not messages, n_rows, messages, last_seq, last_hash, anchor_seq, checked.counts,
        checked.notes,
    )  # fmt: skip


def _check_chain(
    cursor: sqlite3.Cursor, problems: _Problems, anchor: str | None
) -> tuple[int, int, str, int | None]:
    n_rows, prev_seq, prev_hash = 0, 0, GENESIS_HASH
    anchor_seq = 0 if anchor == GENESIS_HASH else None
    for row in cursor:
        n_rows += 1
        seq, ts_ns, run_id, kind, order_id, symbol, status, qty, price, detail, stored_prev, h = row
        if seq != prev_seq + 1:
            n_missing = seq - prev_seq - 1
            problems.add(f"seq {seq}: gap after seq {prev_seq} ({n_missing} row(s) missing)")
        if stored_prev != prev_hash:
            problems.add(
                f"seq {seq}: prev_hash does not link to the hash of seq {prev_seq} "
                "(row deleted, inserted or reordered)"
            )
        # Inline form of stored_row_hash for plain values (one call per row is measurable).
        text = (
            f"{stored_prev}{seq}\x1f{'' if ts_ns is None else ts_ns}"
            f"\x1f{'' if run_id is None else run_id}\x1f{kind}"
            f"\x1f{'' if order_id is None else order_id}\x1f{'' if symbol is None else symbol}"
            f"\x1f{'' if status is None else status}\x1f{'' if qty is None else qty}"
            f"\x1f{'' if price is None else price}\x1f{'' if detail is None else detail}"
        )
        if text.count("\x1f") == N_FIELDS - 1 and type(stored_prev) is str:
            digest = sha256(text.encode()).hexdigest()
        else:
            digest = stored_row_hash(row)
        if digest != h:
            problems.add(f"seq {seq}: hash does not match the row's content (row edited)")
        if h == anchor:
            anchor_seq = seq
        prev_seq, prev_hash = seq, h
    return n_rows, prev_seq, prev_hash, anchor_seq


def _check_head(conn: sqlite3.Connection, n_rows: int, last_seq: int, last_hash: str) -> list[str]:
    try:
        head = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
    except sqlite3.OperationalError as exc:
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
