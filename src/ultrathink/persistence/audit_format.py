"""The audit rows of the economic record (audit format 2) and their ``detail`` text.

Schema 2 audits, besides the order events and risk decisions of schema 1, every fill, every
equity chunk, every position upsert and each run's creation, end and reopening. Fields with
a column of their own use it; the others go into ``detail`` as compact JSON with sorted keys
(``json.dumps(..., sort_keys=True, separators=(",", ":"))``; non-finite floats as Python's
``json`` writes them: ``NaN``, ``Infinity``). The chain's canonical form is unchanged (see
:mod:`ultrathink.persistence.chain`), so rows written before schema 2 verify as before.

=============  =======  ========  ===============  ======  ===========  ==========  ======
kind           ts_ns    client_   symbol           status  quantity     price       detail
                        order_id                                                    (JSON)
=============  =======  ========  ===============  ======  ===========  ==========  ======
fill           fill     order id  symbol           --      quantity     price       (1)
order.STATUS   event    order id  symbol           STATUS  filled qty   avg fill    reason
                                                                        price (2)   (text)
risk.approved  request  order id  symbol           APPRO-  order qty    limit or    "SIDE TYPE
                                                   VED                  stop        TIF"
risk.denied    denial   order id  symbol           DENIED  order qty    limit or    "CODE:
                                                                        stop        detail"
equity.chunk   last ts  --        --               --      n points     last        (3)
                                                                        equity
position       (4)      --        symbol           --      quantity     avg price   (5)
run.created    started  --        --               running --           --          (6)
run.finished   ended    --        --               status  --           --          (7)
run.reopened   (8)      --        --               running --           --          (9)
=============  =======  ========  ===============  ======  ===========  ==========  ======

(1) ``fee, fill_id, side, slippage_bps``. (2) average price of the order's fills up to the
event, NULL before the first fill. (3) ``chunk_no, first_ts_ns, last_ts_ns, last_cash,
last_equity, n_rows, sha256`` where ``sha256`` is of ``ts_blob + equity_blob + cash_blob``.
(4) last ts of the batch's equity chunk, NULL without one. (5) ``last_price, realized_pnl``.
(6) ``code_version, config_sha256, data_hash, data_name, kind, params_sha256, strategy``,
the hashes of the stored ``params_json`` / ``config_json`` text. (7) ``summary_sha256`` of
the stored ``summary_json`` text and the key figures ``final_equity, max_drawdown, n_denied,
n_fills, n_trades, orders, total_return`` (``null`` when the summary has none). (8) the
caller's time, NULL when not given. (9) ``previous_status``.

Free-form rows (``WriteBatch.audit_extra``, e.g. a strategy's notes) may use any kind, but
they never set ``client_order_id``, ``symbol``, ``status``, ``quantity`` or ``price``: the
verifier only takes rows with the columns above set for economic rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from hashlib import sha256
from json.encoder import encode_basestring_ascii
from typing import Any

import numpy as np

from ultrathink.core.events import Fill
from ultrathink.persistence.chain import AuditRow

FILL = "fill"
EQUITY_CHUNK = "equity.chunk"
POSITION = "position"
RUN_CREATED = "run.created"
RUN_FINISHED = "run.finished"
RUN_REOPENED = "run.reopened"
RUN_KINDS = (RUN_CREATED, RUN_FINISHED, RUN_REOPENED)
#: key figures of a run's summary carried by its ``run.finished`` row
SUMMARY_FIGURES = (
    "final_equity", "max_drawdown", "n_denied", "n_fills", "n_trades", "orders", "total_return",
)  # fmt: skip
# (symbol, quantity, avg_price, realized_pnl, last_price)
PositionRow = tuple[str, float, float, float, float]


def dumps_detail(values: dict[str, Any]) -> str:
    """Return the canonical ``detail`` text of ``values`` (compact JSON, sorted keys)."""
    return json.dumps(values, sort_keys=True, separators=(",", ":"), default=_plain)


def parse_detail(text: object) -> dict[str, Any] | None:
    """Return the parsed ``detail`` of an economic row, None when it is not a JSON object."""
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _plain(value: object) -> object:
    # numpy scalars (np.float64 is a float, np.int64 is not an int) become plain values
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _num(value: float) -> str:
    # float repr is what json.dumps writes for finite floats; it writes NaN/Infinity too
    x = float(value)
    return repr(x) if x - x == 0.0 else json.dumps(x)


def text_sha256(text: object) -> str | None:
    """Return the hex sha256 of ``text`` (UTF-8; bytes as they are), None for None."""
    if text is None:
        return None
    return sha256(text if isinstance(text, bytes) else str(text).encode()).hexdigest()


def blobs_sha256(ts_blob: bytes, equity_blob: bytes, cash_blob: bytes) -> str:
    """Return the hex sha256 of an equity chunk's three blobs, concatenated in this order."""
    digest = sha256(ts_blob)
    digest.update(equity_blob)
    digest.update(cash_blob)
    return digest.hexdigest()


def fill_detail(fill_id: str, side: str, fee: float, slippage_bps: float) -> str:
    """Return the ``detail`` of a ``fill`` row: ``dumps_detail`` of the fields as floats."""
    return (
        f'{{"fee":{_num(fee)},"fill_id":{encode_basestring_ascii(fill_id)},'
        f'"side":{encode_basestring_ascii(side)},"slippage_bps":{_num(slippage_bps)}}}'
    )


def fill_rows(run_id: int, fills: Sequence[Fill]) -> list[AuditRow]:
    """Return one ``fill`` audit row per fill (the writer's hot path: no json.dumps)."""
    return [
        (ts_ns, run_id, FILL, order_id, symbol, None, quantity, price,
         fill_detail(fill_id, side._value_, fee, slippage_bps))
        for ts_ns, order_id, fill_id, symbol, side, quantity, price, fee, slippage_bps in fills
    ]  # fmt: skip


def equity_row(run_id: int, chunk_no: int, blobs: tuple[bytes, bytes, bytes]) -> AuditRow:
    """Return the ``equity.chunk`` audit row of a stored chunk (little-endian blobs)."""
    ts = np.frombuffer(blobs[0], dtype="<i8")
    equity = np.frombuffer(blobs[1], dtype="<f8")
    cash = np.frombuffer(blobs[2], dtype="<f8")
    last_ts, last_equity = int(ts[-1]), float(equity[-1])
    detail = {
        "chunk_no": chunk_no,
        "first_ts_ns": int(ts[0]),
        "last_cash": float(cash[-1]),
        "last_equity": last_equity,
        "last_ts_ns": last_ts,
        "n_rows": len(ts),
        "sha256": blobs_sha256(*blobs),
    }
    return (last_ts, run_id, EQUITY_CHUNK, None, None, None, float(len(ts)), last_equity,
            dumps_detail(detail))  # fmt: skip


def position_rows(
    run_id: int, ts_ns: int | None, positions: Iterable[PositionRow]
) -> list[AuditRow]:
    """Return one ``position`` audit row per upserted position."""
    return [
        (ts_ns, run_id, POSITION, None, symbol, None, quantity, avg_price,
         dumps_detail({"last_price": last_price, "realized_pnl": realized_pnl}))
        for symbol, quantity, avg_price, realized_pnl, last_price in positions
    ]  # fmt: skip


def run_created_row(run_id: int, started_ns: int, columns: dict[str, str]) -> AuditRow:
    """Return the ``run.created`` row of a run from its stored text columns.

    ``columns`` holds ``kind, strategy, params_json, config_json, data_name, data_hash,
    code_version`` as stored in ``runs``.
    """
    return (started_ns, run_id, RUN_CREATED, None, None, "running", None, None,
            dumps_detail(run_created_detail(columns)))  # fmt: skip


def run_created_detail(columns: dict[str, Any]) -> dict[str, Any]:
    """Return what a ``run.created`` row records of a run's stored columns."""
    return {
        "code_version": columns["code_version"],
        "config_sha256": text_sha256(columns["config_json"]),
        "data_hash": columns["data_hash"],
        "data_name": columns["data_name"],
        "kind": columns["kind"],
        "params_sha256": text_sha256(columns["params_json"]),
        "strategy": columns["strategy"],
    }


def run_finished_row(run_id: int, status: str, summary_json: str, ended_ns: int) -> AuditRow:
    """Return the ``run.finished`` row of a run from its stored ``summary_json`` text."""
    return (ended_ns, run_id, RUN_FINISHED, None, None, status, None, None,
            dumps_detail(run_finished_detail(summary_json)))  # fmt: skip


def run_finished_detail(summary_json: str | None) -> dict[str, Any]:
    """Return what a ``run.finished`` row records of a stored summary: figures and hash."""
    summary = parse_detail(summary_json) or {}
    detail = {name: summary.get(name) for name in SUMMARY_FIGURES}
    detail["summary_sha256"] = text_sha256(summary_json)
    return detail


def run_reopened_row(run_id: int, previous_status: str, ts_ns: int | None) -> AuditRow:
    """Return the ``run.reopened`` row of a run restarted after a crash or an interrupt."""
    return (ts_ns, run_id, RUN_REOPENED, None, None, "running", None, None,
            dumps_detail({"previous_status": previous_status}))  # fmt: skip
