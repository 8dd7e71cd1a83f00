"""Chaos: ``kill -9`` of paper sessions at random instants, then ``paper --resume``.

Each fault entry is one mode (unpaced or paced). An uninterrupted session of the same data,
strategy and seed is the reference; then trials (a few at a time) each kill a fresh session
at random instants and resume it to the end (``stress/chaos.py``), until ``kills`` kills
have landed (a kill drawn after a faster run already ended does not land; more trials are
added, within a bound). Every trial's final store and venue journal must equal the
reference's: the same orders (every column), fills, positions, equity curve and venue
records. The metrics count what differs; the invariants run on every final store.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, Field

from ultrathink.stress.base import STRICT, RunContext, Scenario
from ultrathink.stress.chaos import PaperCommand, Trial, finish, kill_trial
from ultrathink.stress.figures import bars_figure
from ultrathink.stress.invariants import check_process, check_run, run_state
from ultrathink.stress.outcome import Case, Invariant, Outcome


class KillMode(BaseModel):
    """One mode: its data, pace, and how many kills must land."""

    model_config = STRICT

    name: str = Field(pattern=r"^[a-z0-9_-]{1,40}$")
    n_bars: int = Field(ge=10, le=10_000_000)
    symbols: str = Field(default="AAA+BBB", pattern=r"^[A-Z0-9]+(\+[A-Z0-9]+)*$")
    speed: Annotated[float, Field(gt=0, le=1e9)] | Literal["max"] = "max"
    kills: int = Field(ge=1, le=10_000)
    kills_per_trial: int = Field(default=2, ge=1, le=100)


class ChaosParams(BaseModel):
    """The strategy and how many trials run at once."""

    model_config = STRICT

    strategy: tuple[str, ...] = (
        "--strategy",
        "sma_cross",
        "--param",
        "fast=3",
        "--param",
        "slow=8",
    )
    parallel: int = Field(default=3, ge=1, le=32)
    max_extra_trials: int = Field(default=12, ge=0, le=1000)


class ChaosScenario(Scenario):
    """See the module docstring."""

    kind = "chaos"
    metrics: ClassVar[Mapping[str, str]] = {
        "kills": "kill -9 that landed, over every mode",
        "trials": "trials run (each: kills, then a resume to the end)",
        "lost_orders": "orders of the reference run missing from a resumed one",
        "duplicated_orders": "orders of a resumed run the reference does not have",
        "lost_fills": "fills of the reference run missing from a resumed one",
        "duplicated_fills": "fills of a resumed run the reference does not have",
        "equity_mismatches": "trials whose final equity differs from the reference's",
        "state_mismatches": "trials whose store or venue journal differs from the reference's",
        "any_instant_violations": "problems found right after a kill (store ahead of the venue)",
        "failed_resumes": "trials whose resume to the end failed",
    }
    params_model = ChaosParams
    fault_model = KillMode

    def run(self, ctx: RunContext) -> Outcome:
        params: ChaosParams = ctx.config.params
        outcome = Outcome()
        totals: dict[str, float] = dict.fromkeys(self.metrics, 0.0)
        for i, mode in enumerate(ctx.config.faults):
            seed = ctx.config.seed * 1000 + i
            data = f"synthetic:n_bars={mode.n_bars},seed={ctx.config.seed},symbols={mode.symbols}"
            cmd = PaperCommand(data, params.strategy)
            mode_args = ("--speed", str(mode.speed))
            ref_db = ctx.work_dir / mode.name / "reference" / "stress.db"
            ref_db.parent.mkdir(parents=True)
            ctx.log(f"chaos: {mode.name}: reference run")
            t0 = time.monotonic()
            code, err = finish(cmd, ref_db, mode_args)
            span_s = time.monotonic() - t0  # kills land anywhere in a run's life
            reference = Case(
                f"{mode.name}/reference",
                invariants=[check_process(code, err, what="reference session")],
            )
            outcome.cases.append(reference)
            if code != 0:
                continue
            reference.invariants += check_run(ref_db)
            expected = run_state(ref_db)
            trials = _trials(ctx, mode, cmd, mode_args, seed, span_s, params)
            for j, trial in enumerate(trials):
                case = _case(f"{mode.name}/trial-{j}", trial, expected)
                outcome.cases.append(case)
                for key, value in case.figures.items():
                    if key in totals:
                        totals[key] += float(value)
            totals["trials"] += len(trials)
            reference.figures.update(
                bars=mode.n_bars, span_s=round(span_s, 2), kills=sum(t.kills for t in trials)
            )
        outcome.metrics.update(totals)
        outcome.figures.append(_figure(outcome.cases))
        return outcome


def _trials(
    ctx: RunContext,
    mode: KillMode,
    cmd: PaperCommand,
    mode_args: tuple[str, ...],
    seed: int,
    span_s: float,
    params: ChaosParams,
) -> list[Trial]:
    rng = random.Random(seed)

    def one(k: int) -> Trial:
        db = ctx.work_dir / mode.name / f"trial-{k}" / "stress.db"
        return kill_trial(cmd, db, mode_args, rng_seeds[k], span_s, mode.kills_per_trial)

    n_first = -(-mode.kills // mode.kills_per_trial)  # ceil: enough if every kill lands
    rng_seeds = [rng.randrange(2**31) for _ in range(n_first + params.max_extra_trials)]
    ctx.log(f"chaos: {mode.name}: {n_first} trials, {params.parallel} at a time")
    with ThreadPoolExecutor(max_workers=params.parallel) as pool:
        trials = list(pool.map(one, range(n_first)))
        k = n_first
        while sum(t.kills for t in trials) < mode.kills and k < len(rng_seeds):
            batch = range(k, min(k + params.parallel, len(rng_seeds)))
            trials += list(pool.map(one, batch))
            k = batch.stop
    ctx.log(f"chaos: {mode.name}: {sum(t.kills for t in trials)} kills in {len(trials)} trials")
    return trials


def _case(name: str, trial: Trial, expected: dict[str, Any]) -> Case:
    invariants = [check_process(trial.returncode, trial.stderr, what="final resume")]
    invariants.append(
        Invariant(
            "any_instant",
            not trial.problems,
            "; ".join(trial.problems[:3])
            or f"after each of {trial.kills} kills the store never led the venue",
        )
    )
    figures: dict[str, Any] = {"kills": trial.kills, "any_instant_violations": len(trial.problems)}
    if trial.returncode != 0:
        figures["failed_resumes"] = 1
        return Case(name, figures, invariants)
    invariants += check_run(trial.db)
    state = trial.state
    # column 1 of orders and fills (after run_id): the client order id, the fill id
    orders, ref_orders = ({r[1] for r in s["orders"]} for s in (state, expected))
    fills, ref_fills = ({r[1] for r in s["fills"]} for s in (state, expected))
    figures.update(
        lost_orders=len(ref_orders - orders),
        duplicated_orders=len(orders - ref_orders),
        lost_fills=len(ref_fills - fills),
        duplicated_fills=len(fills - ref_fills),
        equity_mismatches=int(state["equity"][1][-1:] != expected["equity"][1][-1:]),
        state_mismatches=int(any(state[k] != expected[k] for k in expected)),
        final_equity=state["equity"][1][-1] if state["equity"][1] else None,
    )
    return Case(name, figures, invariants)


def _figure(cases: list[Case]) -> tuple[str, str, object]:
    trials = [c for c in cases if "kills" in c.figures and "/trial-" in c.name]
    labels = [c.name for c in trials]
    keys = ("kills", "lost_orders", "duplicated_fills", "state_mismatches")
    groups = {k: [float(c.figures.get(k, 0) or 0) for c in trials] for k in keys}
    return (
        "chaos: kills and differences per trial",
        "every difference must be 0",
        bars_figure(labels, groups, "count"),
    )


SCENARIO = ChaosScenario
