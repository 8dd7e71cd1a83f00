"""The paper venue's own durable state: a small SQLite journal of orders and fills.

A real venue remembers its orders and executions whatever happens to the trading engine. The
paper broker gets the same property from a ``VenueJournal``: every change of an order's state
(and every fill, together with the order's new state) is committed in one transaction before
the engine is told, so a session killed at any instant can restart, reload the venue's state
and reconcile its own store against it.

Durability: the file is in WAL mode with ``synchronous=NORMAL``. A killed process (``kill -9``)
loses nothing that was committed; a power loss or OS crash may lose the last few commits
(never corrupts the file). One journal file belongs to one paper session.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ultrathink.core.enums import OrderStatus, OrderType, Side, TimeInForce
from ultrathink.core.events import Fill, OrderRequest
from ultrathink.errors import PersistenceError
from ultrathink.execution.orders import Order

#: Stored in ``meta``: identifies the file as a venue journal and its layout.
JOURNAL_KIND = "ultrathink-venue-journal"
SCHEMA_VERSION = 1
_BUSY_TIMEOUT_MS = 5_000

ORDER_COLUMNS = (
    "client_order_id",
    "ts_ns",
    "symbol",
    "side",
    "quantity",
    "order_type",
    "limit_price",
    "stop_price",
    "tif",
    "reduce_only",
    "tag",
    "status",
    "is_open",
    "filled_qty",
    "avg_fill_price",
    "is_triggered",
    "eligible_ns",
    "last_fill_ts_ns",
    "reason",
    "updated_ns",
)
_FILL_COLUMNS = Fill._fields

_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # rowid keeps submission order: an upsert updates the row in place
    """CREATE TABLE venue_orders (
        client_order_id TEXT PRIMARY KEY, ts_ns INTEGER NOT NULL, symbol TEXT NOT NULL,
        side TEXT NOT NULL, quantity REAL, order_type TEXT NOT NULL, limit_price REAL,
        stop_price REAL, tif TEXT NOT NULL, reduce_only INTEGER NOT NULL, tag TEXT NOT NULL,
        status TEXT NOT NULL, is_open INTEGER NOT NULL, filled_qty REAL NOT NULL,
        avg_fill_price REAL NOT NULL, is_triggered INTEGER NOT NULL, eligible_ns INTEGER NOT NULL,
        last_fill_ts_ns INTEGER, reason TEXT NOT NULL, updated_ns INTEGER NOT NULL)""",
    """CREATE TABLE venue_fills (
        seq INTEGER PRIMARY KEY, ts_ns INTEGER NOT NULL, client_order_id TEXT NOT NULL,
        fill_id TEXT NOT NULL UNIQUE, symbol TEXT NOT NULL, side TEXT NOT NULL,
        quantity REAL NOT NULL, price REAL NOT NULL, fee REAL NOT NULL,
        slippage_bps REAL NOT NULL)""",
)
_UPSERT_ORDER = (
    f"INSERT INTO venue_orders ({', '.join(ORDER_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(ORDER_COLUMNS))}) ON CONFLICT (client_order_id) DO UPDATE SET "
    "status = excluded.status, is_open = excluded.is_open, filled_qty = excluded.filled_qty, "
    "avg_fill_price = excluded.avg_fill_price, is_triggered = excluded.is_triggered, "
    "eligible_ns = excluded.eligible_ns, reason = excluded.reason, "
    "updated_ns = excluded.updated_ns, "
    "last_fill_ts_ns = COALESCE(excluded.last_fill_ts_ns, venue_orders.last_fill_ts_ns)"
)
_INSERT_FILL = (
    f"INSERT INTO venue_fills ({', '.join(_FILL_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_FILL_COLUMNS))})"
)


class VenueState(NamedTuple):
    """Everything a venue journal holds, as loaded by :meth:`VenueJournal.load`.

    Attributes
    ----------
    orders : dict[str, Order]
        Every order the venue saw (client order id -> order), in submission order.
    fills : list[Fill]
        Every execution, in execution order.
    reasons : dict[str, str]
        The reason of each order's last status change ("" when there was none).
    last_fill_ts : dict[str, int]
        Timestamp (ns) of the bar on which an order last filled; orders never filled are absent.
    """

    orders: dict[str, Order]
    fills: list[Fill]
    reasons: dict[str, str]
    last_fill_ts: dict[str, int]


class VenueJournal:
    """A SQLite file holding a paper venue's orders and fills; every record is committed.

    Parameters
    ----------
    path : Path or str
        The journal file; created (with its parent directory) when missing.

    Raises
    ------
    PersistenceError
        If the file cannot be opened, is not a venue journal or has another schema version.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._conn = _open(self.path)

    def record(
        self,
        order: Order,
        fill: Fill | None = None,
        reason: str = "",
        *,
        updated_ns: int | None = None,
    ) -> None:
        """Store ``order``'s current state (and ``fill``) in one transaction, then commit.

        Parameters
        ----------
        order : Order
            The order after its state change; replaces the stored state of that id.
        fill : Fill or None
            The execution that caused the change; its ``ts_ns`` becomes the order's
            ``last_fill_ts_ns``. A ``fill_id`` already stored is an error.
        reason : str
            Why the order reached its status (rejects, cancels, expiries).
        updated_ns : int or None
            Time of the change (ns); defaults to the fill's timestamp, else 0.

        Raises
        ------
        PersistenceError
            If the write fails or the fill id is a duplicate; nothing of the call is stored.
        """
        last_fill_ns = None if fill is None else fill.ts_ns
        if updated_ns is None:
            updated_ns = 0 if last_fill_ns is None else last_fill_ns
        conn = self._conn
        try:
            conn.execute("BEGIN")
            try:
                conn.execute(_UPSERT_ORDER, order_row(order, last_fill_ns, reason, updated_ns))
                if fill is not None:
                    conn.execute(_INSERT_FILL, fill)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        except sqlite3.IntegrityError as exc:
            what = f"order {order.client_order_id}"
            if fill is not None:
                what += f" with fill {fill.fill_id} (a fill id may be recorded only once)"
            raise PersistenceError(f"venue journal {self.path} refused {what}: {exc}") from exc
        except sqlite3.Error as exc:
            raise PersistenceError(f"cannot write venue journal {self.path}: {exc}") from exc

    def raw_rows(self) -> tuple[dict[str, tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Every order's stored row (by client order id) and every fill row, as stored."""
        try:
            orders = self._conn.execute(
                f"SELECT {', '.join(ORDER_COLUMNS)} FROM venue_orders ORDER BY rowid"
            ).fetchall()
            fills = self._conn.execute(
                f"SELECT {', '.join(_FILL_COLUMNS)} FROM venue_fills ORDER BY seq"
            ).fetchall()
        except sqlite3.Error as exc:
            raise PersistenceError(f"cannot read venue journal {self.path}: {exc}") from exc
        return {str(r[0]): tuple(r) for r in orders}, [tuple(r) for r in fills]

    def write_rows(self, rows: Sequence[tuple[tuple[Any, ...], Fill | None]]) -> None:
        """Store pre-built ``(order row, fill)`` records in one transaction (a restart's sync).

        Raises
        ------
        PersistenceError
            If the write fails; nothing of the call is stored.
        """
        if not rows:
            return
        conn = self._conn
        try:
            conn.execute("BEGIN")
            try:
                for row, fill in rows:
                    conn.execute(_UPSERT_ORDER, row)
                    if fill is not None:
                        conn.execute(_INSERT_FILL, fill)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        except sqlite3.Error as exc:
            raise PersistenceError(f"cannot write venue journal {self.path}: {exc}") from exc

    def load(self) -> VenueState:
        """Read the whole journal back: orders rebuilt exactly, fills in execution order."""
        try:
            order_rows = self._conn.execute(
                f"SELECT {', '.join(ORDER_COLUMNS)} FROM venue_orders ORDER BY rowid"
            ).fetchall()
            fill_rows = self._conn.execute(
                f"SELECT {', '.join(_FILL_COLUMNS)} FROM venue_fills ORDER BY seq"
            ).fetchall()
        except sqlite3.Error as exc:
            raise PersistenceError(f"cannot read venue journal {self.path}: {exc}") from exc
        state = VenueState({}, [_fill_from_row(row) for row in fill_rows], {}, {})
        for row in order_rows:
            order = order_from_row(row)
            coid = order.client_order_id
            state.orders[coid] = order
            state.reasons[coid] = row[-2]
            if row[-3] is not None:
                state.last_fill_ts[coid] = row[-3]
        return state

    def close(self) -> None:
        """Close the connection; committed records are already durable."""
        self._conn.close()


def order_from_row(row: Sequence[Any]) -> Order:
    """Rebuild an ``Order`` from a ``venue_orders`` row, bypassing the state machine.

    The order is built from its request, then its execution state (status, fills, trigger,
    eligibility) is set directly: replaying transitions would need the events it went through.
    A quantity that was NaN (stored as NULL) comes back as NaN.
    """
    (coid, ts_ns, symbol, side, qty, otype, limit, stop, tif, reduce_only, tag) = row[:11]
    request = OrderRequest(
        str(coid),
        int(ts_ns),
        str(symbol),
        Side(side),
        float("nan") if qty is None else float(qty),
        OrderType(otype),
        None if limit is None else float(limit),
        None if stop is None else float(stop),
        TimeInForce(tif),
        bool(reduce_only),
        str(tag),
    )
    status, is_open, filled_qty, avg_price, is_triggered, eligible_ns = row[11:17]
    order = Order(request, eligible_ns=int(eligible_ns))
    order.status = OrderStatus(status)
    order.is_open = bool(is_open)
    order.filled_qty = float(filled_qty)
    order.avg_fill_price = float(avg_price)
    order.is_triggered = bool(is_triggered)
    return order


def order_row(
    order: Order, last_fill_ns: int | None, reason: str, updated_ns: int
) -> tuple[object, ...]:
    """The ``venue_orders`` row of ``order``'s current state."""
    return (
        order.client_order_id,
        order.ts_ns,
        order.symbol,
        order.side.value,
        order.quantity,
        order.order_type.value,
        order.limit_price,
        order.stop_price,
        order.tif.value,
        order.reduce_only,
        order.tag,
        order.status.value,
        order.is_open,
        order.filled_qty,
        order.avg_fill_price,
        order.is_triggered,
        order.eligible_ns,
        last_fill_ns,
        reason,
        updated_ns,
    )


def _fill_from_row(row: Sequence[Any]) -> Fill:
    ts_ns, coid, fill_id, symbol, side, qty, price, fee, slip_bps = row
    return Fill(ts_ns, coid, fill_id, symbol, Side(side), qty, price, fee, slip_bps)


def _open(path: Path) -> sqlite3.Connection:
    fix = "move it away or pass the path of a new or existing venue journal"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise PersistenceError(f"cannot open venue journal {path}: {exc}") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL").fetchone()
        conn.execute("PRAGMA synchronous = NORMAL")
        _ensure_schema(conn, path, fix)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise PersistenceError(
            f"{path} is not a usable SQLite venue journal ({exc}); {fix}"
        ) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _ensure_schema(conn: sqlite3.Connection, path: Path, fix: str) -> None:
    conn.execute("BEGIN IMMEDIATE")  # creation is atomic: a kill leaves no half schema
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("kind", JOURNAL_KIND), ("schema_version", str(SCHEMA_VERSION))],
            )
        else:
            _check_meta(conn, tables, path, fix)
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise


def _check_meta(conn: sqlite3.Connection, tables: set[str], path: Path, fix: str) -> None:
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall()) if "meta" in tables else {}
    if meta.get("kind") != JOURNAL_KIND:
        raise PersistenceError(
            f"{path} is a SQLite database but not a venue journal (tables: "
            f"{', '.join(sorted(tables))}); {fix}"
        )
    version = meta.get("schema_version")
    if version != str(SCHEMA_VERSION):
        raise PersistenceError(
            f"venue journal {path} has schema version {version}, this version of ultrathink "
            f"reads version {SCHEMA_VERSION}; finish or discard that session with the "
            "ultrathink version that wrote it, or use a new journal path"
        )


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite may already have rolled back (e.g. disk full): a second ROLLBACK would hide why
    if conn.in_transaction:
        conn.execute("ROLLBACK")
