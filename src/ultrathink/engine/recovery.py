"""Crash-safe restart: replay the session from its first bar, verify, then continue.

A paper session leaves three durable records, each written before anything depends on it:

* the venue's journal (``execution/journal.py``): every order state change and fill,
  committed before the engine hears of it — always the most recent record;
* the session's input log (``engine/inputs.py``): operator commands and wall-clock
  transitions, written before they apply;
* the engine's store: orders, fills, equity and the audit trail, in batches (one per bar
  when paced, every ``chunk_size`` timestamps at ``--speed max``), so it may lag the venue by
  anything from nothing to the whole run.

The engine is deterministic, so ``paper --resume`` does not guess where to continue: it runs
the session again from the first bar with the recorded inputs at their recorded positions
and the venue journaling into memory (``execution/journal_replay.py``), up to the last
instant any record reaches (``end_ts_ns``). Then it goes live:

1. the remaining inputs (those of the wait the session died in) apply;
2. the replayed venue is checked against its journal, which must hold exactly a prefix of
   the replay's records, and the rest is written (the records of the instant of the crash);
   anything else is ``JournalDivergence``: the resume stops and writes nothing;
3. the store gets what it lacks: replayed records up to the store's last equity point were
   already committed and are dropped, the later ones are written — each exactly once;
4. degraded mode and the feed watchdog start over (recorded as inputs), and trading goes on
   from the next bar, paced again if the session is.

Wherever the kill landed — during start-up, mid-run, at the end, paced or not — the resumed
run ends with the orders, fills and equity of a run that was never interrupted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ultrathink.engine.guards import Guards
from ultrathink.engine.inputs import SessionInputs
from ultrathink.execution.journal_replay import ReplayJournal

Batch = dict[str, Any]


class RecoveryReport(NamedTuple):
    """What a restart replayed, found and wrote."""

    replayed_to_ts_ns: int
    replayed_bars: int
    replayed_inputs: int
    store_end_ts_ns: int | None
    venue_records_on_disk: int
    venue_records_written: int
    store_records_written: int
    trading_state: str


class StoreGate:
    """Between the recorder and the store while a restart replays (see the module docstring).

    Records at or before ``store_end_ts_ns`` are already in the store and are dropped; the
    rest are held until ``release`` (after the venue check), then passed on. After the
    release every batch passes straight through.

    Parameters
    ----------
    put : callable
        Hands a batch to the store writer.
    store_end_ts_ns : int or None
        The store's last equity point (None: the store has nothing of the run yet).
    """

    def __init__(self, put: Callable[[Batch], None], store_end_ts_ns: int | None) -> None:
        self._put = put
        self._end = store_end_ts_ns if store_end_ts_ns is not None else -(2**63)
        self._dropped: set[str] = set()  # client order ids whose request the store has
        self._held: list[Batch] = []
        self._open = False
        self.n_records = 0

    def __call__(self, batch: Batch) -> None:
        if self._open:
            self._put(batch)
            return
        batch = self._filter(batch)
        if self._has_records(batch):
            self._held.append(batch)

    def release(self) -> int:
        """Pass the held batches on, in order; from now on batches pass straight through."""
        for batch in self._held:
            self.n_records += sum(len(batch[k]) for k in _LISTS)
            self._put(batch)
        self._held.clear()
        self._open = True
        return self.n_records

    def _filter(self, batch: Batch) -> Batch:
        end, dropped = self._end, self._dropped
        out = dict(batch)
        requests = []
        for r in batch["requests"]:
            if r.ts_ns <= end:
                dropped.add(r.client_order_id)
            else:
                requests.append(r)
        out["requests"] = requests
        out["approvals"] = [c for c in batch["approvals"] if c not in dropped]
        for key in ("denials", "events", "fills"):
            out[key] = [x for x in batch[key] if x.ts_ns > end]
        out["audit_extra"] = [a for a in batch["audit_extra"] if a[0] > end]
        equity = batch["equity"]
        if equity is not None:
            keep = equity[0] > end
            out["equity"] = tuple(np.asarray(a)[keep] for a in equity) if keep.any() else None
        return out

    @staticmethod
    def _has_records(batch: Batch) -> bool:
        return bool(batch["equity"] is not None or batch["positions"]) or any(
            batch[k] for k in _LISTS
        )


_LISTS = ("requests", "approvals", "denials", "events", "fills", "audit_extra")


class SessionReplay:
    """The kernel's ``Replay`` of a restarted session (see the module docstring).

    Parameters
    ----------
    end_ts_ns : int
        The last instant any durable record reaches: bars up to it are history.
    inputs : SessionInputs
        The recorded inputs, applied at their positions.
    guards : Guards or None
        Start wall-clock judgements over when the session goes live.
    journal : ReplayJournal or None
        The venue's journal in replay mode.
    gate : StoreGate
        Between the recorder and the store.
    audit : callable
        Appends ``(ts_ns, kind, detail)`` to the run's audit trail.
    state : callable
        The trading state now (for the report).
    now_ns : callable
        The run clock.
    n_bars : callable
        Bars replayed so far.
    store_end_ts_ns : int or None
        The store's last equity point, for the report.
    """

    def __init__(
        self,
        end_ts_ns: int,
        inputs: SessionInputs,
        guards: Guards | None,
        journal: ReplayJournal | None,
        gate: StoreGate,
        *,
        audit: Callable[[tuple[int, str, str]], None],
        state: Callable[[], str],
        now_ns: Callable[[], int],
        n_bars: Callable[[], int],
        store_end_ts_ns: int | None,
    ) -> None:
        self.end_ts_ns = end_ts_ns
        self._inputs = inputs
        self._guards = guards
        self._journal = journal
        self._gate = gate
        self._audit = audit
        self._state = state
        self._now_ns = now_ns
        self._n_bars = n_bars
        self._store_end = store_end_ts_ns
        #: what the restart did; set by ``go_live``
        self.report: RecoveryReport | None = None

    def idle(self, ts_ns: int) -> None:
        """Replaying: where a paced session waited for ``ts_ns``."""
        self._inputs.replay_idle()

    def go_live(self) -> None:
        """Apply the last inputs, verify and sync the venue, release the store's records."""
        self._inputs.finish_replay()
        sync = self._journal.go_live() if self._journal is not None else None
        n_store = self._gate.release()
        if self._guards is not None:
            self._guards.go_live()
        report = RecoveryReport(
            self._now_ns(), self._n_bars(), self._inputs.n_replayed, self._store_end,
            sync.n_on_disk if sync else 0, sync.n_written if sync else 0, n_store,
            self._state(),
        )  # fmt: skip
        self.report = report
        self._audit((self._now_ns(), "recovery.replayed", json.dumps(report._asdict())))
