"""The sweep tables of the store (migration 3): one ``sweeps`` row, one row per point.

Only the driver writes here; workers return results. Each finished batch is one transaction,
so a driver killed at any moment leaves whole points behind, and ``--resume`` skips them.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ultrathink.errors import ConfigError
from ultrathink.persistence.db import connect, migrate
from ultrathink.sweep.spec import SweepSpec


@dataclass(frozen=True)
class SweepRecord:
    sweep_id: int
    created_utc: str
    spec: SweepSpec
    n_points: int
    status: str
    backend: str
    elapsed_s: float
    done: int


@dataclass(frozen=True)
class PointRow:
    point_id: str
    seq: int
    data: str
    window: str
    params: dict[str, Any]
    metrics: dict[str, Any] | None
    error: str | None
    run_id: int | None
    elapsed_s: float


class SweepStore:
    """A connection to the store's sweep tables (migrates the store when needed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = connect(path)
        migrate(self._conn)
        #: the sweep this connection created last (None before any)
        self.last_created: int | None = None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SweepStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create(self, spec: SweepSpec, n_points: int, backend: str) -> int:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        cur = self._conn.execute(
            "INSERT INTO sweeps (created_utc, strategy, spec_json, n_points, status, backend) "
            "VALUES (?, ?, ?, ?, 'running', ?)",
            (now, spec.strategy, json.dumps(spec.to_json(), sort_keys=True), n_points, backend),
        )
        assert cur.lastrowid is not None
        self.last_created = int(cur.lastrowid)
        return self.last_created

    def get(self, sweep_id: int) -> SweepRecord:
        row = self._conn.execute(
            "SELECT sweep_id, created_utc, spec_json, n_points, status, backend, elapsed_s, "
            "(SELECT COUNT(*) FROM sweep_points p WHERE p.sweep_id = s.sweep_id) "
            "FROM sweeps s WHERE sweep_id = ?",
            (sweep_id,),
        ).fetchone()
        if row is None:
            raise ConfigError(f"sweep {sweep_id} does not exist in {self.path}")
        return SweepRecord(
            row[0], row[1], SweepSpec.from_json(json.loads(row[2])), row[3], row[4], row[5],
            row[6], row[7],
        )  # fmt: skip

    def recent(self, limit: int = 20) -> list[SweepRecord]:
        ids = self._conn.execute(
            "SELECT sweep_id FROM sweeps ORDER BY sweep_id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [self.get(i) for (i,) in ids]

    def done_ids(self, sweep_id: int) -> set[str]:
        rows = self._conn.execute(
            "SELECT point_id FROM sweep_points WHERE sweep_id = ?", (sweep_id,)
        )
        return {r[0] for r in rows}

    def add(self, sweep_id: int, results: list[dict[str, Any]]) -> int:
        """Insert finished points in one transaction; returns how many were new."""
        rows = [
            (sweep_id, r["point_id"], r["seq"], r["data"], r["window"],
             json.dumps(r["params"], sort_keys=True),
             None if r["metrics"] is None else json.dumps(r["metrics"]),
             r["error"], r["run_id"], r["elapsed_s"])
            for r in results
        ]  # fmt: skip
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO sweep_points (sweep_id, point_id, seq, data, window_label,"
                " params_json, metrics_json, error, run_id, elapsed_s)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            added = conn.total_changes - before
            conn.execute("COMMIT")
        except sqlite3.Error:
            conn.execute("ROLLBACK")
            raise
        return added

    def finish(self, sweep_id: int, status: str, backend: str, elapsed_s: float) -> None:
        self._conn.execute(
            "UPDATE sweeps SET status = ?, backend = ?, elapsed_s = elapsed_s + ? "
            "WHERE sweep_id = ?",
            (status, backend, elapsed_s, sweep_id),
        )

    def points(self, sweep_id: int) -> list[PointRow]:
        rows = self._conn.execute(
            "SELECT point_id, seq, data, window_label, params_json, metrics_json, error, "
            "run_id, elapsed_s FROM sweep_points WHERE sweep_id = ? ORDER BY seq",
            (sweep_id,),
        )
        return [
            PointRow(r[0], r[1], r[2], r[3], json.loads(r[4]),
                     None if r[5] is None else json.loads(r[5]), r[6], r[7], r[8])
            for r in rows
        ]  # fmt: skip
