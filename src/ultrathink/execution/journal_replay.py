"""A venue journal that a restart replays into, then verifies against the file, then syncs.

After a crash the engine replays the session from its first bar (``engine/recovery.py``):
the paper venue runs again, deterministically, and asks to journal every change exactly as
it did the first time. While replaying, ``ReplayJournal`` keeps those records in memory
instead of writing them. ``go_live`` then checks them against the journal on disk, which
must hold exactly a prefix of them — the records committed before the crash — and writes
the rest (the records of the instant the session died in), after which records go to disk
as usual. A journal on disk that is *not* such a prefix means the replay diverged from what
the venue did (different code, data or configuration): ``JournalDivergence``, and nothing
is written.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from ultrathink.core.events import Fill
from ultrathink.errors import PersistenceError
from ultrathink.execution.journal import ORDER_COLUMNS, VenueJournal, order_row
from ultrathink.execution.orders import Order

# columns an upsert changes (the request's own columns keep their first value)
_MUTABLE = frozenset(
    ORDER_COLUMNS.index(c)
    for c in (
        "status", "is_open", "filled_qty", "avg_fill_price", "is_triggered", "eligible_ns",
        "reason", "updated_ns",
    )
)  # fmt: skip
_LAST_FILL = ORDER_COLUMNS.index("last_fill_ts_ns")


class JournalDivergence(PersistenceError):
    """The replayed venue does not match the venue's journal: the restart cannot be exact."""


class SyncReport(NamedTuple):
    """What ``go_live`` found on disk and wrote."""

    n_on_disk: int  # records the journal already held (a prefix of the replay)
    n_written: int  # records of the replay written now
    n_orders: int
    n_fills: int


class _Record(NamedTuple):
    row: tuple[Any, ...]  # the order's state as this record wrote it
    fill: Fill | None


class ReplayJournal:
    """The journal sink of a restarted paper venue (see the module docstring).

    Parameters
    ----------
    journal : VenueJournal
        The file.
    replaying : bool
        False: a new session, every record goes to the file at once.
    """

    def __init__(self, journal: VenueJournal, *, replaying: bool) -> None:
        self.journal = journal
        self.path = journal.path
        self.replaying = replaying
        self._records: list[_Record] = []

    def record(
        self,
        order: Order,
        fill: Fill | None = None,
        reason: str = "",
        *,
        updated_ns: int | None = None,
    ) -> None:
        """Journal one change (``VenueJournal.record``); kept in memory while replaying."""
        if not self.replaying:
            self.journal.record(order, fill, reason, updated_ns=updated_ns)
            return
        if updated_ns is None:
            updated_ns = 0 if fill is None else fill.ts_ns
        last_fill = None if fill is None else fill.ts_ns
        row = _normal(order_row(order, last_fill, reason, updated_ns))
        self._records.append(_Record(row, fill))

    def last_ts_ns(self) -> int:
        """The latest time any record on disk reaches (an order update or a fill); -1: none."""
        orders, fills = self.journal.raw_rows()
        updated = ORDER_COLUMNS.index("updated_ns")
        times = [row[updated] for row in orders.values()] + [row[0] for row in fills]
        return max(times, default=-1)

    def go_live(self) -> SyncReport:
        """Verify the replay against the file, write what the file lacks, then write through.

        Raises
        ------
        JournalDivergence
            If the file is not a prefix of the replay (nothing is written then).
        """
        disk_orders, disk_fills = self.journal.raw_rows()
        records = self._records
        k = _prefix_length(records, disk_orders, disk_fills, self.path)
        self.journal.write_rows([(r.row, r.fill) for r in records[k:]])
        self._records = []
        self.replaying = False
        n_fills = sum(r.fill is not None for r in records)
        return SyncReport(k, len(records) - k, len({r.row[0] for r in records}), n_fills)

    def close(self) -> None:
        """Close the file."""
        self.journal.close()


def _normal(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # as SQLite gives it back: bools as ints, NaN as NULL
    return tuple(
        int(v) if isinstance(v, bool) else (None if isinstance(v, float) and math.isnan(v) else v)
        for v in row
    )


def _prefix_length(
    records: list[_Record],
    disk_orders: dict[str, tuple[Any, ...]],
    disk_fills: list[tuple[Any, ...]],
    path: object,
) -> int:
    # the k such that applying records[:k] gives exactly the disk's orders and fills
    n_fills = len(disk_fills)
    fills = [tuple(r.fill) for r in records if r.fill is not None]
    for i, (mine, theirs) in enumerate(zip(fills, disk_fills, strict=False)):
        if _normal(mine) != tuple(theirs):
            raise _diverged(path, f"fill #{i + 1} is {theirs} on disk, {mine} in the replay")
    if n_fills > len(fills):
        raise _diverged(path, f"the journal has {n_fills} fills, the replay only {len(fills)}")
    state: dict[str, tuple[Any, ...]] = {}
    wrong = set(disk_orders)  # orders whose replayed row differs from the disk's
    seen_fills = 0
    for k in range(len(records) + 1):
        if seen_fills == n_fills and not wrong:
            return k
        if k == len(records):
            break
        rec = records[k]
        seen_fills += rec.fill is not None
        if seen_fills > n_fills:
            break
        coid = rec.row[0]
        state[coid] = _upsert(state.get(coid), rec.row)
        if disk_orders.get(coid) == state[coid]:
            wrong.discard(coid)
        else:
            wrong.add(coid)
    first = sorted(wrong)[:3]
    detail = (
        "; ".join(f"{c}: disk {disk_orders.get(c)!r}, replay {state.get(c)!r}" for c in first)
        or "order states differ"
    )
    raise _diverged(path, detail)


def _upsert(old: tuple[Any, ...] | None, new: tuple[Any, ...]) -> tuple[Any, ...]:
    if old is None:
        return new
    merged = [new[i] if i in _MUTABLE else old[i] for i in range(len(new))]
    merged[_LAST_FILL] = new[_LAST_FILL] if new[_LAST_FILL] is not None else old[_LAST_FILL]
    return tuple(merged)


def _diverged(path: object, detail: str) -> JournalDivergence:
    return JournalDivergence(
        f"the replay of this session does not match its venue journal {path} ({detail[:300]}); "
        "the code, the data or the configuration changed since the session started: resume "
        "it with the same version, data and options, or start a new session"
    )
