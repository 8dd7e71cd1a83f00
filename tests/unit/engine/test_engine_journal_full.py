"""A venue journal that cannot be written (a full disk) stops the session; it is never
absorbed into a REJECTED order or a held decision.

The venue commits each order change to its journal before the engine hears of it. When that
commit fails, the order's fate is not an outcome a resume could replay: on ``--resume`` the
journal has room again and the venue accepts the order. So a submit, a fill or a cancel
whose journal write fails must stop the session with the ``PersistenceError`` itself (one
``error: cannot write venue journal …`` line), not be booked ``REJECTED`` by the router's
unknown-outcome path, held by the decision guard or reported as a strategy error. Then the
store is behind the venue, never ahead, and the resumed run equals an uninterrupted one.

Paper sessions with their real SQLite store and venue journal, in this process. The fault
is the real journal wrapped so that its writes fail from the Nth on, with the error the
journal raises on ``SQLITE_FULL`` (the disk stays full: every later write fails too).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ultrathink.core.clock import Clock
from ultrathink.core.events import Fill
from ultrathink.data import load_data
from ultrathink.engine.runner import Session
from ultrathink.engine.spec import BrokerFactory, RunSpec
from ultrathink.errors import PersistenceError
from ultrathink.execution.broker import Broker, ExecutionSink
from ultrathink.execution.costs import PaperBrokerConfig
from ultrathink.execution.orders import Order
from ultrathink.execution.paper import JournalSink, PaperBroker
from ultrathink.stress.inproc import paper_config, paper_run
from ultrathink.stress.invariants import check_any_instant, read_rows, run_state
from ultrathink.stress.strategies import Flipper, Quoter

DATA = "synthetic:n_bars=160,seed=4,symbols=AAA+BBB"


class FullDisk:
    """The real journal, whose writes fail from the ``fail_from``-th on (1-based)."""

    def __init__(self, journal: JournalSink, fail_from: int) -> None:
        self._journal, self._fail_from, self.calls = journal, fail_from, 0
        self.kinds: list[str] = []

    def record(
        self, order: Order, fill: Fill | None = None, reason: str = "", *,
        updated_ns: int | None = None,
    ) -> None:  # fmt: skip
        self.calls += 1
        if self.calls >= self._fail_from:
            self.kinds.append("fill" if fill is not None else order.status.value)
            raise PersistenceError(
                "cannot write venue journal venue.sqlite: database or disk is full"
            )
        self._journal.record(order, fill, reason, updated_ns=updated_ns)


def full_disk_from(n: int, seen: list[FullDisk]) -> BrokerFactory:
    def factory(
        config: PaperBrokerConfig, clock: Clock, sink: ExecutionSink, journal: JournalSink | None
    ) -> Broker:
        assert journal is not None, "a paper session has a venue journal"
        wrapped = FullDisk(journal, n)
        seen.append(wrapped)
        return PaperBroker(config, clock, sink, wrapped)

    return factory


STRATEGIES = {"flipper": lambda: Flipper(every=2, qty=5.0), "quoter": lambda: Quoter(qty=5.0)}


@pytest.mark.parametrize(
    ("strategy", "fail_from", "write"),
    [("flipper", 5, "ACCEPTED"), ("flipper", 24, "fill"), ("quoter", 9, "CANCELLED"),
     ("quoter", 30, "ACCEPTED")],
    ids=["submit", "fill", "cancel", "submit-among-cancels"],
)  # fmt: skip
def test_a_journal_write_that_fails_stops_the_session_and_the_resume_equals_the_reference(
    tmp_path: Path, strategy: str, fail_from: int, write: str
) -> None:
    data, config = load_data(DATA), paper_config({})
    reference = paper_run(STRATEGIES[strategy](), data, config, tmp_path / "ref.db")
    assert reference.error is None
    expected = run_state(tmp_path / "ref.db")
    db = tmp_path / "full.db"
    seen: list[FullDisk] = []

    run = paper_run(STRATEGIES[strategy](), data, config, db, full_disk_from(fail_from, seen))

    assert type(run.error) is PersistenceError, f"the session went on: {run.error!r}"
    assert "cannot write venue journal" in str(run.error)
    assert seen[0].kinds == [write], "the fault met that write, and nothing was tried after"
    assert read_rows(db, "SELECT status FROM runs") == [("failed",)]
    assert check_any_instant(db) == [], "the store never leads the venue"
    never_sent = "SELECT COUNT(*) FROM orders WHERE status = 'REJECTED'"
    assert read_rows(db, never_sent) == [(0,)], "no order was booked REJECTED for it"
    guarded = (
        "SELECT COUNT(*) FROM audit_log WHERE kind LIKE 'decision.%' OR kind LIKE 'execution.%'"
    )
    assert read_rows(db, guarded) == [(0,)], "no hold, no unknown-outcome query"

    resumed = Session(RunSpec(STRATEGIES[strategy](), data, config, "paper", db, resume_run_id=1))
    with resumed.open():
        resumed.run()

    state = run_state(db)
    for key, value in expected.items():
        assert state[key] == value, f"{key} differs from the uninterrupted run"
