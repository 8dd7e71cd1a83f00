"""The dashboard's read-only data layer: runs, their series and tables, models, benchmarks.

Plain dicts and numpy arrays out; nothing here renders. Every read opens the store read-only
(``Store(path, readonly=True)``: never migrated, works on a store it may not write) for one
call and closes it, so nothing is held between requests and each call sees the last committed
batch of a session that is still writing.

Errors the web maps to answers: :class:`NotFoundError` (404: a run, a model version, a
file), :class:`StoreBusyError` (503: another process holds the store's lock), ``ConfigError``
(422: a bad filter value), ``ModelNotFoundError`` (404) and ``ModelIntegrityError``.

What a run's page shows and where it comes from: the metrics are the run's stored summary;
the curves its equity chunks; exposure is ``(equity - cash) / equity``, the net market value
of its positions over equity (the store keeps no per-bar gross exposure); the trade PnLs are
its fills replayed through the engine's own ``Portfolio`` (round trips are not stored); the
price chart reloads the run's data by name and uses it only when it hashes to the run's
``data_hash``.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ultrathink.core.times import iso_ns
from ultrathink.data import MarketData
from ultrathink.errors import ConfigError, PersistenceError, UltrathinkError
from ultrathink.persistence import RunRecord, Store
from ultrathink.persistence.db import read_errors
from ultrathink.persistence.records import RUN_KINDS, RUN_STATUSES
from ultrathink.persistence.store import ORDER_COLUMNS

if TYPE_CHECKING:
    from ultrathink.models.registry_oos import OosHistogram

__all__ = [
    "FILL_COLUMNS",
    "NotFoundError",
    "RunFilter",
    "RunPrices",
    "StoreBusyError",
    "audit_status",
    "bench_history",
    "day_bounds_ns",
    "equity_curve",
    "exposure",
    "fills_page",
    "latest_profile",
    "list_models",
    "list_runs",
    "model_detail",
    "model_importances",
    "model_oos",
    "model_report",
    "orders_page",
    "run_detail",
    "run_facets",
    "symbol_fills",
    "trade_pnls",
]

FILL_COLUMNS = ("ts_ns", "client_order_id", "fill_id", "symbol", "side", "quantity", "price",
                "fee", "slippage_bps")  # fmt: skip
MAX_PAGE_ROWS = 500
_T = TypeVar("_T")
_BUSY = ("SQLITE_BUSY", "SQLITE_LOCKED")
_NS_PER_DAY = 86_400 * 10**9
_MAX_NS = 2**63 - 1


class NotFoundError(UltrathinkError):
    """A run, model version or file the dashboard was asked for does not exist."""


class StoreBusyError(PersistenceError):
    """Another process holds the store's lock longer than the read's busy timeout."""


@dataclass(frozen=True)
class RunFilter:
    """Which runs to list: each field given must match exactly (``None``: any).

    ``since_ns`` and ``until_ns`` bound the run's start time (UTC ns, both inclusive).
    """

    strategy: str | None = None
    kind: str | None = None
    status: str | None = None
    data_name: str | None = None
    since_ns: int | None = None
    until_ns: int | None = None

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition and its parameters (``ConfigError`` for an unknown kind/status)."""
        _check_choice("mode", self.kind, RUN_KINDS)
        _check_choice("status", self.status, RUN_STATUSES)
        terms = (
            ("strategy = ?", self.strategy), ("kind = ?", self.kind),
            ("status = ?", self.status), ("data_name = ?", self.data_name),
            ("started_ns >= ?", self.since_ns), ("started_ns <= ?", self.until_ns),
        )  # fmt: skip
        used = [(sql, value) for sql, value in terms if value is not None]
        return " AND ".join(["1"] + [sql for sql, _ in used]), [value for _, value in used]


def _check_choice(name: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; was {value!r}")


def day_bounds_ns(since: str | None, until: str | None) -> tuple[int | None, int | None]:
    """UTC ns of the start of ``since`` and the end of ``until`` (``YYYY-MM-DD`` days)."""

    def day(text: str, name: str) -> int:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            raise ConfigError(f"{name} must be a date like 2026-01-31, was {text[:40]!r}")
        try:
            days = (date.fromisoformat(text) - date(1970, 1, 1)).days
        except ValueError:
            raise ConfigError(f"{name} must be a real date, was {text!r}") from None
        return min(max(days * _NS_PER_DAY, 0), _MAX_NS - _NS_PER_DAY)  # int64 ns: 1970..2262

    lo = day(since, "since") if since else None
    hi = day(until, "until") + _NS_PER_DAY - 1 if until else None
    if lo is not None and hi is not None and lo > hi:
        raise ConfigError(f"since ({since}) must not be after until ({until})")
    return lo, hi


class _Reader(Store):
    """A read-only ``Store`` plus the filtered and paged reads of the dashboard."""

    @read_errors
    def run_ids(self, where: RunFilter, limit: int, offset: int) -> tuple[list[int], int]:
        condition, values = where.where()
        total = self._conn.execute(f"SELECT COUNT(*) FROM runs WHERE {condition}", values)
        rows = self._conn.execute(
            f"SELECT run_id FROM runs WHERE {condition} ORDER BY run_id DESC LIMIT ? OFFSET ?",
            (*values, limit, offset),
        )
        return [int(r[0]) for r in rows], int(total.fetchone()[0])

    @read_errors
    def distinct(self, column: str) -> list[str]:
        assert column in ("strategy", "data_name", "kind", "status")  # never user input
        rows = self._conn.execute(f"SELECT DISTINCT {column} FROM runs ORDER BY {column}")
        return [str(r[0]) for r in rows]

    @read_errors
    def has_run(self, run_id: int) -> bool:
        sql = "SELECT 1 FROM runs WHERE run_id = ?"
        return self._conn.execute(sql, (run_id,)).fetchone() is not None

    @read_errors
    def table_page(
        self, table: str, columns: tuple[str, ...], order: str, run_id: int, limit: int, offset: int
    ) -> tuple[list[tuple[Any, ...]], int]:
        total = self._conn.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id = ?", (run_id,))
        rows = self._conn.execute(
            f"SELECT {', '.join(columns)} FROM {table} WHERE run_id = ? ORDER BY {order} "
            "LIMIT ? OFFSET ?",
            (run_id, limit, offset),
        ).fetchall()
        return rows, int(total.fetchone()[0])


def _is_busy(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, sqlite3.OperationalError):
            name = getattr(cause, "sqlite_errorname", "")
            return name.startswith(_BUSY) or "locked" in str(cause) or "busy" in str(cause)
        cause = cause.__cause__
    return False


@contextmanager
def _reader(db: Path, run_id: int | None = None) -> Iterator[_Reader]:
    # one read-only connection per call; a lock held by another process becomes StoreBusyError
    if not db.is_file():
        raise NotFoundError(f"store {db} does not exist; pass the --db of an existing store")
    try:
        store = _Reader(db, readonly=True)
        try:
            if run_id is not None and not store.has_run(run_id):
                raise NotFoundError(f"run {run_id} not found in {db}; see the run list")
            yield store
        finally:
            store.close()
    except PersistenceError as exc:
        if isinstance(exc, StoreBusyError) or not _is_busy(exc):
            raise
        raise StoreBusyError(
            f"the store {db} is busy: another process holds its lock ({exc.__cause__}); "
            "retry in a moment"
        ) from exc


def _read(db: Path, run_id: int | None, fn: Callable[[_Reader], _T]) -> _T:
    with _reader(db, run_id) as store:
        return fn(store)


# -- runs ------------------------------------------------------------------------------------


def _page(rows: list[Any], total: int, page: int, limit: int) -> dict[str, Any]:
    return {"rows": rows, "total": total, "page": page, "limit": limit,
            "pages": max(1, math.ceil(total / limit))}  # fmt: skip


def _check_paging(page: int, limit: int) -> int:
    if page < 1:
        raise ConfigError(f"page must be >= 1, was {page}")
    if not 1 <= limit <= MAX_PAGE_ROWS:
        raise ConfigError(f"limit must be in 1..{MAX_PAGE_ROWS}, was {limit}")
    return (page - 1) * limit


def run_row(record: RunRecord) -> dict[str, Any]:
    """One run as a flat, JSON-ready row of the run list."""
    summary = record.summary or {}
    return {
        "run_id": record.run_id, "kind": record.kind, "strategy": record.strategy,
        "params": record.params, "data_name": record.data_name, "status": record.status,
        "started": iso_ns(record.started_ns),
        "ended": iso_ns(record.ended_ns) if record.ended_ns is not None else None,
        "final_equity": summary.get("final_equity"), "total_return": summary.get("total_return"),
        "sharpe": (summary.get("metrics") or {}).get("sharpe"),
        "max_drawdown": summary.get("max_drawdown"), "n_trades": summary.get("n_trades"),
    }  # fmt: skip


def list_runs(db: Path, where: RunFilter, page: int = 1, limit: int = 50) -> dict[str, Any]:
    """Runs matching ``where``, newest first: ``{"rows", "total", "page", "limit", "pages"}``."""
    offset = _check_paging(page, limit)

    def read(store: _Reader) -> dict[str, Any]:
        ids, total = store.run_ids(where, limit, offset)
        return _page([run_row(store.get_run(i)) for i in ids], total, page, limit)

    return _read(db, None, read)


def run_facets(db: Path) -> dict[str, list[str]]:
    """The values the run filters can take in this store (for the filter form)."""
    columns = ("strategy", "data_name", "kind", "status")
    return _read(db, None, lambda store: {c: store.distinct(c) for c in columns})


def _metric_rows(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    # the metrics first, then the summary's other scalar figures
    metrics = summary.get("metrics") or {}
    rows = [(k, v) for k, v in metrics.items() if not isinstance(v, dict | list)]
    skip = {"data_hash", "run_id", "mode", "strategy", "data", *metrics}
    rows += [(k, v) for k, v in summary.items() if k not in skip and not isinstance(v, dict | list)]
    head = summary.get("audit_head")
    if isinstance(head, dict):
        rows.append(
            ("audit head (when the run finished)", f"#{head.get('seq')} {head.get('hash')}")
        )
    return rows


def run_detail(db: Path, run_id: int) -> dict[str, Any]:
    """A run's record, metrics, order status counts, positions and table sizes."""

    def read(store: _Reader) -> dict[str, Any]:
        record = store.get_run(run_id)
        ts, equity, _ = store.load_equity(run_id)
        counts = store.order_status_counts(run_id)
        return {
            "run": {
                **run_row(record),
                "config": record.config,
                "data_hash": record.data_hash,
                "code_version": record.code_version,
            },
            "metrics": _metric_rows(record.summary or {}),
            "orders": counts,
            "n_orders": sum(counts.values()),
            "n_fills": store.count_fills(run_id),
            "positions": [p._asdict() for p in store.load_positions(run_id)],
            "n_equity_points": int(ts.size),
            "first": iso_ns(int(ts[0])) if ts.size else None,
            "last": iso_ns(int(ts[-1])) if ts.size else None,
            "last_equity": float(equity[-1]) if equity.size else None,
        }

    return _read(db, run_id, read)


def _rows_page(
    db: Path, run_id: int, table: str, columns: tuple[str, ...], order: str, page: int, limit: int
) -> dict[str, Any]:
    offset = _check_paging(page, limit)

    def read(store: _Reader) -> dict[str, Any]:
        rows, total = store.table_page(table, columns, order, run_id, limit, offset)
        return _page([dict(zip(columns, r, strict=True)) for r in rows], total, page, limit)

    return _read(db, run_id, read)


def orders_page(db: Path, run_id: int, page: int = 1, limit: int = 50) -> dict[str, Any]:
    """One page of a run's orders in request order (their final state)."""
    order = "ts_ns, client_order_id"
    return _rows_page(db, run_id, "orders", ORDER_COLUMNS, order, page, limit)


def fills_page(db: Path, run_id: int, page: int = 1, limit: int = 50) -> dict[str, Any]:
    """One page of a run's fills in time order."""
    return _rows_page(db, run_id, "fills", FILL_COLUMNS, "ts_ns, fill_id", page, limit)


def equity_curve(db: Path, run_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A run's ``(ts_ns, equity, cash)``; ``NotFoundError`` when it has no point yet."""
    ts, equity, cash = _read(db, run_id, lambda store: store.load_equity(run_id))
    if not ts.size:
        raise NotFoundError(f"run {run_id} has no equity point yet")
    return ts, equity, cash


def exposure(equity: np.ndarray, cash: np.ndarray) -> np.ndarray:
    """Net market value of the positions over equity, ``(equity - cash) / equity`` (NaN
    where equity is not positive)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(equity > 0, (equity - cash) / equity, np.nan)


def trade_pnls(db: Path, run_id: int) -> np.ndarray:
    """PnL (net of fees) of each round trip, from the run's fills replayed in a ``Portfolio``."""
    from ultrathink.portfolio.portfolio import Portfolio

    def read(store: _Reader) -> tuple[float, list[Any]]:
        cash = float(store.get_run(run_id).config.get("starting_cash", 100_000.0))
        return cash, store.load_fills(run_id)

    starting_cash, fills = _read(db, run_id, read)
    book = Portfolio(starting_cash)
    for fill in fills:
        book.apply_fill(fill)
    return np.array([t.pnl for t in book.closed_trades], dtype=np.float64)


def symbol_fills(db: Path, run_id: int) -> dict[str, list[tuple[int, str, float, float]]]:
    """A run's fills per symbol as ``(ts_ns, side, price, quantity)``, in time order."""
    out: dict[str, list[tuple[int, str, float, float]]] = {}
    for f in _read(db, run_id, lambda store: store.load_fills(run_id)):
        out.setdefault(f.symbol, []).append((f.ts_ns, str(f.side), f.price, f.quantity))
    return out


class RunPrices:
    """The bars runs traded, reloaded from their data source by name and kept only when they
    hash to the run's ``data_hash`` (the whole data, or its slice over the run's equity
    timestamps: a run given ``--start``/``--end``). The last few are cached (thread-safe)."""

    def __init__(self, max_entries: int = 2) -> None:
        self._max = max_entries
        self._cache: OrderedDict[tuple[str, str, int, int], MarketData | str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, db: Path, run_id: int) -> MarketData:
        """The run's bars; ``NotFoundError`` saying why when they cannot be had."""
        record, ts = _read(db, run_id, lambda s: (s.get_run(run_id), s.load_equity(run_id)[0]))
        if not ts.size:
            raise NotFoundError(f"run {run_id} has no equity point yet: no price chart")
        key = (record.data_name, record.data_hash, int(ts[0]), int(ts[-1]))
        with self._lock:
            found = self._cache.get(key)
            if found is None:
                found = self._cache[key] = _load_prices(record, key[2], key[3])
                while len(self._cache) > self._max:
                    self._cache.popitem(last=False)
            self._cache.move_to_end(key)
        if isinstance(found, str):
            raise NotFoundError(found)
        return found


def _load_prices(record: RunRecord, first_ns: int, last_ns: int) -> MarketData | str:
    from ultrathink import services

    name = record.data_name.removeprefix("embedded:")
    try:
        data = services.load(name)
    except UltrathinkError as exc:
        return f"the price data of run {record.run_id} ({record.data_name}) cannot be loaded: {exc}"
    for candidate in (data, data.between(first_ns, last_ns)):
        if len(candidate) and candidate.sha256() == record.data_hash:
            return candidate
    return (
        f"the data now at {record.data_name!r} is not what run {record.run_id} traded (its "
        f"hash differs from the run's {record.data_hash[:12]}…): no price chart"
    )


# -- audit -------------------------------------------------------------------------------------


def audit_status(db: Path, run_id: int) -> dict[str, Any]:
    """Verify the store's audit trail (chain and tables) with this run's published head.

    ``ok`` is the verdict on the whole store (one chain holds every run); ``run_problems``
    are the problems naming this run, ``anchored`` whether the head hash in the run's
    summary is still in the chain.
    """
    from ultrathink import services

    record = _read(db, run_id, lambda store: store.get_run(run_id))
    head = (record.summary or {}).get("audit_head") or {}
    expect = head.get("hash") if isinstance(head, dict) else None
    try:
        report = services.audit_verify(db, expect_head=expect or None)
    except PersistenceError as exc:
        if _is_busy(exc):
            raise StoreBusyError(f"the store {db} is busy: {exc}; retry in a moment") from exc
        raise
    mine = re.compile(rf"^run {run_id}\b")
    return {
        "ok": report.ok,
        "status": "ok" if report.ok else "failed",
        "n_rows": report.n_rows,
        "head_seq": report.last_seq,
        "head_hash": report.last_hash,
        "anchored": report.anchor_seq is not None if expect else None,
        "run_problems": [p for p in report.problems if mine.match(p)],
        "problems": report.problems,
        "counts": report.counts,
        "notes": report.notes,
    }


# -- models ------------------------------------------------------------------------------------

MISSING = (
    "not stored for this version: the registry has no {file} beside its model (the "
    "out-of-sample labels and probabilities that `ultrathink train` now stores with every "
    "version it registers). It was registered before the registry kept them, or by a tool "
    "that does not write them (`models compress`); its walk-forward scores were computed "
    "from them, but the curves cannot be drawn without them. Train it again to see them here"
)


def list_models(registry: Path) -> list[dict[str, Any]]:
    """Every registry version, newest first, with its headline scores and lineage."""
    from ultrathink.models.registry import ModelRegistry

    reg = ModelRegistry(registry)
    production = reg.production()
    rows = []
    for info in reversed(reg.list()):
        extra, overall = info.extra or {}, (info.metrics or {}).get("overall") or {}
        lineage = extra.get("lineage") or {}
        rows.append({
            "version": info.version, "production": info.version == production,
            "created": info.created, "symbol": extra.get("symbol"), "data": extra.get("data"),
            "train_start": iso_ns(info.train_period[0])[:10],
            "train_end": iso_ns(info.train_period[1])[:10], "n_rows": extra.get("n_rows"),
            "n_features": len(info.feature_names), "auc": overall.get("auc"),
            "log_loss": overall.get("log_loss"), "sharpe": overall.get("sharpe"),
            "kind": lineage.get("kind", "train"), "parent": lineage.get("parent"),
        })  # fmt: skip
    return rows


def model_detail(registry: Path, version: str) -> dict[str, Any]:
    """One version: metadata, walk-forward folds, lineage, and whether its out-of-sample
    predictions are stored (``oos``: their size, or why they are not)."""
    from ultrathink.models.registry import ModelRegistry

    reg = ModelRegistry(registry)
    info = reg.show(version)
    extra = {k: v for k, v in (info.extra or {}).items() if k not in ("low", "high")}
    lineage = extra.pop("lineage", None) or {}
    metrics = info.metrics or {}
    return {
        "info": {
            **asdict(info),
            "extra": extra,
            "train_period": [iso_ns(t) for t in info.train_period],
        },
        "production": reg.production() == version,
        "folds": [f for f in metrics.get("folds", []) if isinstance(f, dict)],
        "overall": metrics.get("overall"),
        "rule": metrics.get("rule"),
        "lineage": {
            "kind": lineage.get("kind", "train"),
            "parent": lineage.get("parent"),
            "data_hash": info.data_hash,
            **lineage,
        },
        "oos": _oos_summary(reg, version),
    }


def _oos_summary(reg: Any, version: str) -> dict[str, Any]:
    # what the model page says about the out-of-sample charts: their size, or why there are none
    from ultrathink.models.registry_oos import OOS_FILE

    found = model_oos(reg.root, version)
    if found is None:
        return {"stored": False, "why": MISSING.format(file=OOS_FILE)}
    return {"stored": True, "n_rows": found.n_rows, "n_folds": len(found.folds),
            "n_bins": int(found.edges.size - 1)}  # fmt: skip


def model_oos(registry: Path, version: str) -> OosHistogram | None:
    """The binned out-of-sample predictions stored with ``version`` (``oos.npz``, hash
    verified), or None for a version saved without them."""
    from ultrathink.models.registry import ModelRegistry
    from ultrathink.models.registry_oos import OOS_FILE, decode_oos

    data = ModelRegistry(registry).read_file(version, OOS_FILE)
    return None if data is None else decode_oos(data, f"{version}/{OOS_FILE}")


def model_report(registry: Path, version: str) -> Path:
    """The HTML report ``train`` wrote for ``version`` (``reports/VERSION.html`` beside the
    registry; it is not among the version's hashed files); ``NotFoundError`` when absent."""
    from ultrathink.models.registry import ModelRegistry

    ModelRegistry(registry).show(version)  # the version exists (ModelNotFoundError)
    path = registry / "reports" / f"{version}.html"
    if not path.is_file():
        raise NotFoundError(f"no training report for {version} at {path}")
    return path


def model_importances(registry: Path, version: str) -> dict[str, Any]:
    """Each ensemble member's own feature importances (normalised to sum to 1).

    ``gbm``: LightGBM total gain; ``forest``: mean decrease in impurity; ``linear``: the
    absolute logistic coefficient on standardised features. These are the fitted model's
    in-sample importances (the version is verified against its manifest, then unpickled).
    """
    from ultrathink.models.registry import ModelRegistry

    loaded = ModelRegistry(registry).load(version)
    members = getattr(loaded.model, "members_", None) or {"model": loaded.model}
    weights = [float(w) for w in getattr(loaded.model, "weights_", [1.0] * len(members))]
    out: dict[str, Any] = {"features": list(loaded.info.feature_names), "members": {}}
    for (name, member), weight in zip(members.items(), weights, strict=False):
        values, kind = _member_importance(member)
        if values is not None:
            total = float(np.sum(values)) or 1.0
            out["members"][name] = {"weight": weight, "kind": kind,
                                    "values": (values / total).tolist()}  # fmt: skip
    return out


def _member_importance(member: Any) -> tuple[np.ndarray | None, str]:
    booster = getattr(member, "booster_", None)
    if booster is not None:
        return np.asarray(booster.feature_importance("gain"), dtype=np.float64), "total gain"
    if hasattr(member, "feature_importances_"):
        return np.asarray(member.feature_importances_, dtype=np.float64), "impurity decrease"
    last = member.steps[-1][1] if hasattr(member, "steps") else member
    if hasattr(last, "coef_"):
        coef = np.abs(np.asarray(last.coef_, dtype=np.float64)).reshape(-1)
        return coef, "|coefficient| on standardised features"
    return None, ""


# -- performance -------------------------------------------------------------------------------


def _suite_record(raw: dict[str, Any]) -> dict[str, Any] | None:
    # a line of `ultrathink bench` (median, values, unit); other writers' lines return None
    if not isinstance(raw.get("median"), int | float) or not isinstance(raw.get("name"), str):
        return None
    values = [v for v in raw.get("values") or [] if isinstance(v, int | float)]
    machine = raw.get("machine")
    return {
        "name": raw["name"], "median": float(raw["median"]), "p99": raw.get("p99"),
        "unit": str(raw.get("unit", "")), "lower_is_better": bool(raw.get("lower_is_better", True)),
        "mode": str(raw.get("mode", "")), "values": values,
        "commit": str(raw.get("commit", "unknown"))[:10], "dirty": raw.get("dirty"),
        "date_utc": str(raw.get("date_utc") or raw.get("time") or ""),
        "machine": machine.get("cpu_model", "") if isinstance(machine, dict) else str(machine),
    }  # fmt: skip


_BENCH_CACHE: OrderedDict[tuple[str, int, int], dict[str, Any]] = OrderedDict()
_BENCH_LOCK = threading.Lock()


def bench_history(path: Path) -> dict[str, Any]:
    """The benchmark history in ``results.jsonl`` and the regressions between runs.

    Every record is judged against the previous record of the same benchmark, mode and CPU
    with ``perf.stats.judge`` and the default ``perf.compare.CompareOptions`` (the test, CI,
    minimum effect, resamples and seed of ``bench --compare``): each regression found, at
    any point of the history, is in ``regressions`` with its record's ``index``. Lines of
    other writers (the pytest budgets' records, with no ``median``) are counted in
    ``other``, with their names; unreadable lines in ``bad_lines``. The answer is kept
    while the file's size and modification time stay the same (judging every pair takes a
    few ms each; the page, its chart and ``/api/perf`` all ask).
    """
    if not path.is_file():
        raise NotFoundError(f"no benchmark results at {path}; run `make bench` (or pass --bench)")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    with _BENCH_LOCK:
        found = _BENCH_CACHE.get(key)
    if found is None:
        found = _read_bench_history(path)
        with _BENCH_LOCK:
            _BENCH_CACHE[key] = found
            while len(_BENCH_CACHE) > 4:
                _BENCH_CACHE.popitem(last=False)
    return found


@functools.lru_cache(maxsize=65_536)
def _judged(
    base: tuple[float, ...], head: tuple[float, ...], lower_is_better: bool
) -> dict[str, Any] | None:
    # bench --compare's verdict on one pair (None: fewer than 2 repeats or a value <= 0);
    # remembered, so a results file that grew is judged only on its new pairs (~8 ms each)
    from ultrathink.perf.compare import CompareOptions
    from ultrathink.perf.stats import judge

    opts = CompareOptions()
    try:
        verdict = judge(base, head, lower_is_better=lower_is_better, alpha=opts.alpha,
                        min_effect=opts.min_effect, n_boot=opts.n_boot, seed=opts.seed)  # fmt: skip
    except ValueError:
        return None
    return verdict.to_dict()


def _read_bench_history(path: Path) -> dict[str, Any]:
    records, other, bad = [], {}, 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            raw = json.loads(line)
        except ValueError:
            bad += bool(line.strip())
            continue
        record = _suite_record(raw) if isinstance(raw, dict) else None
        if record is not None:
            records.append(record)
        elif isinstance(raw, dict):
            other[str(raw.get("name"))] = str(raw.get("commit", ""))[:10]
    regressions = []
    last: dict[tuple[str, str, str], int] = {}
    for i, rec in enumerate(records):
        key = (rec["name"], rec["mode"], rec["machine"])
        prev = last.get(key)
        last[key] = i
        if prev is None:
            continue
        verdict = _judged(tuple(records[prev]["values"]), tuple(rec["values"]),
                          rec["lower_is_better"])  # fmt: skip
        if verdict is not None and verdict["status"] == "regression":
            regressions.append(
                {
                    "index": i,
                    "name": rec["name"],
                    "commit": rec["commit"],
                    "base_commit": records[prev]["commit"],
                    **verdict,
                }
            )
    return {"path": str(path), "records": records, "regressions": regressions,
            "other": other, "bad_lines": bad}  # fmt: skip


def latest_profile(path: Path) -> dict[str, Any]:
    """The runs of the ``profile.json`` that ``ultrathink profile`` wrote last."""
    try:
        profile = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(
            f"no profile at {path}; write one with `ultrathink profile -- backtest …` "
            "(or pass --profile)"
        ) from None
    except (OSError, ValueError) as exc:
        raise NotFoundError(f"the profile {path} cannot be read: {exc}") from None
    runs = profile.get("runs") if isinstance(profile, dict) else None
    if not isinstance(runs, list):
        raise NotFoundError(f"{path} is not a profile of `ultrathink profile` (no 'runs' list)")
    return {"path": str(path), "runs": runs, "process": profile.get("process") or {}}
