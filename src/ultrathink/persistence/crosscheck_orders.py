"""Cross-check of ``orders`` and ``fills`` against their audit rows (part of verify_audit).

The three sources are streamed in ``(run_id, client_order_id)`` order (each in the order of
a primary key or index, so SQLite does not sort) and merged one order at a time: memory
holds one order's rows, whatever the size of the store. For every order:

- its request (symbol, quantity, side, type, limit/stop, time in force) matches its risk
  decision row;
- its status, filled quantity and reason match its last audited state: the last
  ``order.<STATUS>`` row, or ``risk.denied`` (a DENIED order must have one); an order
  without any such row must still be ``NEW``;
- (audit format 2) each of its fills has exactly one ``fill`` audit row with the same id,
  time, symbol, side, quantity, price, fee and slippage, and each ``fill`` row a fill;
- its fills do not exceed its quantity, sum to it when it is FILLED, and average to its
  ``avg_fill_price``.

A mismatch with an audit row whose own hash is broken is not reported again: the chain
check has named that row already.
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ultrathink.persistence.audit_format import FILL, fill_detail, parse_detail
from ultrathink.persistence.chain import CHAIN_COLUMNS, is_intact
from ultrathink.persistence.merge import Key, Row, int_str_key, key_values, merge_groups

# stored audit rows (CHAIN_COLUMNS)
SEQ, TS, RUN, KIND, OID, SYMBOL, STATUS, QTY, PRICE, DETAIL = range(10)
# orders rows (_ORDERS_SQL)
O_SYMBOL, O_SIDE, O_TYPE, O_QTY, O_LIMIT, O_STOP, O_TIF, O_STATUS, O_FILLED, O_AVG, O_REASON = (
    range(2, 13)
)
# fills rows (_FILLS_SQL)
F_ID, F_TS, F_SYMBOL, F_SIDE, F_QTY, F_PRICE, F_FEE, F_SLIP = range(2, 10)

_ORDERS_SQL = (
    "SELECT run_id, client_order_id, symbol, side, order_type, quantity, limit_price, "
    "stop_price, tif, status, filled_qty, avg_fill_price, reason FROM orders "
    "ORDER BY run_id, client_order_id"
)
_FILLS_SQL = (
    "SELECT run_id, client_order_id, fill_id, ts_ns, symbol, side, quantity, price, fee, "
    "slippage_bps FROM fills ORDER BY run_id, client_order_id"
)
_AUDIT_SQL = (
    f"SELECT {CHAIN_COLUMNS} FROM audit_log WHERE client_order_id IS NOT NULL "
    "AND (kind IN ('fill', 'risk.approved', 'risk.denied') OR kind GLOB 'order.*') "
    "ORDER BY run_id, client_order_id, seq"
)
_RISK_KINDS = ("risk.approved", "risk.denied")
_APPROVED = ("symbol", "quantity", "limit/stop price", "side/type/tif")
_STATE = ("status", "filled_qty", "reason")
_REL_TOL = 1e-9

Report = Callable[[str], None]


def check_orders(
    conn: sqlite3.Connection, report: Report, legacy_runs: set[Any]
) -> tuple[int, int]:
    """Cross-check every order and fill; return ``(n_orders, n_fills)`` checked."""
    n_orders = n_fills = 0
    groups = merge_groups(
        (conn.execute(_ORDERS_SQL), _table_key),
        (conn.execute(_FILLS_SQL), _table_key),
        (conn.execute(_AUDIT_SQL), _audit_key),
    )
    for key, (orders, fills, audits) in groups:
        order, fill_list, rows = next(orders, None), list(fills), list(audits)
        n_orders += order is not None
        n_fills += len(fill_list)
        run_id, oid = key_values(key)
        where = f"run {run_id} order {oid}"
        if order is None:
            _check_orphans(where, fill_list, rows, report)
            continue
        try:
            _check_order(where, order, fill_list, rows, report, run_id not in legacy_runs)
        except (TypeError, ValueError) as exc:  # a number that is text, and the like
            report(f"{where}: a value of the wrong type in orders, fills or audit ({exc})")
    return n_orders, n_fills


def _check_order(
    where: str, order: Row, fills: list[Row], rows: list[Row], report: Report, economic: bool
) -> None:
    found = _check_request(where, order, rows, report)
    found |= _check_state(where, order, rows, report)
    if economic:  # the run has audit format 2 rows: its fills are audited one by one
        found |= _check_fills(order[0], order[1], fills, rows, report)
    if not found:
        _check_fill_totals(where, order, fills, report)


def _table_key(row: Row) -> Key:
    return int_str_key(row[0], row[1])


def _audit_key(row: Row) -> Key:
    return int_str_key(row[RUN], row[OID])


def same(a: object, b: object) -> bool:
    """Equal, treating NaN as equal to NaN (stored values are compared exactly)."""
    return a == b or (a != a and b != b)


def close(a: float | None, b: float | None) -> bool:
    """Equal within the rounding of sums computed in a different order."""
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=_REL_TOL, abs_tol=_REL_TOL)


def diffs(pairs: Iterable[tuple[str, object, object]]) -> str:
    """Return ``"name actual vs audited expected, ..."`` for the pairs that differ."""
    return ", ".join(
        f"{name} {actual!r} vs audited {audited!r}"
        for name, actual, audited in pairs
        if not same(actual, audited)
    )


def compare(names: Sequence[str], actual: tuple[Any, ...], audited: tuple[Any, ...]) -> str:
    """Return :func:`diffs` of two tuples of values named ``names`` ("" when equal)."""
    if actual == audited:  # the common case, at C speed
        return ""
    return diffs(zip(names, actual, audited, strict=True))


def _check_orphans(where: str, fills: list[Row], rows: list[Row], report: Report) -> None:
    if rows and is_intact(rows[0]):
        seqs = ", ".join(str(r[SEQ]) for r in rows[:5])
        report(f"{where}: audited (seq {seqs}) but missing from orders (order deleted)")
    if fills:
        report(f"{where}: {len(fills)} fill(s) but the order is missing from orders")


def _check_request(where: str, order: Row, rows: list[Row], report: Report) -> bool:
    risk = None
    for r in rows:
        if r[KIND] in _RISK_KINDS:
            risk = r
            break
    if risk is None:
        if rows and is_intact(rows[0]):
            report(
                f"{where}: audited (seq {rows[0][SEQ]}) without a risk decision "
                "(no risk.approved or risk.denied row)"
            )
            return True
        return False
    limit = order[O_LIMIT] if order[O_LIMIT] is not None else order[O_STOP]
    if risk[KIND] == "risk.approved":
        request = f"{order[O_SIDE]} {order[O_TYPE]} {order[O_TIF]}"
        actual: tuple[Any, ...] = (order[O_SYMBOL], order[O_QTY], limit, request)
        text = compare(_APPROVED, actual, (risk[SYMBOL], risk[QTY], risk[PRICE], risk[DETAIL]))
    else:  # a denial of schema 1 carries no price
        audited_limit = limit if risk[PRICE] is None else risk[PRICE]
        actual = (order[O_SYMBOL], order[O_QTY], limit)
        text = compare(_APPROVED[:3], actual, (risk[SYMBOL], risk[QTY], audited_limit))
    if text and is_intact(risk):
        report(f"{where}: {text} (orders vs its {risk[KIND]} audit row, seq {risk[SEQ]})")
        return True
    return False


def _check_state(where: str, order: Row, rows: list[Row], report: Report) -> bool:
    last, denied = None, False
    for r in rows:
        kind = r[KIND]
        if kind == "risk.denied":
            last, denied = r, True
        elif kind[:6] == "order.":
            last = r
    status, filled, reason = order[O_STATUS], order[O_FILLED], order[O_REASON]
    if status == "DENIED" and not denied:
        report(f"{where}: status DENIED but it has no risk.denied audit row")
        return True
    if last is None:
        if (status, filled, reason) == ("NEW", 0.0, ""):
            return False
        report(
            f"{where}: status {status}, filled {filled!r}, but no audit row records an event "
            "or a risk decision for it (changed behind the audit's back)"
        )
        return True
    if last[KIND] == "risk.denied":
        expected = ("DENIED", 0.0, last[DETAIL] or "")
    else:
        expected = (last[STATUS], last[QTY], last[DETAIL] or "")
    text = compare(_STATE, (status, filled, reason), expected)
    if text and is_intact(last):
        report(f"{where}: {text} (orders vs its last audited state, seq {last[SEQ]} {last[KIND]})")
        return True
    return False


def _check_fills(run_id: Any, oid: Any, fills: list[Row], rows: list[Row], report: Report) -> bool:
    audited_rows = [r for r in rows if r[KIND] == FILL]
    if len(fills) == len(audited_rows) and _same_fill_rows(fills, audited_rows):
        return False  # every fill has exactly its audit row: nothing to parse
    return _match_fills(run_id, oid, fills, audited_rows, report)


def _same_fill_rows(fills: list[Row], rows: list[Row]) -> bool:
    # The fast path: the audit rows the writer would write for these fills, as a multiset.
    try:
        expected = [
            (f[F_TS], f[F_SYMBOL], f[F_QTY], f[F_PRICE],
             fill_detail(f[F_ID], f[F_SIDE], f[F_FEE], f[F_SLIP]))
            for f in fills
        ]  # fmt: skip
    except (TypeError, ValueError):  # a value of the wrong type: let _match_fills say which
        return False
    got = [(r[TS], r[SYMBOL], r[QTY], r[PRICE], r[DETAIL]) for r in rows]
    return expected == got or Counter(expected) == Counter(got)


def _match_fills(run_id: Any, oid: Any, fills: list[Row], rows: list[Row], report: Report) -> bool:
    audited: dict[Any, tuple[Row, dict[str, Any]]] = {}
    found = _Count(report)
    n_unreadable = 0  # edited rows without a readable fill id: they stand for a missing one
    for r in rows:
        detail = parse_detail(r[DETAIL]) or {}
        fill_id = detail.get("fill_id")
        if fill_id is None or fill_id in audited:
            if not is_intact(r):
                n_unreadable += 1
                continue
            problem = "has no fill_id" if fill_id is None else "repeats an audited fill"
            found(f"run {run_id} order {oid}: fill audit row seq {r[SEQ]} {problem}")
        audited.setdefault(fill_id, (r, detail))
    for f in fills:
        entry = audited.pop(f[F_ID], None)
        where = f"run {run_id} fill {f[F_ID]} (order {oid})"
        if entry is None and n_unreadable:
            n_unreadable -= 1
        elif entry is None:
            found(
                f"{where}: no fill audit row; the fill was inserted behind the audit's back, "
                "or its audit row was deleted"
            )
        else:
            row, detail = entry
            text = diffs(_fill_pairs(f, row, detail))
            if text and is_intact(row):
                found(f"{where}: {text} (fills vs its fill audit row, seq {row[SEQ]})")
    for fill_id, (row, _) in audited.items():
        if fill_id is not None and is_intact(row):
            found(
                f"run {run_id} fill {fill_id} (order {oid}): audited (seq {row[SEQ]}) but "
                "missing from fills (fill deleted)"
            )
    return found.n > 0


class _Count:
    # Reports and counts what one check found.
    def __init__(self, report: Report) -> None:
        self.report, self.n = report, 0

    def __call__(self, message: str) -> None:
        self.n += 1
        self.report(message)


def _fill_pairs(fill: Row, row: Row, detail: dict[str, Any]) -> list[tuple[str, object, object]]:
    return [
        ("ts_ns", fill[F_TS], row[TS]),
        ("symbol", fill[F_SYMBOL], row[SYMBOL]),
        ("side", fill[F_SIDE], detail.get("side")),
        ("quantity", fill[F_QTY], row[QTY]),
        ("price", fill[F_PRICE], row[PRICE]),
        ("fee", fill[F_FEE], detail.get("fee")),
        ("slippage_bps", fill[F_SLIP], detail.get("slippage_bps")),
    ]


def _check_fill_totals(where: str, order: Row, fills: list[Row], report: Report) -> None:
    quantity, status, avg = order[O_QTY], order[O_STATUS], order[O_AVG]
    if len(fills) == 1:
        total, fills_avg = fills[0][F_QTY], fills[0][F_PRICE]
    else:
        total = math.fsum(f[F_QTY] for f in fills)
        notional = math.fsum(f[F_QTY] * f[F_PRICE] for f in fills)
        fills_avg = notional / total if total else None
    if total > quantity * (1 + _REL_TOL) + _REL_TOL:
        report(f"{where}: its fills sum to {total!r}, more than its quantity {quantity!r}")
    elif status == "FILLED" and not close(total, quantity):
        report(f"{where}: status FILLED but its fills sum to {total!r} of quantity {quantity!r}")
    if not close(avg, fills_avg):
        report(f"{where}: avg_fill_price {avg!r} but its fills average {fills_avg!r}")
