"""Market crashes against the crash detector: drops, a flash crash, a gap, a halt.

Each fault is one market event, run on each dataset: synthetic bars generated with the event
as a scenario item, and the embedded sp500 with the same event spliced in
(``stress/splice.py``). Every case runs the ``Rebuyer`` (fully invested; whenever flat it asks
to buy back, so every bar after a halt tries an exposure-increasing order) twice, as an
unpaced paper session: protected by the crash detector alone (``kill_switch.crash``; the
loss limits and their kill-switch trigger are off, so nothing else acts) and unprotected.

Measured per case: the bar where the closes first cross the detector's threshold (computed
here from the data, as the detector defines it), the bar of the halt (its
``killswitch.triggered`` audit row), orders that passed after HALTED other than the kill
switch's own, whether the flatten completed and how many bars it took, and both runs' final
loss and maximum drawdown.

A halt is modelled as the exchanges' trading halt: no bars for ``n_bars`` (the price path
runs on underneath), then a reopening ``reopen_pct`` away. A frozen price with no volume
would instead be a stale feed (the feed watchdog's case, with the live feed) and would leave
the flatten unfillable by construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, Field

from ultrathink.data import MarketData, load_data
from ultrathink.data.synthetic import Crash, FlashCrash, Gap, Halt
from ultrathink.data.synthetic_spec import format_synthetic_spec, parse_synthetic_spec
from ultrathink.engine.config import EngineConfig
from ultrathink.stress.base import STRICT, RunContext, Scenario
from ultrathink.stress.figures import equity_comparison
from ultrathink.stress.inproc import PaperRun, paper_config, paper_run
from ultrathink.stress.invariants import read_rows, state_digest
from ultrathink.stress.measure import (
    audit_rows,
    latency_metric_names,
    latency_metrics,
    rounded,
    worst,
)
from ultrathink.stress.outcome import Case, Outcome
from ultrathink.stress.splice import Event, splice
from ultrathink.stress.strategies import Rebuyer


class _Fault(BaseModel):
    model_config = STRICT

    name: str = Field(pattern=r"^[a-z0-9_-]{1,40}$")


class DropFault(_Fault):
    """Prices fall ``pct`` % over ``n_bars`` bars and stay down."""

    kind: Literal["crash"]
    pct: float = Field(gt=0, lt=100)
    n_bars: int = Field(ge=1, le=1000)

    def events(self, at: int) -> list[Event]:
        """The generator's scenario items for this fault, starting at bar ``at``."""
        return [Crash(pct=self.pct, start_bar=at, n_bars=self.n_bars)]


class FlashFault(_Fault):
    """Prices fall ``pct`` % over ``n_bars_down`` bars, then regain it over ``n_bars_recover``."""

    kind: Literal["flash_crash"]
    pct: float = Field(gt=0, lt=100)
    n_bars_down: int = Field(ge=1, le=1000)
    n_bars_recover: int = Field(ge=1, le=1000)

    def events(self, at: int) -> list[Event]:
        """The generator's scenario items for this fault, starting at bar ``at``."""
        return [
            FlashCrash(
                pct=self.pct,
                at_bar=at,
                n_bars_down=self.n_bars_down,
                n_bars_recover=self.n_bars_recover,
            )
        ]


class GapFault(_Fault):
    """The open of one bar is ``pct`` % (negative: below) the previous close."""

    kind: Literal["gap"]
    pct: float = Field(gt=-100, lt=0)

    def events(self, at: int) -> list[Event]:
        """The generator's scenario items for this fault, starting at bar ``at``."""
        return [Gap(pct=self.pct, at_bar=at)]


class HaltFault(_Fault):
    """No bars for ``n_bars`` (a trading halt), then a reopening ``reopen_pct`` away."""

    kind: Literal["halt"]
    n_bars: int = Field(ge=1, le=10_000)
    reopen_pct: float = Field(gt=-100, lt=0)

    def events(self, at: int) -> list[Event]:
        """The generator's scenario items for this fault, starting at bar ``at``."""
        return [
            Halt(start_bar=at, n_bars=self.n_bars),
            Gap(pct=self.reopen_pct, at_bar=at + self.n_bars),
        ]


CrashFault = Annotated[DropFault | FlashFault | GapFault | HaltFault, Field(discriminator="kind")]


class CrashParams(BaseModel):
    """Data, detector and where the events start."""

    model_config = STRICT

    datasets: tuple[Literal["synthetic", "sp500"], ...] = Field(
        default=("synthetic", "sp500"), min_length=1
    )
    synthetic_bars: int = Field(default=600, ge=20, le=1_000_000)
    sp500_start: str = "2004-01-02"
    sp500_bars: int = Field(default=600, ge=20, le=5031)
    at_bar: int = Field(default=400, ge=6)
    detector_pct: float = Field(default=8.0, gt=0, lt=100)
    detector_bars: int = Field(default=5, ge=1, le=1000)


class CrashScenario(Scenario):
    """See the module docstring."""

    kind = "crash"
    metrics: ClassVar[Mapping[str, str]] = {
        "max_halt_lag_bars": "bars from the threshold crossing to the halt, worst case",
        "missed_halts": "cases whose closes crossed the threshold without a halt",
        "false_halts": "cases halted without a crossing (or before it)",
        "exposure_orders_after_halt": "orders other than the kill switch's that passed "
        "after HALTED",
        "unflattened_cases": "halted cases still holding a position at the end",
        "max_flatten_bars": "bars from the halt to flat, worst case",
        "worst_loss_avoided_pct": "unprotected loss minus protected loss, worst case (points)",
        "mean_loss_avoided_pct": "unprotected loss minus protected loss, mean (points)",
        **latency_metric_names("decision", "decision latency (service time, protected runs)"),
    }
    params_model = CrashParams
    fault_model = CrashFault

    def run(self, ctx: RunContext) -> Outcome:
        params: CrashParams = ctx.config.params
        protect = {"pct": params.detector_pct, "n_bars": params.detector_bars}
        base = {
            "kill_switch": {"on_limit_breach": False},
            "risk": {"max_daily_loss_pct": None, "max_drawdown_pct": None},
        }
        protected = paper_config(
            {**base, "kill_switch": {"on_limit_breach": False, "crash": protect}}
        )
        unprotected = paper_config(base)
        outcome = Outcome()
        latencies: list[int] = []
        for fault in ctx.config.faults:
            for dataset in params.datasets:
                data = _data(dataset, fault.events(params.at_bar), params, ctx.config.seed)
                name = f"{fault.name}/{dataset}"
                db = ctx.work_dir / name.replace("/", "-") / "stress.db"
                ctx.log(f"crash: {name} ({len(data):,} bars)")
                guarded = paper_run(Rebuyer(), data, protected, db)
                bare = paper_run(Rebuyer(), data, unprotected, None)
                latencies += guarded.latency_ns
                outcome.cases.append(_case(name, data, guarded, bare, protected, params))
                outcome.figures.append(_figure(name, guarded, bare))
        outcome.metrics.update(_aggregate(outcome.cases))
        outcome.metrics.update(latency_metrics("decision", latencies))
        return outcome


def _data(dataset: str, events: list[Event], params: CrashParams, seed: int) -> MarketData:
    if dataset == "synthetic":
        config = parse_synthetic_spec(f"synthetic:n_bars={params.synthetic_bars},seed={seed}")
        return load_data(format_synthetic_spec(config.model_copy(update={"scenarios": events})))
    from ultrathink.services import slice_data

    real = slice_data(load_data("sp500"), params.sp500_start, None)
    real = real.between(None, int(real.ts_ns[min(params.sp500_bars, len(real)) - 1]))
    return splice(real, events)


def _crossing(data: MarketData, pct: float, n_bars: int) -> int | None:
    # the detector's rule on the closes of the one symbol: close < (1 - pct) x window max
    close = data.close
    padded = np.concatenate([np.full(n_bars - 1, -np.inf), close])
    highs = np.lib.stride_tricks.sliding_window_view(padded, n_bars).max(axis=1)
    crossed = np.flatnonzero(close < highs * (1.0 - pct / 100.0))
    return int(crossed[0]) if crossed.size else None


def _case(
    name: str,
    data: MarketData,
    guarded: PaperRun,
    bare: PaperRun,
    config: EngineConfig,
    params: CrashParams,
) -> Case:
    unprotected = bare.invariants()[-1]
    case = Case(
        name,
        invariants=[
            *guarded.invariants(),
            unprotected._replace(
                name="no_crash_unprotected", detail=f"unprotected run: {unprotected.detail}"
            ),
        ],
    )
    cross = _crossing(data, params.detector_pct, params.detector_bars)
    db, run_id = guarded.db, guarded.run_id
    halts = [] if db is None or run_id is None else audit_rows(db, run_id, ["killswitch.triggered"])
    halt_ts = halts[0][0] if halts else None
    halt = int(np.searchsorted(data.ts_ns, halt_ts)) if halt_ts is not None else None
    start = config.starting_cash
    figures = case.figures
    figures.update(
        crossing_bar=cross,
        halt_bar=halt,
        halt_lag_bars=None if cross is None or halt is None else halt - cross,
        missed=cross is not None and halt is None,
        false_halt=halt is not None and (cross is None or halt < cross),
    )
    if db is not None and run_id is not None and halt_ts is not None:
        figures.update(_after_halt(db, run_id, data, halt_ts, halt))
    if db is not None and run_id is not None and guarded.error is None:
        figures["digest"] = state_digest(db, run_id)
    for label, run in (("protected", guarded), ("unprotected", bare)):
        if run.result is not None:
            final = float(run.result.equity[-1])
            figures[f"loss_{label}_pct"] = rounded((1.0 - final / start) * 100.0, 3)
            figures[f"max_dd_{label}_pct"] = rounded(run.result.metrics.max_drawdown * 100, 3)
    if "loss_protected_pct" in figures and "loss_unprotected_pct" in figures:
        figures["loss_avoided_pct"] = rounded(
            figures["loss_unprotected_pct"] - figures["loss_protected_pct"], 3
        )
    return case


def _after_halt(
    path: Path, run_id: int, data: MarketData, halt_ts: int, halt: int | None
) -> dict[str, object]:
    passed = read_rows(
        path,
        "SELECT COUNT(*) FROM orders WHERE run_id = ? AND ts_ns >= ? AND status != 'DENIED' "
        "AND tag != 'kill_switch'",
        (run_id, halt_ts),
    )[0][0]
    denied = read_rows(
        path,
        "SELECT COUNT(*) FROM orders WHERE run_id = ? AND ts_ns >= ? AND status = 'DENIED'",
        (run_id, halt_ts),
    )[0][0]
    held = read_rows(
        path,
        "SELECT COUNT(*) FROM positions WHERE run_id = ? AND abs(quantity) > 1e-9",
        (run_id,),
    )[0][0]
    last_fill = read_rows(
        path,
        "SELECT MAX(f.ts_ns) FROM fills f JOIN orders o ON o.run_id = f.run_id AND "
        "o.client_order_id = f.client_order_id WHERE f.run_id = ? AND o.tag = 'kill_switch'",
        (run_id,),
    )[0][0]
    flat_bar = int(np.searchsorted(data.ts_ns, last_fill)) if last_fill is not None else None
    return {
        "orders_passed_after_halt": int(passed),
        "orders_denied_after_halt": int(denied),
        "flat_at_end": held == 0,
        "flatten_bars": None if flat_bar is None or halt is None else flat_bar - halt,
    }


def _aggregate(cases: list[Case]) -> dict[str, float | None]:
    figs = [c.figures for c in cases]
    halted = [f for f in figs if f.get("halt_bar") is not None]
    avoided = [float(f["loss_avoided_pct"]) for f in figs if f.get("loss_avoided_pct") is not None]
    return {
        "max_halt_lag_bars": worst(f.get("halt_lag_bars") for f in figs),
        "missed_halts": float(sum(bool(f.get("missed")) for f in figs)),
        "false_halts": float(sum(bool(f.get("false_halt")) for f in figs)),
        "exposure_orders_after_halt": float(
            sum(f.get("orders_passed_after_halt", 0) for f in halted)
        ),
        "unflattened_cases": float(sum(not f.get("flat_at_end", False) for f in halted)),
        "max_flatten_bars": worst(f.get("flatten_bars") for f in halted),
        "worst_loss_avoided_pct": worst(avoided, largest=False),
        "mean_loss_avoided_pct": rounded(sum(avoided) / len(avoided), 3) if avoided else None,
    }


def _figure(name: str, guarded: PaperRun, bare: PaperRun) -> tuple[str, str, object]:
    curves = [
        (label, run.result.ts_ns, run.result.equity)
        for label, run in (("protected", guarded), ("unprotected", bare))
        if run.result is not None
    ]
    marks = []
    if guarded.db is not None and guarded.run_id is not None:
        halts = audit_rows(guarded.db, guarded.run_id, ["killswitch.triggered"])
        marks = [(halts[0][0], "HALTED")] if halts else []
    note = "equity of the protected run (crash detector) and of the same run unprotected"
    return (
        f"crash {name}: equity with and without protection",
        note,
        equity_comparison(curves, marks),
    )


SCENARIO = CrashScenario
