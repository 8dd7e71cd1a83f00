"""Running a spec: the store, the session's lock and files, the engine, the result.

``Session`` is one run from start to end::

    with Session(spec).open() as session:   # store row, OS lock, writer, wired engine
        ...                                  # the caller may serve session.control now
        result = session.run(progress)       # the kernel loop, final flush, summary

Backtest and paper runs share everything; paper only adds a pacer on the live clock (the
logical clock still follows the bars, so fills and day boundaries are those of the data),
the venue journal, the input log and the lock, and uses realistic costs and production
limits by default. ``run(spec)`` does all of it in one call.
"""

from __future__ import annotations

import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ultrathink import __version__
from ultrathink.core.enums import OrderStatus
from ultrathink.engine.feed_bars import FeedBars
from ultrathink.engine.guards import Guards
from ultrathink.engine.inputs import SessionInputs
from ultrathink.engine.kernel import Kernel, ProgressFn, StopToken, paused_gc
from ultrathink.engine.recorder import BatchSink, Recorder
from ultrathink.engine.recovery import SessionReplay, StoreGate
from ultrathink.engine.results import RunResult
from ultrathink.engine.sessions import (
    FEED_JOURNAL_NAME,
    INPUTS_NAME,
    VENUE_JOURNAL_NAME,
    RunLock,
    archive_stale,
    session_dir,
)
from ultrathink.engine.spec import RunSpec
from ultrathink.engine.wiring import Engine, SessionIO, build_engine
from ultrathink.errors import ConfigError
from ultrathink.portfolio.metrics import compute_metrics

if TYPE_CHECKING:
    from ultrathink.persistence import Store

__all__ = ["RunSpec", "Session", "code_version", "run"]


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit when run from a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
            check=False,
        )
        commit = out.stdout.strip()
    except OSError:
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__


def run(spec: RunSpec, progress: ProgressFn | None = None) -> RunResult:
    """Run ``spec`` to completion and return its result; persists when ``db_path`` is set."""
    with Session(spec).open() as session:
        return session.run(progress)


class Session:
    """One run of ``spec`` (see the module docstring).

    Attributes (after ``open``)
    ---------------------------
    run_id : int or None
        The stored run (None without a store).
    engine : Engine
        The wired components (control channel, snapshots, stop token, kernel).
    directory : Path or None
        The paper session's directory (journal, inputs, lock, control file).
    """

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.run_id: int | None = None
        self.directory: Path | None = None
        self._store: Store | None = None
        self._writer: Any = None
        self._lock: RunLock | None = None
        self._io = SessionIO()
        self._journal: Any = None
        self._replay: SessionReplay | None = None
        self._data_hash = spec.data.sha256()
        self._finished = False
        self.engine: Engine

    # -- life cycle ---------------------------------------------------------------------------
    def open(self) -> Session:
        """Create (or reopen) the stored run, take its lock, start the writer, wire the engine."""
        try:
            sink = self._open_store()
            recorder = Recorder(sink, self.spec.config.starting_cash)
            self.engine = build_engine(self.spec, recorder, run_id=self.run_id, io=self._io)
            engine = self.engine  # readers (ctl status) see the session before its first bar
            engine.snapshots.publish(0, engine.parts.clock.now_ns(), engine.inputs.replaying)
        except BaseException:
            self._abort()
            raise
        return self

    def run(self, progress: ProgressFn | None = None) -> RunResult:
        """Run the kernel to the end (or a stop), store everything, return the result."""
        status = "failed"
        try:
            result, status = self._drive(progress)
        finally:
            if status == "failed":
                self._abort()
        self._finish(result, status)
        return result

    def close(self) -> None:
        """Release everything (idempotent); an unfinished run is marked failed."""
        if not self._finished:
            self._abort()

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def stop(self) -> StopToken:
        """Request a stop at the next timestamp (what Ctrl-C does)."""
        return self.engine.stop

    # -- opening ------------------------------------------------------------------------------
    def _open_store(self) -> BatchSink | None:
        spec = self.spec
        if spec.db_path is None:
            if spec.resume_run_id is not None:
                raise ConfigError("--resume needs the store the run was written to")
            return None
        from ultrathink.persistence import Store  # lazy: a run without a store never needs it

        store = self._store = Store(spec.db_path)
        if spec.resume_run_id is not None:
            self._reopen(store, spec.resume_run_id)
        else:
            self.run_id = store.create_run(
                kind=spec.mode, strategy=spec.strategy.name, params=spec.strategy.get_params(),
                config=spec.config.model_dump(mode="json"), data_name=spec.data.name,
                data_hash=self._data_hash, code_version=code_version(), started_ns=time.time_ns(),
            )  # fmt: skip
            if spec.mode == "paper":
                self._lock_session(self.run_id)
                self._archive_stale()
        from ultrathink.persistence import WriteBatch
        from ultrathink.persistence.process_writer import ProcessStoreWriter

        writer = self._writer = ProcessStoreWriter(spec.db_path)
        rid = self.run_id
        assert rid is not None

        def put(batch: dict[str, Any]) -> None:
            writer.put(WriteBatch(run_id=rid, **batch))

        if self.directory is None:
            return put
        return self._session_io(store, put)

    def _reopen(self, store: Store, run_id: int) -> None:
        record = store.get_run(run_id)
        if record.kind != "paper":
            raise ConfigError(f"run {run_id} is a {record.kind} run; only paper runs resume")
        if record.status == "completed":
            raise ConfigError(f"run {run_id} already completed; nothing to resume")
        if record.data_hash != self._data_hash:
            raise ConfigError(
                f"the data differs from run {run_id}'s ({record.data_name}): pass the same "
                "--data, --start and --end as the original run"
            )
        self._lock_session(run_id)  # before anything is written: a live run is never touched
        self.run_id = run_id
        store.reopen_run(run_id)

    def _lock_session(self, run_id: int) -> None:
        assert self.spec.db_path is not None
        directory = session_dir(self.spec.db_path, run_id)
        self._lock = RunLock(directory, run_id).acquire()
        self.directory = directory

    def _archive_stale(self) -> None:
        # a new run's directory must be empty: another store's journal would be replayed
        assert self.directory is not None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        moved = archive_stale(self.directory, stamp)
        if moved is not None:
            print(
                f"note: run {self.run_id} is new in this store but {self.directory} held "
                f"another store's session files (a deleted store?): moved them to {moved}",
                file=sys.stderr, flush=True,
            )  # fmt: skip

    def _session_io(self, store: Store, put: BatchSink) -> BatchSink:
        # the venue journal and the input log; a resume replays into them first
        from ultrathink.engine.inputs import read_inputs
        from ultrathink.execution.journal import VenueJournal
        from ultrathink.execution.journal_replay import ReplayJournal

        assert self.directory is not None and self.run_id is not None
        resume = self.spec.resume_run_id is not None
        if isinstance(self.spec.data, FeedBars):  # its bars are journaled, a resume's history
            self.spec.data.attach_journal(self.directory / FEED_JOURNAL_NAME, resume)
        journal = ReplayJournal(VenueJournal(self.directory / VENUE_JOURNAL_NAME), replaying=resume)
        self._journal = journal
        inputs_path = self.directory / INPUTS_NAME
        if not resume:
            self._io = SessionIO(journal=journal, inputs_path=inputs_path)
            return put
        recorded = read_inputs(inputs_path)
        ts, _, _ = store.load_equity(self.run_id)
        store_end = int(ts[-1]) if ts.size else None
        end = max(store_end or -1, journal.last_ts_ns(), *(i.ts_ns for i in recorded))
        gate = StoreGate(put, store_end)

        def replay(inputs: SessionInputs, guards: Guards | None) -> SessionReplay:
            self._replay = SessionReplay(
                end, inputs, guards, journal, gate,
                audit=lambda row: self.engine.parts.recorder.audit(row),
                state=lambda: self.engine.parts.risk.state.value,
                now_ns=lambda: self.engine.parts.clock.now_ns(),
                n_bars=lambda: self.engine.kernel.position.n, store_end_ts_ns=store_end,
            )  # fmt: skip
            return self._replay

        self._io = SessionIO(journal, inputs_path, recorded, replay)
        return gate

    # -- running ------------------------------------------------------------------------------
    def _drive(self, progress: ProgressFn | None) -> tuple[RunResult, str]:
        kernel, writer = self.engine.kernel, self._writer
        t0 = time.perf_counter()
        status = "completed"
        with paused_gc():  # as in the kernel loop: through the final flush and drain too
            try:
                kernel.run(self.spec.data, progress)
            except KeyboardInterrupt:  # a second Ctrl-C, or a backtest's first
                status = "interrupted"
            if kernel.stopped:
                status = "interrupted"
            kernel.finish()
            if writer is not None:
                writer.flush()  # every batch committed: the end of the timed run
            elapsed = time.perf_counter() - t0
            self.engine.snapshots.publish(kernel.n_bars, kernel.clock.now_ns(), finished=True)
        return self._result(elapsed), status

    def _finish(self, result: RunResult, status: str) -> None:
        self._finished = True
        try:
            if self._writer is not None:
                self._writer.close()  # checkpoint and process exit: housekeeping, not timed
            store = self._store
            if store is not None and self.run_id is not None:
                result.audit_head = store.audit_head()  # the stored summary's: before finishing
                summary = result.summary(include_fills=False)
                # what the caller publishes: the head after the run's own run.finished row
                result.audit_head = store.finish_run(self.run_id, status, summary, time.time_ns())
        finally:
            self._release()

    def _abort(self) -> None:
        # a failure anywhere: stop the writer, mark the run failed, release the files
        self._finished = True
        try:
            if self._writer is not None:
                self._writer.close()
        finally:
            try:
                if self._store is not None and self.run_id is not None:
                    self._store.finish_run(self.run_id, "failed", {}, time.time_ns())
            finally:
                self._release()

    def _release(self) -> None:
        if isinstance(self.spec.data, FeedBars):
            self.spec.data.close()
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.inputs.close()
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- the result ---------------------------------------------------------------------------
    def _result(self, elapsed: float) -> RunResult:
        spec, kernel, parts = self.spec, self.engine.kernel, self.engine.parts
        ts, equity, cash, exposed = parts.recorder.equity_curve()
        pf = parts.portfolio
        metrics = compute_metrics(
            ts, equity, exposed, pf.closed_trades, pf.traded_notional, pf.total_fees,
            pf.starting_cash,
        )  # fmt: skip
        booked = parts.booker.status_counts
        counts = {s.value: n for s, n in sorted(booked.items())}
        open_orders = len(parts.broker.open_orders())
        if open_orders:
            counts["OPEN"] = open_orders
        replay = self._replay.report if self._replay is not None else None
        guards = parts.guards
        return RunResult(
            run_id=self.run_id, mode=spec.mode, strategy=spec.strategy.name,
            params=spec.strategy.get_params(), data_name=spec.data.name,
            data_hash=self._data_hash, symbols=spec.data.symbols, n_bars=kernel.n_bars,
            elapsed_s=elapsed, metrics=metrics, fills=parts.recorder.all_fills,
            trades=list(pf.closed_trades), ts_ns=ts, equity=equity, cash=cash,
            order_counts=counts, n_denied=booked.get(OrderStatus.DENIED, 0),
            final_positions={s: p.quantity for s, p in pf.positions().items() if p.quantity},
            denial_reasons=dict(parts.recorder.denial_reasons),
            strategy_stats=spec.strategy.stats(), latency_us=_latency(kernel, spec),
            trading_state=parts.risk.state.value, trading_state_reason=parts.risk.state_reason,
            recovery=replay._asdict() if replay is not None else None,
            hardening_events=[e._asdict() for e in guards.events] if guards else [],
            capped_buys=parts.facade.n_capped_buys,
            repeated_denials=parts.recorder.repeated_denials(),
            feed=spec.data.stats() if isinstance(spec.data, FeedBars) else None,
        )  # fmt: skip


def _latency(kernel: Kernel, spec: RunSpec) -> dict[str, float] | None:
    # decision latency after warm-up (the log skips each symbol's first bars)
    return kernel.latency.percentiles_us() if kernel.latency is not None else None
