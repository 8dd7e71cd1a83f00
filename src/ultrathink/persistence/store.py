"""Repository API over the store: runs, orders, fills, equity, positions.

A :class:`Store` is for threads other than the kernel (CLI, reports, web). It may share
the file with a running :class:`~ultrathink.persistence.writer.StoreWriter`: in WAL mode
readers see the last committed batch and never block the writer. A ``Store`` connection
belongs to the thread that opened it.

``Store(path, readonly=True)`` reads a store it may not (or should not) write: it opens the
file read-only (see :func:`ultrathink.persistence.db.connect`), does not migrate it, and
refuses the methods that write. A run's creation, end and reopening are audited
(``run.created``, ``run.finished``, ``run.reopened``) in the same transaction as the change.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from ultrathink.core.enums import Side
from ultrathink.core.events import Fill
from ultrathink.errors import ConfigError, PersistenceError
from ultrathink.persistence.audit import AuditReport, read_head, verify_audit
from ultrathink.persistence.audit_format import (
    run_created_row,
    run_finished_row,
    run_reopened_row,
)
from ultrathink.persistence.chain import AuditRow, append_audit
from ultrathink.persistence.db import connect, migrate, read_errors, require_schema
from ultrathink.persistence.records import (
    RUN_KINDS,
    RUN_STATUSES,
    PositionRecord,
    RunRecord,
    dumps_run_json,
)
from ultrathink.persistence.writable import read_only_error

if TYPE_CHECKING:
    import pandas as pd

ORDER_COLUMNS = (
    "client_order_id", "ts_ns", "symbol", "side", "order_type", "quantity", "limit_price",
    "stop_price", "tif", "reduce_only", "tag", "status", "filled_qty", "avg_fill_price",
    "reason", "updated_ns",
)  # fmt: skip
ORDER_EVENT_COLUMNS = ("seq", "ts_ns", "client_order_id", "symbol", "status", "filled_qty",
                       "reason")  # fmt: skip
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
    """Open the SQLite store at ``path``: creating and migrating it, or read-only.

    Parameters
    ----------
    path : str or Path
        Database file.
    readonly : bool
        Open an existing store read-only, without migrating it: for a file or directory
        without write permission, read-only media, or simply a reader that must not write.
        ``create_run``, ``finish_run`` and ``reopen_run`` then raise ``PersistenceError``.

    Raises
    ------
    PersistenceError
        If the file is not a SQLite database or its schema is newer than this code; when
        ``readonly``, also if the file does not exist or has no ultrathink schema.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        try:
            self._conn = connect(self.path, readonly=readonly)
        except PersistenceError as exc:
            error = None if readonly else read_only_error(self.path)
            if error is None:
                raise
            raise error from exc
        try:
            if readonly:
                require_schema(self._conn)
            else:
                migrate(self._conn)
        except BaseException as exc:
            self._conn.close()
            if not readonly and isinstance(exc, (PersistenceError, sqlite3.Error)):
                error = read_only_error(self.path)
                if error is not None:
                    raise error from exc
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
        """Record a new run with status ``running``, audit it, and return its ``run_id``.

        Raises
        ------
        ConfigError
            If ``kind`` is not ``backtest``, ``paper`` or ``run``.
        PersistenceError
            If the store is read-only or cannot be written.
        """
        _check_choice("kind", kind, RUN_KINDS)
        columns = {
            "kind": kind, "strategy": strategy, "params_json": dumps_run_json(params),
            "config_json": dumps_run_json(config), "data_name": data_name, "data_hash": data_hash,
            "code_version": code_version,
        }  # fmt: skip
        with self._transaction("create_run"):
            cursor = self._conn.execute(_INSERT_RUN, (*columns.values(), started_ns))
            run_id = int(cursor.lastrowid or 0)
            self._audit(run_created_row(run_id, started_ns, columns))
        return run_id

    def finish_run(
        self, run_id: int, status: str, summary: dict[str, Any], ended_ns: int
    ) -> tuple[int, str]:
        """Set a run's final ``status``, ``summary`` and ``ended_ns``, and audit them.

        The ``run.finished`` audit row carries the status, the summary's key figures and the
        sha256 of the stored summary JSON; it is written in the same transaction.

        Returns
        -------
        tuple of (int, str)
            The audit chain's new head ``(seq, hash)``: publish the hash to anchor the run.

        Raises
        ------
        ConfigError
            If ``status`` is not one of ``running, completed, failed, interrupted``.
        PersistenceError
            If the run does not exist, or the store is read-only or cannot be written.
        """
        _check_choice("status", status, RUN_STATUSES)
        summary_json = dumps_run_json(summary)
        with self._transaction("finish_run"):
            cursor = self._conn.execute(
                "UPDATE runs SET status = ?, summary_json = ?, ended_ns = ? WHERE run_id = ?",
                (status, summary_json, ended_ns, run_id),
            )
            if cursor.rowcount == 0:
                raise _not_found(run_id)
            return self._audit(run_finished_row(run_id, status, summary_json, ended_ns))

    @read_errors
    def list_runs(self, limit: int = 20) -> list[RunRecord]:
        """Return the ``limit`` most recently created runs, newest first."""
        rows = self._conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY run_id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [RunRecord.from_row(row) for row in rows]

    @read_errors
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
        return RunRecord.from_row(row)

    @read_errors
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

    @read_errors
    def load_fills(self, run_id: int) -> list[Fill]:
        """Return a run's fills ordered by ``(ts_ns, fill_id)``."""
        self._require_run(run_id)
        rows = self._conn.execute(
            "SELECT ts_ns, client_order_id, fill_id, symbol, side, quantity, price, fee, "
            "slippage_bps FROM fills WHERE run_id = ? ORDER BY ts_ns, fill_id",
            (run_id,),
        )
        return [Fill(r[0], r[1], r[2], r[3], Side(r[4]), *r[5:]) for r in rows]

    @read_errors
    def order_states(self, run_id: int) -> dict[str, tuple[str, float, str]]:
        """Return ``client_order_id -> (status, filled_qty, symbol)`` of a run's orders."""
        self._require_run(run_id)
        rows = self._conn.execute(
            "SELECT client_order_id, status, filled_qty, symbol FROM orders WHERE run_id = ?",
            (run_id,),
        )
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    @read_errors
    def order_intents(self, run_id: int) -> dict[str, tuple[int, str, str, float, str]]:
        """Return ``client_order_id -> (ts_ns, symbol, side, quantity, tag)`` of a run's orders."""
        self._require_run(run_id)
        rows = self._conn.execute(
            "SELECT client_order_id, ts_ns, symbol, side, quantity, tag FROM orders "
            "WHERE run_id = ?",
            (run_id,),
        )
        return {r[0]: (r[1], r[2], r[3], r[4], r[5]) for r in rows}

    @read_errors
    def fill_ids(self, run_id: int) -> set[str]:
        """Return the ids of a run's fills."""
        self._require_run(run_id)
        rows = self._conn.execute("SELECT fill_id FROM fills WHERE run_id = ?", (run_id,))
        return {r[0] for r in rows}

    @read_errors
    def audit_details(self, run_id: int, kind_prefixes: tuple[str, ...]) -> list[tuple[str, str]]:
        """Return ``(kind, detail)`` of a run's audit rows whose kind starts with a prefix."""
        self._require_run(run_id)
        where = " OR ".join("kind LIKE ?" for _ in kind_prefixes)
        rows = self._conn.execute(
            f"SELECT kind, detail FROM audit_log WHERE run_id = ? AND ({where}) ORDER BY seq",
            (run_id, *(f"{p}%" for p in kind_prefixes)),
        )
        return [(r[0], r[1] or "") for r in rows]

    def reopen_run(self, run_id: int, ts_ns: int | None = None) -> None:
        """Mark a run ``running`` again (a restart after a crash or an interrupt), audited.

        Parameters
        ----------
        run_id : int
        ts_ns : int, optional
            When the run was reopened, for the ``run.reopened`` audit row.
        """
        with self._transaction("reopen_run"):
            row = self._conn.execute(
                "SELECT status FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is None:
                raise _not_found(run_id)
            self._conn.execute(
                "UPDATE runs SET status = 'running', ended_ns = NULL WHERE run_id = ?", (run_id,)
            )
            self._audit(run_reopened_row(run_id, str(row[0]), ts_ns))

    @read_errors
    def count_fills(self, run_id: int) -> int:
        """Return how many fills a run has (without loading them)."""
        self._require_run(run_id)
        row = self._conn.execute("SELECT COUNT(*) FROM fills WHERE run_id = ?", (run_id,))
        return int(row.fetchone()[0])

    @read_errors
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

    @read_errors
    def load_positions(self, run_id: int) -> list[PositionRecord]:
        """Return a run's latest positions, ordered by symbol."""
        self._require_run(run_id)
        rows = self._conn.execute(
            "SELECT symbol, quantity, avg_price, realized_pnl, last_price FROM positions "
            "WHERE run_id = ? ORDER BY symbol",
            (run_id,),
        )
        return [PositionRecord(*r) for r in rows]

    @read_errors
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

    @read_errors
    def order_status_counts(self, run_id: int) -> dict[str, int]:
        """Return how many of a run's orders are in each status, e.g. ``{"FILLED": 12}``."""
        self._require_run(run_id)
        rows = self._conn.execute(
            "SELECT status, COUNT(*) FROM orders WHERE run_id = ? GROUP BY status ORDER BY status",
            (run_id,),
        )
        return {str(status): int(n) for status, n in rows}

    @read_errors
    def audit_head(self) -> tuple[int, str]:
        """Return the audit chain's head ``(seq, hash)``: publish the hash to anchor it."""
        return read_head(self._conn)

    def verify_audit(self, expect_head: str | None = None) -> AuditReport:
        """Verify the audit chain of this store (see :func:`verify_audit`)."""
        return verify_audit(self._conn, expect_head=expect_head)

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

    @contextmanager
    def _transaction(self, operation: str) -> Iterator[None]:
        # BEGIN IMMEDIATE: the audit head is read and moved under the write lock.
        if self.readonly:
            raise PersistenceError(
                f"store {self.path} is open read-only; {operation} needs write access: "
                "open it with Store(path)"
            )
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise PersistenceError(f"cannot write to {self.path}: {exc}") from exc
        try:
            yield
        except sqlite3.Error as exc:
            self._rollback(exc)
            raise PersistenceError(f"cannot write to {self.path}: {exc}") from exc
        except BaseException as exc:
            self._rollback(exc)
            raise
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback(exc)
            raise PersistenceError(f"cannot write to {self.path}: {exc}") from exc

    def _rollback(self, error: BaseException) -> None:
        # SQLite ends the transaction itself on some errors (SQLITE_FULL, SQLITE_IOERR,
        # SQLITE_NOMEM, SQLITE_BUSY): a ROLLBACK then fails with "no transaction is active"
        # and would hide ``error``, the one that says what went wrong. A ROLLBACK that fails
        # otherwise is noted on ``error``, which still goes up.
        if not self._conn.in_transaction:
            return
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            error.add_note(f"and the ROLLBACK after it failed too: {exc}")

    def _audit(self, row: AuditRow) -> tuple[int, str]:
        return append_audit(self._conn, [row])

    def _require_run(self, run_id: int) -> None:
        if self._conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
            raise _not_found(run_id)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; was {value!r}")


def _not_found(run_id: int) -> PersistenceError:
    return PersistenceError(f"run {run_id} not found; see `ultrathink runs`")
