"""The server's durable side: prediction ids, feedback and admin events in SQLite.

A prediction id carries what its feedback needs: the version that answered, the probability
it gave, the worker and a sequence number, signed with a keyed BLAKE2b MAC. Any worker can
therefore record feedback for any prediction without a shared in-memory table, and a forged
or mistyped id is refused. The MAC key lives in the store, so ids outlive a restart.

``serving.db`` holds:

* ``meta``: the MAC key;
* ``feedback``: one row per prediction id (a second report of the same id is refused), with
  the version, the probability and the realised outcome: the per-variant log loss and AUC,
  and the A/B test before a promotion, are computed from it;
* ``events``: reloads, routing changes, promotions, rollbacks and canary roll-backs, with
  who (the client address) and why.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import sqlite3
import struct
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ultrathink.errors import ConfigError

__all__ = ["IdCodec", "ServingStore"]

_HEAD = struct.Struct("<dHQ")  # probability, worker, sequence
_MAC = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS feedback (
    id TEXT PRIMARY KEY, version TEXT NOT NULL, p REAL NOT NULL, outcome INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS feedback_version ON feedback (version);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts_ns INTEGER NOT NULL, kind TEXT NOT NULL,
    who TEXT NOT NULL, detail TEXT NOT NULL);
"""


class IdCodec:
    """Makes and reads signed prediction ids (see the module docstring)."""

    __slots__ = ("_key", "worker")

    def __init__(self, key: bytes, worker: int) -> None:
        self._key = key
        self.worker = worker

    def make(self, version: str, p: float, seq: int) -> str:
        payload = _HEAD.pack(p, self.worker, seq) + version.encode()
        mac = hashlib.blake2b(payload, key=self._key, digest_size=_MAC).digest()
        return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")

    def read(self, pid: str) -> tuple[str, float] | None:
        """``(version, probability)`` of a genuine id, else None."""
        try:
            raw = base64.urlsafe_b64decode(pid + "=" * (-len(pid) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) <= _HEAD.size + _MAC:
            return None
        if base64.urlsafe_b64encode(raw).decode().rstrip("=") != pid:
            return None  # only the spelling ``make`` wrote: one prediction, one id string
        payload, mac = raw[:-_MAC], raw[-_MAC:]
        good = hashlib.blake2b(payload, key=self._key, digest_size=_MAC).digest()
        if not hmac.compare_digest(mac, good):
            return None
        p = _HEAD.unpack_from(payload)[0]
        try:
            version = payload[_HEAD.size :].decode()
        except UnicodeDecodeError:
            return None
        return version, p


class ServingStore:
    """``serving.db``: one connection, used from one thread at a time (a lock guards it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, timeout=30.0)
            self._db.execute("PRAGMA synchronous=NORMAL")
            # a prepared store (WAL, tables, MAC key) is opened without any write: SQLite
            # answers "database is locked" at once, busy timeout or not, when two processes
            # switch a new file to WAL together, so the supervisor prepares it before the
            # workers start (``prepare``) and the workers only read here
            if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self._db.execute("PRAGMA journal_mode=WAL")
            if not self._prepared():
                self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot open the serving store {path} ({exc}); pass --serving-db PATH in a "
                "writable directory"
            ) from None
        self._lock = threading.Lock()

    @classmethod
    def prepare(cls, path: Path) -> None:
        """Create the store, its tables and its MAC key, so workers opening it write nothing."""
        store = cls(path)
        try:
            store.mac_key()
        finally:
            store.close()

    def _prepared(self) -> bool:
        names = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        return {"meta", "feedback", "feedback_version", "events"} <= names

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def mac_key(self) -> bytes:
        """The id MAC key, made once per store (a race between workers keeps the first)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'mac_key'").fetchone()
            if row is None:
                with self._db:
                    self._db.execute(
                        "INSERT OR IGNORE INTO meta (key, value) VALUES ('mac_key', ?)",
                        (os.urandom(32),),
                    )
                row = self._db.execute("SELECT value FROM meta WHERE key = 'mac_key'").fetchone()
        return bytes(row[0])

    def add_feedback(self, pid: str, version: str, p: float, outcome: int) -> bool:
        """Record an outcome; False when this id already has one."""
        try:
            with self._lock, self._db:
                self._db.execute(
                    "INSERT INTO feedback (id, version, p, outcome, ts_ns) VALUES (?, ?, ?, ?, ?)",
                    (pid, version, p, outcome, time.time_ns()),
                )
        except sqlite3.IntegrityError:
            return False
        return True

    def feedback(self, version: str) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and outcomes recorded for ``version``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT p, outcome FROM feedback WHERE version = ? ORDER BY ts_ns", (version,)
            ).fetchall()
        arr = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
        return arr[:, 0], arr[:, 1]

    def event(self, kind: str, who: str, detail: dict[str, Any]) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO events (ts_ns, kind, who, detail) VALUES (?, ?, ?, ?)",
                (time.time_ns(), kind, who, orjson.dumps(detail).decode()),
            )

    def events(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, ts_ns, kind, who, detail FROM events ORDER BY seq DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            {"seq": s, "ts_ns": t, "kind": k, "who": w, "detail": orjson.loads(d)}
            for s, t, k, w, d in rows
        ]
