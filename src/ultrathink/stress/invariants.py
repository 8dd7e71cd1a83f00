"""The invariants every stress scenario checks, on a finished run's store and venue journal.

=========================  ==================================================================
invariant                  holds when
=========================  ==================================================================
``orders_terminal``        every stored order is terminal (FILLED, or CANCELLED, EXPIRED,
                           REJECTED, DENIED with a non-empty reason), or still working at
                           the venue too when the data ended
``orders_match_venue``     no order is lost or invented: every order the venue saw is stored
                           with the venue's status and filled quantity; a stored order the
                           venue never saw was denied by risk or rejected as never received
``fills_match_venue``      no fill is lost or duplicated: the store's fills are exactly the
                           venue's (same ids, orders, times, quantities, prices, fees), and no
                           order has two fills on one bar
``cash_positions_equity``  the final cash equals the starting cash less every fill's signed
                           notional and fee; each stored position equals its fills' signed
                           sum; the final equity equals cash plus positions at their last
                           price (each within ``1e-6 + 1e-9 x |value|``)
``audit_chain``            ``ultrathink audit verify`` passes (the chain and the tables agree)
``no_crash``               the run completed and its process exited as expected, with no
                           traceback on stderr
=========================  ==================================================================

The venue journal is the paper venue's own record (``execution/journal.py``): what the venue
accepted and executed, committed before the engine heard of it. ``check_any_instant`` is the
part that must hold at any instant, even right after a ``kill -9`` (the store may lag the
venue, never lead it). Everything reads the files read-only.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ultrathink.core.enums import TERMINAL_STATUSES
from ultrathink.engine.sessions import VENUE_JOURNAL_NAME, session_dir
from ultrathink.persistence import Store, verify_audit
from ultrathink.stress.outcome import Invariant

#: Float tolerance of the money identities: ``|a - b| <= ABS_TOL + REL_TOL * |b|``.
ABS_TOL = 1e-6
REL_TOL = 1e-9
#: The reason the router gives an order whose submit failed before the venue saw it.
NEVER_RECEIVED = "the broker never received it"
TRACEBACK = "Traceback (most recent call last)"
_TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)
_SHOWN = 3  # problems named in one invariant's detail


def read_rows(path: Path, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the SQLite file ``path``, read-only; [] when the file or its
    tables do not exist yet (a kill before the schema was created)."""
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def journal_path(db: Path, run_id: int = 1) -> Path:
    """The venue journal of paper run ``run_id`` of the store ``db``."""
    return session_dir(db, run_id) / VENUE_JOURNAL_NAME


def check_any_instant(db: Path, run_id: int = 1) -> list[str]:
    """What must hold right after a kill, before any restart: the problems found."""
    journal = journal_path(db, run_id)
    fills = read_rows(journal, "SELECT fill_id, client_order_id FROM venue_fills")
    orders = {r[0] for r in read_rows(journal, "SELECT client_order_id FROM venue_orders")}
    ids = [f[0] for f in fills]
    problems = []
    if len(ids) != len(set(ids)):
        problems.append("a venue fill was recorded twice")
    if not {f[1] for f in fills} <= orders:
        problems.append("a venue fill without its order")
    where = (run_id,)
    store_fills = {r[0] for r in read_rows(db, "SELECT fill_id FROM fills WHERE run_id = ?", where)}
    if not store_fills <= set(ids):
        problems.append("the store has a fill the venue never executed")
    store_orders = {
        r[0]
        for r in read_rows(
            db,
            "SELECT client_order_id FROM orders WHERE run_id = ? AND status != 'DENIED' "
            f"AND reason NOT LIKE '{NEVER_RECEIVED}%'",
            where,
        )
    }
    if not store_orders <= orders:
        problems.append("the store has an order the venue never received")
    return problems


def run_state(db: Path, run_id: int = 1) -> dict[str, Any]:
    """Everything a run leaves in the store and its venue journal (not the audit trail):
    two runs with equal states have the same orders, fills, positions and equity."""
    journal, where = journal_path(db, run_id), (run_id,)
    out: dict[str, Any] = {
        "orders": read_rows(
            db, "SELECT * FROM orders WHERE run_id = ? ORDER BY client_order_id", where
        ),
        "fills": read_rows(db, "SELECT * FROM fills WHERE run_id = ? ORDER BY fill_id", where),
        "positions": read_rows(
            db, "SELECT * FROM positions WHERE run_id = ? ORDER BY symbol", where
        ),
        "venue_orders": read_rows(journal, "SELECT * FROM venue_orders ORDER BY rowid"),
        "venue_fills": read_rows(journal, "SELECT * FROM venue_fills ORDER BY seq"),
        "status": read_rows(db, "SELECT status FROM runs WHERE run_id = ?", where),
    }
    with Store(db, readonly=True) as store:
        out["equity"] = [a.tolist() for a in store.load_equity(run_id)]
    return out


class VenueDiff(NamedTuple):
    """How a run's store differs from its venue journal (each list names the ids)."""

    n_orders: int
    n_venue_orders: int
    n_fills: int
    n_venue_fills: int
    lost_orders: list[str]  # at the venue, not in the store
    invented_orders: list[str]  # stored as sent, never seen by the venue
    duplicated_orders: list[str]  # the same request (time, symbol, side, qty) sent twice
    mismatched_orders: list[str]  # status or filled quantity differ
    lost_fills: list[str]  # executed at the venue, not in the store
    duplicated_fills: list[str]  # stored, never executed, or twice on one bar
    mismatched_fills: list[str]  # same id, other content


def venue_diff(db: Path, run_id: int = 1) -> VenueDiff:
    """Compare the store's orders and fills of ``run_id`` with its venue journal."""
    journal, where = journal_path(db, run_id), (run_id,)
    orders = read_rows(
        db,
        "SELECT client_order_id, status, reason, filled_qty FROM orders WHERE run_id = ?",
        where,
    )
    venue = {
        r[0]: r[1:]
        for r in read_rows(
            journal,
            "SELECT client_order_id, status, filled_qty, is_open, "
            "ts_ns, symbol, side, quantity, tag FROM venue_orders",
        )
    }
    invented, mismatched, stored = [], [], set()
    for coid, status, reason, filled in orders:
        stored.add(coid)
        seen = venue.get(coid)
        if seen is None:
            if status != "DENIED" and not reason.startswith(NEVER_RECEIVED):
                invented.append(f"{coid} ({status}) is stored but the venue never saw it")
        elif status == "DENIED":
            invented.append(f"{coid} was denied by risk but reached the venue")
        elif seen[0] != status or not _close(filled, seen[1]):
            mismatched.append(f"{coid}: store {status} {filled:g}, venue {seen[0]} {seen[1]:g}")
    intents = Counter(v[3:] for v in venue.values() if v[-1] != "kill_switch")
    fill_sql = "SELECT fill_id, client_order_id, ts_ns, symbol, side, quantity, price, fee FROM"
    ours = {f[0]: f[1:] for f in read_rows(db, f"{fill_sql} fills WHERE run_id = ?", where)}
    theirs = {f[0]: f[1:] for f in read_rows(journal, f"{fill_sql} venue_fills")}
    per_bar = Counter((f[0], f[1]) for f in ours.values())
    return VenueDiff(
        len(orders),
        len(venue),
        len(ours),
        len(theirs),
        lost_orders=[c for c in venue if c not in stored],
        invented_orders=invented,
        duplicated_orders=[f"{k} sent {n} times" for k, n in intents.items() if n > 1],
        mismatched_orders=mismatched,
        lost_fills=[i for i in theirs if i not in ours],
        duplicated_fills=[i for i in ours if i not in theirs]
        + [
            f"order {o} has {n} fills on the bar at {ts}" for (o, ts), n in per_bar.items() if n > 1
        ],
        mismatched_fills=[
            f"{i}: store {row}, venue {theirs[i]}"
            for i, row in ours.items()
            if i in theirs
            and (row[:4] != theirs[i][:4] or not all(map(_close, row[4:], theirs[i][4:])))
        ],
    )


def state_digest(db: Path, run_id: int = 1) -> str:
    """sha256 (first 16 hex digits) of ``run_state``: equal digests, equal runs."""
    return hashlib.sha256(repr(run_state(db, run_id)).encode()).hexdigest()[:16]


def check_run(db: Path, run_id: int = 1) -> list[Invariant]:
    """The store invariants of one finished paper run (every row of the table above but
    ``no_crash``, which needs the process: see ``check_process``)."""
    orders = read_rows(
        db,
        "SELECT client_order_id, status, reason, filled_qty FROM orders WHERE run_id = ?",
        (run_id,),
    )
    open_at_venue = {
        r[0]
        for r in read_rows(
            journal_path(db, run_id), "SELECT client_order_id FROM venue_orders WHERE is_open = 1"
        )
    }
    fills = read_rows(
        db,
        "SELECT fill_id, client_order_id, ts_ns, symbol, side, quantity, price, fee FROM "
        "fills WHERE run_id = ?",
        (run_id,),
    )
    has_journal = journal_path(db, run_id).exists()
    diff = venue_diff(db, run_id)
    return [
        _orders_terminal(orders, open_at_venue),
        _venue_invariant(
            "orders_match_venue",
            has_journal,
            diff.lost_orders
            and [f"{c} is at the venue but lost from the store" for c in diff.lost_orders],
            diff.invented_orders,
            diff.duplicated_orders,
            diff.mismatched_orders,
            ok=f"{diff.n_orders:,} stored orders, {diff.n_venue_orders:,} at the "
            "venue: none lost, invented or sent twice",
        ),
        _venue_invariant(
            "fills_match_venue",
            has_journal,
            [f"fill {i} executed at the venue is lost" for i in diff.lost_fills],
            [
                f"fill {i} is stored but was never executed (duplicated or invented)"
                if " " not in i
                else i
                for i in diff.duplicated_fills
            ],
            diff.mismatched_fills,
            ok=f"{diff.n_fills:,} stored fills = the venue's {diff.n_venue_fills:,}: "
            "none lost or duplicated",
        ),
        _money(db, run_id, fills),
        audit_chain(db),
    ]


def audit_chain(db: Path, expect_head: str | None = None) -> Invariant:
    """``audit verify`` of the store (and, with ``expect_head``, that the head is kept)."""
    report = verify_audit(db, expect_head=expect_head)
    if report.ok:
        anchored = f"; head {expect_head[:12]}… still in the chain" if expect_head else ""
        return Invariant("audit_chain", True, f"{report.n_rows:,} rows verify{anchored}")
    shown = "; ".join(report.problems[:_SHOWN])
    return Invariant("audit_chain", False, f"{len(report.problems)} problem(s): {shown}")


def check_process(
    returncode: int | None, stderr: str, expected: Sequence[int] = (0,), what: str = "process"
) -> Invariant:
    """``no_crash`` of a child process: its exit code is ``expected`` and it printed no
    traceback (an error is one ``error: …`` line)."""
    if returncode is None:
        return Invariant("no_crash", False, f"the {what} did not end")
    if TRACEBACK in stderr:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
        return Invariant("no_crash", False, f"the {what} printed a traceback: {last[:200]}")
    if returncode not in expected:
        tail = stderr.strip().splitlines()[-1][:200] if stderr.strip() else "no stderr"
        return Invariant(
            "no_crash", False, f"the {what} exited {returncode}, expected {expected}: {tail}"
        )
    return Invariant("no_crash", True, f"the {what} exited {returncode}, no traceback")


def completed(db: Path, run_id: int, error: BaseException | None) -> Invariant:
    """``no_crash`` of a run in this process: it raised nothing and is stored completed."""
    if error is not None:
        return Invariant("no_crash", False, f"the run raised {error!r}"[:300])
    status = read_rows(db, "SELECT status FROM runs WHERE run_id = ?", (run_id,))
    if status != [("completed",)]:
        return Invariant("no_crash", False, f"run {run_id} is stored {status or 'nowhere'}")
    return Invariant("no_crash", True, f"run {run_id} completed")


# -- the checks ------------------------------------------------------------------------------
def _orders_terminal(orders: list[tuple[Any, ...]], open_at_venue: set[str]) -> Invariant:
    problems, working = [], 0
    for coid, status, reason, _filled in orders:
        if status in _TERMINAL:
            if status != "FILLED" and not reason:
                problems.append(f"{coid} is {status} without a reason")
        elif coid in open_at_venue:
            working += 1  # still working at the venue when the data ended
        else:
            problems.append(f"{coid} is {status} in the store, not working at the venue")
    return _verdict(
        "orders_terminal",
        problems,
        f"{len(orders):,} orders terminal with a reason ({working} working when the data ended)",
    )


def _venue_invariant(name: str, has_journal: bool, *groups: Any, ok: str) -> Invariant:
    if not has_journal:
        return Invariant(name, False, "no venue journal to compare with")
    return _verdict(name, [p for group in groups if group for p in group], ok)


def _money(db: Path, run_id: int, fills: list[tuple[Any, ...]]) -> Invariant:
    name = "cash_positions_equity"
    config = read_rows(db, "SELECT config_json FROM runs WHERE run_id = ?", (run_id,))
    if not config:
        return Invariant(name, False, f"run {run_id} is not in the store")
    start = float(json.loads(config[0][0]).get("starting_cash", 0.0))
    with Store(db, readonly=True) as store:
        _ts, equity, cash = store.load_equity(run_id)
    if not equity.size:
        return Invariant(name, False, "no equity point stored")
    flows = math.fsum(q * p if side == "BUY" else -q * p for *_, side, q, p, _fee in fills)
    fees = math.fsum(f[-1] for f in fills)
    held: dict[str, list[float]] = {}
    for *_, symbol, side, qty, _price, _fee in fills:
        held.setdefault(symbol, []).append(qty if side == "BUY" else -qty)
    positions = read_rows(
        db, "SELECT symbol, quantity, last_price FROM positions WHERE run_id = ?", (run_id,)
    )
    problems = []
    expected_cash = start - flows - fees
    if not _close(float(cash[-1]), expected_cash):
        problems.append(f"final cash {cash[-1]:.6f} != start - fills - fees {expected_cash:.6f}")
    for symbol, qty, _last in positions:
        from_fills = math.fsum(held.get(symbol, []))
        if not _close(qty, from_fills):
            problems.append(f"position {symbol} {qty:g} != its fills' sum {from_fills:g}")
    marked = math.fsum(qty * last for _s, qty, last in positions)
    if not _close(float(equity[-1]), float(cash[-1]) + marked):
        problems.append(
            f"final equity {equity[-1]:.6f} != cash {cash[-1]:.6f} + positions {marked:.6f}"
        )
    return _verdict(
        name,
        problems,
        f"cash {cash[-1]:,.2f} + positions {marked:,.2f} = equity {equity[-1]:,.2f}; "
        f"cash = start - {len(fills):,} fills - fees",
    )


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= ABS_TOL + REL_TOL * abs(b)


def _verdict(name: str, problems: list[str], ok_detail: str) -> Invariant:
    if not problems:
        return Invariant(name, True, ok_detail)
    more = f" (+{len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
    return Invariant(name, False, "; ".join(problems[:_SHOWN]) + more)
