"""The store writer contract over both writers: a thread and a process, on real SQLite files."""

from __future__ import annotations

from pathlib import Path

from ultrathink.persistence import StoreWriter
from ultrathink.persistence.process_writer import ProcessStoreWriter
from ultrathink.testing.contracts import StoreWriterContract, StoreWriterLike


class TestStoreWriter(StoreWriterContract):
    def make_writer(self, path: Path) -> StoreWriterLike:
        return StoreWriter(path, max_queue_batches=4)  # small: put meets back-pressure


class TestProcessStoreWriter(StoreWriterContract):
    def make_writer(self, path: Path) -> StoreWriterLike:
        return ProcessStoreWriter(path, max_pending=2)
