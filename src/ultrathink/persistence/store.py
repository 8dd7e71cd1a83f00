"""Repository API over the store: runs, orders, fills, equity, positions.

A :class:`Store` is for threads other than the kernel (CLI, reports, web). It may share
the file with a running :class:`~ultrathink.persistence.writer.StoreWriter`: in WAL mode
readers see the last committed batch and never block the writer. A ``Store`` connection
belongs to the thread that opened it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from ultrathink.core.enums import Side
from ultrathink.core.events import Fill
from ultrathink.errors import ConfigError, PersistenceError
from ultrathink.persistence.audit import AuditReport, read_head, verify_audit
from ultrathink.persistence.db import connect, migrate
from ultrathink.persistence.records import RUN_KINDS, RUN_STATUSES, PositionRecord, RunRecord

if TYPE_CHECKING:
    import pandas as pd

ORDER_COLUMNS = (
    "client_order_id", "ts_ns", "symbol", "side", "order_type", "quantity", "limit_price",
    "stop_price", "tif", "reduce_only", "tag", "status", "filled_qty", "avg_fill_price",
    "reason", "updated_ns",
)  # fmt: skip
ORDER_EVENT_COLUMNS = (
    "seq",
    "ts_ns",
    "client_order_id",
    "symbol",
    "status",
    "filled_qty",
    "reason",
)
_ORDER_DTYPES = {
    "ts_ns": "int64", "quantity": "float64", "limit_price": "float64", "stop_price": "float64",
    "reduce_only": "bool", "filled_qty": "float64", "avg_fill_price": "float64",
    "updated_ns": "int64",
}  # fmt: skip
_RUN_COLUMNS = (
    "run_id, kind, strategy, params_json, config_json, data_name, data_hash, code_version, "
    "started_ns, ended_ns, status, summary_json"
)
_INSERT_RUN = (
    "INSERT INTO runs (kind, strategy, params_json, config_json, data_name, data_hash, "
    "code_version, started_ns, ended_ns, status, summary_json) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, 'running', NULL)"
)


class Store:
    """Open (creating and migrating if needed) the SQLite store at ``path``.

    Parameters
    ----------
    path : str or Path
        Database file.

    Raises
    ------
    PersistenceError
        If the file is not a SQLite database or its schema is newer than this code.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = connect(self.path)
        try:
            migrate(self._conn)
        except BaseException:
            self._conn.close()
            raise

    def create_run(
        self,
        kind: str,
        strategy: str,
        params: dict[str, Any],
        config: dict[str, Any],
        data_name: str,
        data_hash: str,
        code_version: str,
        started_ns: int,
    ) -> int:
        """Record a new run with status ``running`` and return its ``run_id``.

        Raises
        ------
        ConfigError
            If ``kind`` is not ``backtest``, ``paper`` or ``run``.
        """
        _check_choice("kind", kind, RUN_KINDS)
        values = (kind, strategy, _dumps(params), _dumps(config), data_name, data_hash)
        cursor = self._write(_INSERT_RUN, (*values, code_version, started_ns))
        return int(cursor.lastrowid or 0)

    def finish_run(self, run_id: int, status: str, summary: dict[str, Any], ended_ns: int) -> None:
        """Set a run's final ``status``, ``summary`` and ``ended_ns``.

        Raises
        ------
        ConfigError
            If ``status`` is not one of ``running, completed, failed, interrupted``.
        PersistenceError
            If the run does not exist.
        """
        _check_choice("status", status, RUN_STATUSES)
        cursor = self._write(
            "UPDATE runs SET status = ?, summary_json = ?, ended_ns = ? WHERE run_id = ?",
            (status, _dumps(summary), ended_ns, run_id),
        )
        if cursor.rowcount == 0:
            raise _not_found(run_id)

    def list_runs(self, limit: int = 20) -> list[RunRecord]:
        """Return the ``limit`` most recently created runs, newest first."""
        rows = self._conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY run_id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [_run_record(row) for row in rows]

    def get_run(self, run_id: int) -> RunRecord:
        """Return one run.

        Raises
        ------
        PersistenceError
            If no run has this id.
        """
        row = self._conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise _not_found(run_id)
        return _run_record(row)

    def load_orders(self, run_id: int) -> pd.DataFrame:
        """Return a run's orders, one row each in request order, with their final state."""
        self._require_run(run_id)
        rows = self._conn.execute(
            f"SELECT {', '.join(ORDER_COLUMNS)} FROM orders WHERE run_id = ? "
            "ORDER BY ts_ns, client_order_id",
            (run_id,),
        ).fetchall()
        import pandas as pd  # lazy: the writer process and the engine never load pandas

        frame = pd.DataFrame.from_records(rows, columns=list(ORDER_COLUMNS))
        return frame.astype(_ORDER_DTYPES)

    def load_fills(self, run_id: int) -> list[Fill]:
        """Return a run's fills ordered by ``(ts_ns, fill_id)``."""
        self._require_run(run_id)
        rows = self._conn.execute(
            "SELECT ts_ns, client_order_id, fill_id, symbol, side, quantity, price, fee, "
            "slippage_bps FROM fills WHERE run_id = ? ORDER BY ts_ns, fill_id",
            (run_id,),
        )
        return [Fill(r[0], r[1], r[2], r[3], Side(r[4]), *r[5:]) for r in rows]

    def order_states(self, run_id: int) -> dict[str, tuple[str, float, str]]:
        """Return ``client_order_id -> (status, filled_qty, symbol)`` of a run's orders."""
        self._require_run(run_id)
        rows = self._conn.execute(
            "SELECT client_order_id, status, filled_qty, symbol FROM orders WHERE run_id = ?",
            (run_id,),
        )
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def order_intents(self, run_id: int) -> dict[str, tuple[int, str, str, float, str]]:
        """Return ``client_order_id -> (ts_ns, symbol, side, quantity, tag)`` of a run's orders."""
        self._require_run(run_id)
        rows = self._conn.execute(
            "SELECT client_order_id, ts_ns, symbol, side, quantity, tag FROM orders "
            "WHERE run_id = ?",
            (run_id,),
        )
        return {r[0]: (r[1], r[2], r[3], r[4], r[5]) for r in rows}

    def fill_ids(self, run_id: int) -> set[str]:
        """Return the ids of a run's fills."""
        self._require_run(run_id)
        rows = self._conn.execute("SELECT fill_id FROM fills WHERE run_id = ?", (run_id,))
        return {r[0] for r in rows}

    def audit_details(self, run_id: int, kind_prefixes: tuple[str, ...]) -> list[tuple[str, str]]:
        """Return ``(kind, detail)`` of a run's audit rows whose kind starts with a prefix."""
        self._require_run(run_id)
        where = " OR ".join("kind LIKE ?" for _ in kind_prefixes)
        rows = self._conn.execute(
            f"SELECT kind, detail FROM audit_log WHERE run_id = ? AND ({where}) ORDER BY seq",
            (run_id, *(f"{p}%" for p in kind_prefixes)),
        )
        return [(r[0], r[1] or "") for r in rows]

    def reopen_run(self, run_id: int) -> None:
        """Mark a run ``running`` again (a restart after a crash or an interrupt)."""
        cursor = self._write(
            "UPDATE runs SET status = 'running', ended_ns = NULL WHERE run_id = ?", (run_id,)
        )
        if cursor.rowcount == 0:
            raise _not_found(run_id)

    def count_fills(self, run_id: int) -> int:
        """Return how many fills a run has (without loading them)."""
        self._require_run(run_id)
        row = self._conn.execute("SELECT COUNT(*) FROM fills WHERE run_id = ?", (run_id,))
        return int(row.fetchone()[0])

    def load_equity(self, run_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return a run's equity curve ``(ts_ns int64, equity float64, cash float64)``."""
        self._require_run(run_id)
        rows = self._conn.execute(
            "SELECT ts_blob, equity_blob, cash_blob FROM equity_chunks WHERE run_id = ? "
            "ORDER BY chunk_no",
            (run_id,),
        ).fetchall()
        ts_parts = [np.frombuffer(r[0], dtype="<i8") for r in rows]
        equity_parts = [np.frombuffer(r[1], dtype="<f8") for r in rows]
        cash_parts = [np.frombuffer(r[2], dtype="<f8") for r in rows]
        return (
            np.concatenate([np.empty(0, "<i8"), *ts_parts]).astype(np.int64),
            np.concatenate([np.empty(0, "<f8"), *equity_parts]).astype(np.float64),
            np.concatenate([np.empty(0, "<f8"), *cash_parts]).astype(np.float64),
        )

    def load_positions(self, run_id: int) -> list[PositionRecord]:
        """Return a run's latest positions, ordered by symbol."""
        self._require_run(run_id)
        rows = self._conn.execute(
            "SELECT symbol, quantity, avg_price, realized_pnl, last_price FROM positions "
            "WHERE run_id = ? ORDER BY symbol",
            (run_id,),
        )
        return [PositionRecord(*r) for r in rows]

    def load_order_events(self, run_id: int) -> pd.DataFrame:
        """Return a run's order events (from the audit log) in ``seq`` order."""
        self._require_run(run_id)
        rows = self._conn.execute(
            f"SELECT {', '.join(ORDER_EVENT_COLUMNS)} FROM order_events WHERE run_id = ? "
            "ORDER BY seq",
            (run_id,),
        ).fetchall()
        import pandas as pd

        return pd.DataFrame.from_records(rows, columns=list(ORDER_EVENT_COLUMNS))

    def order_status_counts(self, run_id: int) -> dict[str, int]:
        """Return how many of a run's orders are in each status, e.g. ``{"FILLED": 12}``."""
        self._require_run(run_id)
        rows = self._conn.execute(
            "SELECT status, COUNT(*) FROM orders WHERE run_id = ? GROUP BY status ORDER BY status",
            (run_id,),
        )
        return {str(status): int(n) for status, n in rows}

    def audit_head(self) -> tuple[int, str]:
        """Return the audit chain's head ``(seq, hash)``: publish the hash to anchor it."""
        return read_head(self._conn)

    def verify_audit(self) -> AuditReport:
        """Verify the audit chain of this store (see :func:`verify_audit`)."""
        return verify_audit(self._conn)

    def close(self) -> None:
        """Close the connection; idempotent."""
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _write(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise PersistenceError(f"cannot write to {self.path}: {exc}") from exc

    def _require_run(self, run_id: int) -> None:
        if self._conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
            raise _not_found(run_id)


def _dumps(value: dict[str, Any]) -> str:
    try:
        return json.dumps(value, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"run params/config/summary must be JSON-serialisable: {exc}") from exc


def _json_default(value: object) -> object:
    # numpy scalars and arrays (np.int64 is not an int) become plain Python values.
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; was {value!r}")


def _not_found(run_id: int) -> PersistenceError:
    return PersistenceError(f"run {run_id} not found; see `ultrathink runs`")


def _run_record(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord(
        run_id=row[0],
        kind=row[1],
        strategy=row[2],
        params=json.loads(row[3]),
        config=json.loads(row[4]),
        data_name=row[5],
        data_hash=row[6],
        code_version=row[7],
        started_ns=row[8],
        ended_ns=row[9],
        status=row[10],
        summary=json.loads(row[11]) if row[11] is not None else None,
    )
