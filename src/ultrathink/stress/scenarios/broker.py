"""Broker faults: timeouts, lost acks, venue rejects and duplicated fills, at set rates.

Each fault entry is one case: an unpaced paper session of the ``Flipper`` (a market order
every other bar) or the ``Quoter`` (a limit order cancelled and replaced every bar) whose
venue is ``venue_faults.FaultyVenue`` with the case's rates, seeded from the scenario's
seed. What must hold, besides the invariants:

* nothing is lost or duplicated: the store's orders and fills equal the venue journal's;
* every fault is accounted for by the engine's own records: each submit that raised is an
  ``execution.submit_failed`` row; one the venue never saw ends REJECTED "never received";
  one it did see is ``execution.adopted``; each failed cancel is an ``execution.cancel_failed``
  (or ``killswitch.cancel_failed``) row; each venue reject is a REJECTED order with the
  venue's reason; each fill the venue reported twice is one ``fill.duplicate`` row (the
  repeat dropped, never booked). ``uncounted_fallbacks`` sums every difference;
* a case with duplicated fills runs again without them (same seeds, so the same order
  flow): its orders, fills, positions, equity and venue journal must be the same
  (``duplicate_mismatches``);
* the execution breaker's trips and its ``BROKER_UNAVAILABLE`` denials are reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from ultrathink.data import load_data
from ultrathink.decision.strategy import Strategy
from ultrathink.engine.booking import DUPLICATE_FILL
from ultrathink.stress.base import STRICT, RunContext, Scenario
from ultrathink.stress.figures import bars_figure
from ultrathink.stress.inproc import PaperRun, paper_config, paper_run
from ultrathink.stress.invariants import NEVER_RECEIVED, read_rows, state_digest, venue_diff
from ultrathink.stress.measure import count_rows, latency_metric_names, latency_metrics
from ultrathink.stress.outcome import Case, Outcome
from ultrathink.stress.strategies import Flipper, Quoter
from ultrathink.stress.venue_faults import REJECT_REASON, FaultyVenue

_RATE = Field(default=0.0, ge=0.0, le=1.0)


class BrokerCase(BaseModel):
    """One case: the rate of each fault (0 = off)."""

    model_config = STRICT

    name: str = Field(pattern=r"^[a-z0-9_-]{1,40}$")
    timeout: float = _RATE
    lost_ack: float = _RATE
    reject: float = _RATE
    duplicate_fill: float = _RATE
    cancel: bool = True
    strategy: Literal["flipper", "quoter"] = "flipper"


class BrokerParams(BaseModel):
    """The data, the strategy's order flow, and engine settings (a config file's tables)."""

    model_config = STRICT

    n_bars: int = Field(default=600, ge=10, le=1_000_000)
    every: int = Field(default=2, ge=1)
    qty: float = Field(default=10.0, gt=0)
    engine: dict[str, Any] = Field(default_factory=dict)


class BrokerScenario(Scenario):
    """See the module docstring."""

    kind = "broker"
    metrics: ClassVar[Mapping[str, str]] = {
        "lost_orders": "orders the venue saw that the store lacks, over every case",
        "duplicated_orders": "requests sent to the venue twice (same time, symbol, side, qty)",
        "invented_orders": "stored orders sent but never seen by the venue, and not rejected",
        "lost_fills": "fills the venue executed that the store lacks",
        "duplicated_fills": "stored fills the venue never executed, or twice on one bar",
        "uncounted_fallbacks": "faults without their matching engine record (see the docs)",
        "injected_faults": "faults injected, every kind, every case",
        "breaker_trips": "execution breaker CLOSED -> OPEN transitions",
        "failed_runs": "cases whose session raised instead of completing",
        "duplicates_dropped": "repeated fill reports the engine dropped (fill.duplicate rows)",
        "duplicate_mismatches": "cases with duplicated fills whose state differs from the "
        "same flow reported once",
        **latency_metric_names("decision", "decision latency (service time)"),
    }
    params_model = BrokerParams
    fault_model = BrokerCase

    def run(self, ctx: RunContext) -> Outcome:
        params: BrokerParams = ctx.config.params
        data = load_data(f"synthetic:n_bars={params.n_bars},seed={ctx.config.seed}")
        config = paper_config(params.engine)
        outcome = Outcome()
        latencies: list[int] = []
        for i, case in enumerate(ctx.config.faults):
            seed = ctx.config.seed * 1000 + 10 * i
            venue = _venue(case, seed, case.duplicate_fill)
            db = ctx.work_dir / case.name / "stress.db"
            ctx.log(f"broker: {case.name}")
            run = paper_run(_strategy(case, params), data, config, db, broker_factory=venue)
            latencies += run.latency_ns
            result = _case(case, run, venue)
            if case.duplicate_fill > 0 and run.error is None:
                # the same flow (same seeds) with every fill reported once
                ctx.log(f"broker: {case.name}: the same flow without repeated fills")
                ref_db = ctx.work_dir / case.name / "once" / "stress.db"
                ref = paper_run(
                    _strategy(case, params), data, config, ref_db,
                    broker_factory=_venue(case, seed, 0.0),
                )  # fmt: skip
                same = (
                    ref.error is None
                    and ref.run_id is not None
                    and (state_digest(ref_db, ref.run_id) == result.figures.get("digest"))
                )
                result.figures["matches_reported_once"] = same
            outcome.cases.append(result)
        outcome.metrics.update(_totals(outcome.cases))
        outcome.metrics.update(latency_metrics("decision", latencies))
        outcome.figures.append(_figure(outcome.cases))
        return outcome


def _venue(case: BrokerCase, seed: int, duplicate_fill: float) -> FaultyVenue:
    return FaultyVenue(
        timeout=case.timeout,
        lost_ack=case.lost_ack,
        reject=case.reject,
        duplicate_fill=duplicate_fill,
        seed=seed,
        cancel=case.cancel,
    )


def _strategy(case: BrokerCase, params: BrokerParams) -> Strategy:
    if case.strategy == "flipper":
        return Flipper(every=params.every, qty=params.qty)
    return Quoter(qty=params.qty)


def _case(case: BrokerCase, run: PaperRun, venue: FaultyVenue) -> Case:
    result = Case(case.name, invariants=run.invariants())
    db, run_id = run.db, run.run_id
    if db is None or run_id is None:
        result.figures["error"] = repr(run.error)
        return result
    assert venue.timeouts and venue.lost_acks and venue.rejects and venue.duplicates
    timeouts, lost = venue.timeouts.faults, venue.lost_acks.faults
    submit_before = [f for f in timeouts if f.call == "submit"]
    submit_after = [f for f in lost if f.call == "submit"]
    cancels = [f for f in (*timeouts, *lost) if f.call == "cancel"]
    rejects = venue.rejects.rejected
    counted = {
        "submit_failed": count_rows(db, run_id, "execution.submit_failed"),
        "adopted": count_rows(db, run_id, "execution.adopted"),
        "cancel_failed": count_rows(db, run_id, "execution.cancel_failed")
        + count_rows(db, run_id, "killswitch.cancel_failed"),
        "never_received": _orders(db, run_id, "REJECTED", NEVER_RECEIVED),
        "venue_rejected": _orders(db, run_id, "REJECTED", REJECT_REASON),
        "duplicates_dropped": count_rows(db, run_id, DUPLICATE_FILL),
    }
    expected = {
        "submit_failed": len(submit_before) + len(submit_after),
        "adopted": len(submit_after),
        "cancel_failed": len(cancels),
        "never_received": len(submit_before),
        "venue_rejected": len(rejects),
        "duplicates_dropped": len(venue.duplicates.duplicated),
    }
    diff = venue_diff(db, run_id)
    result.figures.update(
        submits=venue.timeouts.n_submits,
        timeouts=len(submit_before),
        lost_acks=len(submit_after),
        cancel_faults=len(cancels),
        venue_rejects=len(rejects),
        duplicate_fills_sent=len(venue.duplicates.duplicated),
        duplicates_dropped=counted["duplicates_dropped"],
        uncounted=sum(abs(counted[k] - expected[k]) for k in counted),
        breaker_trips=_trips(db, run_id),
        broker_unavailable=_orders(db, run_id, "DENIED", "BROKER_UNAVAILABLE"),
        lost_orders=len(diff.lost_orders),
        duplicated_orders=len(diff.duplicated_orders),
        invented_orders=len(diff.invented_orders),
        lost_fills=len(diff.lost_fills),
        duplicated_fills=len(diff.duplicated_fills),
        completed=run.error is None,
        digest=state_digest(db, run_id) if run.error is None else None,
    )
    if run.error is not None:
        result.figures["error"] = repr(run.error)[:300]
    return result


def _orders(db: Path, run_id: int, status: str, reason: str) -> int:
    # the run's orders in ``status`` whose reason starts with ``reason``
    rows = read_rows(
        db,
        "SELECT COUNT(*) FROM orders WHERE run_id = ? AND status = ? AND reason LIKE ?",
        (run_id, status, f"{reason}%"),
    )
    return int(rows[0][0]) if rows else 0


def _trips(db: Path, run_id: int) -> int:
    rows = read_rows(
        db,
        "SELECT COUNT(*) FROM audit_log WHERE run_id = ? AND kind = 'breaker.execution' "
        "AND detail LIKE 'CLOSED -> OPEN%'",
        (run_id,),
    )
    return int(rows[0][0]) if rows else 0


def _totals(cases: list[Case]) -> dict[str, float | None]:
    def total(key: str) -> float:
        return float(sum(int(c.figures.get(key, 0) or 0) for c in cases))

    injected = sum(
        total(k) for k in ("timeouts", "lost_acks", "cancel_faults", "venue_rejects")
    ) + total("duplicate_fills_sent")
    return {
        "lost_orders": total("lost_orders"),
        "duplicated_orders": total("duplicated_orders"),
        "invented_orders": total("invented_orders"),
        "lost_fills": total("lost_fills"),
        "duplicated_fills": total("duplicated_fills"),
        "uncounted_fallbacks": total("uncounted"),
        "injected_faults": injected,
        "breaker_trips": total("breaker_trips"),
        "failed_runs": float(sum(not c.figures.get("completed", False) for c in cases)),
        "duplicates_dropped": total("duplicates_dropped"),
        "duplicate_mismatches": float(
            sum(c.figures.get("matches_reported_once") is False for c in cases)
        ),
    }


def _figure(cases: list[Case]) -> tuple[str, str, object]:
    labels = [c.name for c in cases]
    keys = ("timeouts", "lost_acks", "cancel_faults", "venue_rejects", "breaker_trips")
    groups = {k: [float(c.figures.get(k, 0) or 0) for c in cases] for k in keys}
    note = "faults injected per case and the execution breaker's trips they caused"
    return "broker faults per case", note, bars_figure(labels, groups, "count")


SCENARIO = BrokerScenario
