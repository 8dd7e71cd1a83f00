"""Records that cross the persistence boundary: what the kernel hands in, what readers get."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ultrathink.core.events import Fill, OrderDenied, OrderEvent, OrderRequest
from ultrathink.errors import ConfigError

RUN_KINDS = ("backtest", "paper", "run")
RUN_STATUSES = ("running", "completed", "failed", "interrupted")

# (symbol, quantity, avg_price, realized_pnl, last_price)
PositionRow = tuple[str, float, float, float, float]
# (ts_ns, kind, detail), e.g. (ts, "run.started", "sma_cross on spx")
AuditExtra = tuple[int, str, str]
# (ts_ns int64, equity float64, cash float64), equal lengths
EquityChunk = tuple[np.ndarray, np.ndarray, np.ndarray]


class WriteBatch(NamedTuple):
    """Everything one run produced since the previous batch, written in one transaction.

    The batch is handed over by :meth:`StoreWriter.put`: do not mutate its lists or arrays
    afterwards (they are read later, on the writer thread).

    Attributes
    ----------
    run_id : int
        Run the records belong to (from :meth:`Store.create_run`).
    requests : sequence of OrderRequest
        New orders, approved or denied: inserted with status ``NEW``.
    denials : sequence of OrderDenied
        Risk denials: the order becomes ``DENIED`` (reason ``"CODE: detail"``), audited as
        ``risk.denied``.
    approvals : sequence of str
        Client order ids approved by risk (requested in this or an earlier batch), audited
        as ``risk.approved``.
    events : sequence of OrderEvent
        Status changes, audited as ``order.<STATUS>``; the order takes the values of its last
        event in the batch.
    fills : sequence of Fill
        Executions; the order's ``avg_fill_price`` is recomputed from all of its fills.
    equity : tuple of three numpy arrays, optional
        ``(ts_ns, equity, cash)`` of one chunk of the equity curve.
    positions : sequence of PositionRow
        ``(symbol, quantity, avg_price, realized_pnl, last_price)``, upserted.
    audit_extra : sequence of AuditExtra
        Free-form audit rows ``(ts_ns, kind, detail)``, e.g. ``"run.started"``.
    """

    run_id: int
    requests: Sequence[OrderRequest] = ()
    denials: Sequence[OrderDenied] = ()
    approvals: Sequence[str] = ()
    events: Sequence[OrderEvent] = ()
    fills: Sequence[Fill] = ()
    equity: EquityChunk | None = None
    positions: Sequence[PositionRow] = ()
    audit_extra: Sequence[AuditExtra] = ()


@dataclass(frozen=True)
class RunRecord:
    """One run as stored, with its JSON columns parsed.

    Attributes
    ----------
    run_id : int
    kind : str
        ``backtest``, ``paper`` or ``run``.
    strategy : str
    params : dict
        Strategy parameters.
    config : dict
        The run's full configuration.
    data_name, data_hash : str
        Dataset name and content hash.
    code_version : str
    started_ns : int
    ended_ns : int or None
        None while running.
    status : str
        ``running``, ``completed``, ``failed`` or ``interrupted``.
    summary : dict or None
        Final metrics, None while running.
    """

    run_id: int
    kind: str
    strategy: str
    params: dict[str, Any]
    config: dict[str, Any]
    data_name: str
    data_hash: str
    code_version: str
    started_ns: int
    ended_ns: int | None
    status: str
    summary: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> RunRecord:
        """Build a record from a ``runs`` row (columns in declaration order)."""
        return cls(
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


def dumps_run_json(value: dict[str, Any]) -> str:
    """Return the stored JSON text of a run's params, config or summary (sorted keys).

    Raises
    ------
    ConfigError
        If ``value`` is not JSON-serialisable.
    """
    try:
        return json.dumps(value, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"run params/config/summary must be JSON-serialisable: {exc}") from exc


def _json_default(value: object) -> object:
    # numpy scalars and arrays (np.int64 is not an int) become plain Python values.
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


class PositionRecord(NamedTuple):
    """A run's latest stored position in one symbol."""

    symbol: str
    quantity: float
    avg_price: float
    realized_pnl: float
    last_price: float
