"""Cross-checks of the store's tables against the audit chain (part of ``verify_audit``).

The chain proves the audit rows were not edited; these checks prove the tables still say
what the audit rows say:

- ``runs``: each run has one ``run.created`` row matching its kind, strategy, data, code
  version, start and the hashes of its params/config; a finished run's status, end and
  summary JSON (sha256) match its last ``run.finished`` row; a running run's last lifecycle
  row is not a ``run.finished``;
- ``orders`` and ``fills``: see :mod:`ultrathink.persistence.crosscheck_orders`;
- ``equity_chunks``: each chunk matches the n_rows, first/last timestamp and blob sha256 of
  its ``equity.chunk`` row, and each such row has its chunk;
- ``positions``: each position matches its last ``position`` row, and vice versa;
- a store with runs but an empty chain is reported once, instead of once per row.

Runs created before schema 2 (``audit_legacy``; every run of a schema-1 store opened
read-only) have no economic rows: only their orders are checked, against the order events
and risk decisions schema 1 audited. Every check streams its tables in key order
(:mod:`ultrathink.persistence.merge`): memory holds one run's chunk rows at most.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from ultrathink.persistence.audit_format import (
    EQUITY_CHUNK,
    POSITION,
    RUN_CREATED,
    RUN_FINISHED,
    blobs_sha256,
    parse_detail,
    run_created_detail,
    run_finished_detail,
)
from ultrathink.persistence.chain import CHAIN_COLUMNS, is_intact
from ultrathink.persistence.crosscheck_orders import (
    DETAIL,
    KIND,
    PRICE,
    QTY,
    RUN,
    SEQ,
    STATUS,
    SYMBOL,
    TS,
    Report,
    check_orders,
    diffs,
)
from ultrathink.persistence.db import schema_version
from ultrathink.persistence.merge import Row, int_key, int_str_key, key_values, merge_groups

# The economic rows of one kind are few (per run: a few lifecycle rows, one row per chunk
# or position): a table scan and a sort of those rows beats walking the whole run index.
_RUNS_SQL = (
    "SELECT run_id, kind, strategy, params_json, config_json, data_name, data_hash, "
    "code_version, started_ns, ended_ns, status, summary_json FROM runs ORDER BY run_id"
)
_RUN_AUDIT_SQL = (
    f"SELECT {CHAIN_COLUMNS} FROM audit_log NOT INDEXED WHERE kind IN "
    "('run.created', 'run.finished', 'run.reopened') AND status IS NOT NULL "
    "ORDER BY run_id, seq"
)
_CHUNKS_SQL = (
    "SELECT run_id, chunk_no, n_rows, ts_blob, equity_blob, cash_blob FROM equity_chunks "
    "ORDER BY run_id, chunk_no"
)
_CHUNK_AUDIT_SQL = (
    f"SELECT {CHAIN_COLUMNS} FROM audit_log NOT INDEXED WHERE kind = '{EQUITY_CHUNK}' "
    "AND quantity IS NOT NULL ORDER BY run_id, seq"
)
_POSITIONS_SQL = (
    "SELECT run_id, symbol, quantity, avg_price, realized_pnl, last_price FROM positions "
    "ORDER BY run_id, symbol"
)
_POSITION_AUDIT_SQL = (
    f"SELECT {CHAIN_COLUMNS} FROM audit_log NOT INDEXED WHERE kind = '{POSITION}' "
    "AND symbol IS NOT NULL ORDER BY run_id, symbol, seq"
)
_RUN_COLUMNS = ("kind", "strategy", "params_json", "config_json", "data_name", "data_hash",
                "code_version")  # fmt: skip


@dataclass
class CrossCheck:
    """What :func:`check_tables` checked (``counts``) and what the caller should know."""

    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def check_tables(conn: sqlite3.Connection, report: Report, n_audit_rows: int) -> CrossCheck:
    """Cross-check every table against the audit chain; ``report`` gets each problem."""
    result = CrossCheck()
    n_runs = int(conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
    result.counts["runs"] = n_runs
    if n_runs and not n_audit_rows:
        report(
            f"the audit chain is empty but the store has {n_runs} run(s): the audit rows were "
            "deleted, or the runs were written behind the audit's back"
        )
        return result
    legacy = _check_runs(conn, report, _legacy_max_run_id(conn, report))
    if legacy:
        listed = ", ".join(str(r) for r in sorted(legacy)[:10]) + (", ..." * (len(legacy) > 10))
        result.notes.append(
            f"{len(legacy)} run(s) ({listed}) predate the economic audit (schema 2): only their "
            "orders were cross-checked, against their order events and risk decisions"
        )
    n_orders, n_fills = check_orders(conn, report, legacy)
    result.counts.update(orders=n_orders, fills=n_fills)
    result.counts["equity_chunks"] = _check_equity(conn, report, legacy)
    result.counts["positions"] = _check_positions(conn, report, legacy)
    return result


def _legacy_max_run_id(conn: sqlite3.Connection, report: Report) -> float:
    if schema_version(conn) < 2:
        return math.inf  # a schema-1 store opened read-only: no run has economic rows
    try:
        row = conn.execute("SELECT max_run_id FROM audit_legacy WHERE id = 1").fetchone()
    except sqlite3.OperationalError:
        row = None
    if row is None:
        report("audit_legacy is missing (migration 2 writes it once): the schema was tampered with")
        return 0
    return float(row[0])


def _check_runs(conn: sqlite3.Connection, report: Report, legacy_max: float) -> set[Any]:
    legacy: set[Any] = set()
    groups = merge_groups(
        (conn.execute(_RUNS_SQL), lambda r: int_key(r[0])),
        (conn.execute(_RUN_AUDIT_SQL), lambda r: int_key(r[RUN])),
    )
    for key, (runs, audits) in groups:
        run, rows = next(runs, None), list(audits)
        [run_id] = key_values(key)
        created = [r for r in rows if r[KIND] == RUN_CREATED]
        if run is None:
            if is_intact(rows[0]):
                report(f"run {run_id}: audited (seq {rows[0][SEQ]}) but missing from runs")
        elif not created:
            if isinstance(run_id, int) and run_id <= legacy_max:
                legacy.add(run_id)
            else:
                report(
                    f"run {run_id}: no run.created audit row; the run was inserted behind the "
                    "audit's back, or its audit rows were deleted"
                )
        else:
            if len(created) > 1 and is_intact(created[1]):
                report(f"run {run_id}: a second run.created audit row (seq {created[1][SEQ]})")
            _check_created(run, created[0], report)
            _check_outcome(run, rows[-1], report)
    return legacy


def _check_created(run: Row, row: Row, report: Report) -> None:
    audited = parse_detail(row[DETAIL]) or {}
    expected = run_created_detail(dict(zip(_RUN_COLUMNS, run[1:8], strict=True)))
    pairs = [(name, value, audited.get(name)) for name, value in expected.items()]
    text = diffs([*pairs, ("started_ns", run[8], row[TS])])
    if text and is_intact(row):
        report(f"run {run[0]}: {text} (runs vs its run.created audit row, seq {row[SEQ]})")


def _check_outcome(run: Row, last: Row, report: Report) -> None:
    run_id, ended_ns, status, summary_json = run[0], run[9], run[10], run[11]
    if not is_intact(last):
        return
    if last[KIND] != RUN_FINISHED:
        if status != "running":
            report(
                f"run {run_id}: status {status!r} but its last lifecycle audit row (seq "
                f"{last[SEQ]}, {last[KIND]}) says it is running: no run.finished row"
            )
        return
    audited = parse_detail(last[DETAIL]) or {}
    actual = run_finished_detail(summary_json)
    text = diffs([("status", status, last[STATUS]), ("ended_ns", ended_ns, last[TS])])
    if actual["summary_sha256"] != audited.get("summary_sha256"):  # the figures say what
        del actual["summary_sha256"]
        figures = diffs([(k, v, audited.get(k)) for k, v in actual.items()])
        text = ", ".join(filter(None, [text, "summary_json differs", figures]))
    if text:
        report(f"run {run_id}: {text} (runs vs its run.finished audit row, seq {last[SEQ]})")


def _check_equity(conn: sqlite3.Connection, report: Report, legacy: set[Any]) -> int:
    n_chunks = 0
    groups = merge_groups(
        (conn.execute(_CHUNKS_SQL), lambda r: int_key(r[0])),
        (conn.execute(_CHUNK_AUDIT_SQL), lambda r: int_key(r[RUN])),
    )
    for key, (chunks, audits) in groups:
        [run_id] = key_values(key)
        if run_id in legacy:
            continue
        audited: dict[Any, tuple[Row, dict[str, Any]]] = {}
        n_unreadable = 0  # edited rows without a readable chunk_no stand for a missing one
        for row in audits:
            detail = parse_detail(row[DETAIL]) or {}
            if "chunk_no" not in detail and not is_intact(row):
                n_unreadable += 1
            else:
                audited.setdefault(detail.get("chunk_no"), (row, detail))
        for chunk in chunks:
            n_chunks += 1
            entry = audited.pop(chunk[1], None)
            where = f"run {run_id} equity chunk {chunk[1]}"
            if entry is not None:
                _check_chunk(where, chunk, *entry, report)
            elif n_unreadable:
                n_unreadable -= 1
            else:
                report(f"{where}: no equity.chunk audit row (inserted behind the audit's back?)")
        for chunk_no, (row, _) in audited.items():
            if is_intact(row):
                report(
                    f"run {run_id} equity chunk {chunk_no}: audited (seq {row[SEQ]}) but "
                    "missing from equity_chunks (chunk deleted)"
                )
    return n_chunks


def _check_chunk(where: str, chunk: Row, row: Row, detail: dict[str, Any], report: Report) -> None:
    n_rows, blobs = chunk[2], chunk[3:6]
    text = diffs([("n_rows", n_rows, detail.get("n_rows"))])
    if any(not isinstance(b, bytes) or len(b) != 8 * n_rows for b in blobs):
        text = ", ".join(filter(None, [text, f"blob lengths are not 8 x n_rows = {8 * n_rows}"]))
    elif blobs_sha256(*blobs) != detail.get("sha256"):
        text = ", ".join(filter(None, [text, "timestamps, equity or cash differ (sha256)"]))
    if text and is_intact(row):
        report(f"{where}: {text} (equity_chunks vs its equity.chunk audit row, seq {row[SEQ]})")


def _check_positions(conn: sqlite3.Connection, report: Report, legacy: set[Any]) -> int:
    n_positions = 0
    groups = merge_groups(
        (conn.execute(_POSITIONS_SQL), lambda r: int_str_key(r[0], r[1])),
        (conn.execute(_POSITION_AUDIT_SQL), lambda r: int_str_key(r[RUN], r[SYMBOL])),
    )
    for key, (positions, audits) in groups:
        run_id, symbol = key_values(key)
        position, rows = next(positions, None), list(audits)
        n_positions += position is not None
        where = f"run {run_id} position {symbol}"
        if run_id in legacy:
            continue
        if not rows:
            report(f"{where}: no position audit row (written behind the audit's back?)")
        elif position is None:
            if is_intact(rows[-1]):
                report(f"{where}: audited (seq {rows[-1][SEQ]}) but missing from positions")
        else:
            last = rows[-1]
            detail = parse_detail(last[DETAIL]) or {}
            text = diffs([
                ("quantity", position[2], last[QTY]), ("avg_price", position[3], last[PRICE]),
                ("realized_pnl", position[4], detail.get("realized_pnl")),
                ("last_price", position[5], detail.get("last_price")),
            ])  # fmt: skip
            if text and is_intact(last):
                report(f"{where}: {text} (positions vs its last position audit row, seq "
                       f"{last[SEQ]})")  # fmt: skip
    return n_positions
