"""Persistence: SQLite (WAL) store, single writer, hash-chained audit log of the economic record.

SQL lives only in this package. The kernel hands :class:`WriteBatch` records to a writer
(one transaction per batch, audit rows included); the CLI, reports and the web read through
:class:`Store` (``Store(path, readonly=True)`` for a store they may not write);
:func:`verify_audit` checks the audit chain and cross-checks the tables against it.
"""

from ultrathink.persistence.audit import AuditReport, verify_audit
from ultrathink.persistence.records import PositionRecord, RunRecord, WriteBatch
from ultrathink.persistence.store import Store
from ultrathink.persistence.writer import StoreWriter

__all__ = [
    "AuditReport",
    "PositionRecord",
    "RunRecord",
    "Store",
    "StoreWriter",
    "WriteBatch",
    "verify_audit",
]
