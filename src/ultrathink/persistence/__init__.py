"""Persistence: SQLite (WAL) store, single writer thread, hash-chained audit log.

SQL lives only in this package. The kernel hands :class:`WriteBatch` records to a
:class:`StoreWriter` (one writer thread, one transaction per batch); the CLI, reports and
the web read through :class:`Store`; :func:`verify_audit` checks the audit chain.
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
