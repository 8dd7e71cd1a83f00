"""The serving store: prepared once, then opened by workers without any write."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ultrathink.errors import ConfigError
from ultrathink.serving.store import ServingStore


def test_a_prepared_store_opens_while_another_process_holds_the_write_lock(
    tmp_path: Path,
) -> None:
    # two workers starting together once failed with "database is locked": SQLite does not
    # wait for a journal-mode switch. A prepared store must open and give its key while a
    # writer holds the lock, so the only write of a worker's start-up is gone.
    path = tmp_path / "serving.db"
    ServingStore.prepare(path)
    key = ServingStore(path).mac_key()
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        store = ServingStore(path)
        assert store.mac_key() == key
        assert store.events() == []
        store.close()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_mac_key_outlives_a_reopen_and_feedback_is_recorded_once(tmp_path: Path) -> None:
    path = tmp_path / "serving.db"
    first = ServingStore(path)  # not prepared: it creates what it needs itself
    key = first.mac_key()
    assert len(key) == 32
    assert first.add_feedback("id1", "v0001", 0.7, 1)
    assert not first.add_feedback("id1", "v0001", 0.2, 0)
    first.close()
    again = ServingStore(path)
    assert again.mac_key() == key
    p, y = again.feedback("v0001")
    assert p.tolist() == [0.7] and y.tolist() == [1.0]


def test_an_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot open the serving store"):
        ServingStore(blocker / "serving.db")
