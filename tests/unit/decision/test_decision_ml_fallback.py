"""The ML strategy's fallback chain: ensemble -> healthy single member -> hold.

Driven through the real engine with scripted predictors (see ``test_decision_ml``): the
ensemble raising or answering outside [0, 1] hands the decision to the first member that
answers, with a ``decision.fallback`` audit row; when no member answers the strategy holds
with reason ``model_error``.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from test_decision_ml import ScriptedModel, make_bundle  # type: ignore[import-not-found]

from ultrathink.data import MarketData, load_data
from ultrathink.decision.ml import MLStrategy
from ultrathink.engine.config import EngineConfig
from ultrathink.engine.runner import RunSpec, run
from ultrathink.features.spec import WARMUP_BARS

DATA_SPEC = "synthetic:n_bars=200,seed=3,freq=1D"


@pytest.fixture(scope="module")
def data() -> MarketData:
    return load_data(DATA_SPEC)


class Broken:
    """A predictor that always fails: raises, or answers ``value``."""

    def __init__(self, value: float | None = None) -> None:
        self.value = value
        self.n_calls = 0

    def __call__(self, x: np.ndarray) -> float:
        self.n_calls += 1
        if self.value is None:
            raise RuntimeError("model file corrupted")
        return self.value


def run_chain(data: MarketData, ensemble: object, members: tuple, db: Path) -> MLStrategy:
    strategy = MLStrategy(max_model_age_days=None)
    scripted = ScriptedModel(default=0.9)
    scripted.strategy, scripted.symbol = strategy, data.symbols[0]
    bundle = dataclasses.replace(make_bundle(scripted), predict_row=ensemble, members=members)
    strategy.attach_model(bundle)
    run(RunSpec(strategy, data, EngineConfig(), db_path=db))
    return strategy


def audit(db: Path, kind: str) -> list[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT detail FROM audit_log WHERE kind = ?", (kind,)).fetchall()
    return [d for (d,) in rows]


@pytest.mark.parametrize("ensemble", [Broken(), Broken(float("nan")), Broken(1.7)])
def test_a_failing_ensemble_hands_over_to_the_first_healthy_member(
    data: MarketData, ensemble: Broken, tmp_path: Path
) -> None:
    dead, healthy, spare = Broken(), Broken(0.9), Broken(0.1)
    db = tmp_path / "s.db"

    strategy = run_chain(
        data, ensemble, (("gbm", dead), ("forest", healthy), ("linear", spare)), db
    )

    n_decisions = len(data) - WARMUP_BARS + 1
    assert strategy.n_predictions == n_decisions
    assert strategy.fallback_counts == {"forest": n_decisions}
    assert spare.n_calls == 0, "the chain stops at the first member that answers"
    assert dead.n_calls == n_decisions
    rows = audit(db, "decision.fallback")
    assert len(rows) == n_decisions and "used forest" in rows[0]
    assert strategy.stats()["fallbacks"] == {"forest": n_decisions}


def test_no_healthy_member_means_hold_with_model_error(data: MarketData, tmp_path: Path) -> None:
    db = tmp_path / "s.db"

    strategy = run_chain(data, Broken(), (("gbm", Broken()), ("linear", Broken(-1.0))), db)

    n_decisions = len(data) - WARMUP_BARS + 1
    assert strategy.n_predictions == 0
    assert strategy.hold_counts == {"model_error": n_decisions}
    holds = audit(db, "decision.hold")
    assert len(holds) == n_decisions and "no healthy member" in holds[0]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM orders").fetchone() == (0,)


def test_a_healthy_ensemble_never_touches_the_members(data: MarketData, tmp_path: Path) -> None:
    member = Broken(0.1)

    strategy = run_chain(data, Broken(0.9), (("gbm", member),), tmp_path / "s.db")

    assert member.n_calls == 0 and strategy.fallback_counts == {}
    assert strategy.n_predictions == len(data) - WARMUP_BARS + 1
