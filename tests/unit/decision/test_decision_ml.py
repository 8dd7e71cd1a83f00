"""``MLStrategy`` driven through the real engine by a model whose probabilities we script.

The bundle's ``predict_row`` is a plain Python callable: it returns the next probability of a
script and records, at each call, the bar time and the position held. An order placed at
bar ``k`` fills at bar ``k + 1``'s open, before ``on_bar`` of bar ``k + 1``, so the position
seen at call ``k + 1`` is the outcome of the decision taken at call ``k``.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ultrathink.core.events import Bar
from ultrathink.core.timing import TimingPoint
from ultrathink.data import MarketData, load_data
from ultrathink.decision.ml import MLStrategy, ModelBundle
from ultrathink.engine.config import EngineConfig
from ultrathink.engine.results import RunResult
from ultrathink.engine.runner import RunSpec, run
from ultrathink.errors import ConfigError, StrategyError
from ultrathink.features.spec import FEATURE_INDEX, FEATURE_NAMES, WARMUP_BARS

DATA_SPEC = "synthetic:n_bars=400,seed=3,freq=1D"
NS_PER_DAY = 86_400_000_000_000
WIDE = 1e12  # a training range no real feature value leaves


@pytest.fixture(scope="module")
def data() -> MarketData:
    return load_data(DATA_SPEC)


class ScriptedModel:
    """``predict_row`` stand-in: scripted probabilities, then ``default`` forever."""

    def __init__(self, probs: Sequence[float] = (), default: float = 0.5) -> None:
        self.probs = list(probs)
        self.default = default
        self.strategy: MLStrategy | None = None
        self.symbol = ""
        self.call_ts_ns: list[int] = []
        self.positions: list[float] = []
        self.rows: list[np.ndarray] = []

    def __call__(self, x: np.ndarray) -> float:
        assert self.strategy is not None
        i = len(self.call_ts_ns)
        self.call_ts_ns.append(self.strategy.ctx.now_ns())
        self.positions.append(self.strategy.position(self.symbol))
        self.rows.append(x.copy())
        return self.probs[i] if i < len(self.probs) else self.default


def make_bundle(
    model: ScriptedModel,
    *,
    names: Sequence[str] = FEATURE_NAMES,
    low: Sequence[float] | None = None,
    high: Sequence[float] | None = None,
    train_start_ns: int = 0,
    train_end_ns: int = 1,
) -> ModelBundle:
    n = len(names)
    return ModelBundle(
        version="v-test",
        predict_row=model,
        feature_index=np.array([FEATURE_INDEX[name] for name in names]),
        feature_names=list(names),
        low=np.array(low if low is not None else [-WIDE] * n, dtype=np.float64),
        high=np.array(high if high is not None else [WIDE] * n, dtype=np.float64),
        train_start_ns=train_start_ns,
        train_end_ns=train_end_ns,
        periods_per_year=365.0,
    )


def run_ml(
    data: MarketData,
    model: ScriptedModel,
    *,
    db_path: Path | None = None,
    bundle_kw: dict[str, Any] | None = None,
    **params: Any,
) -> tuple[MLStrategy, RunResult]:
    """Run ``MLStrategy(**params)`` with ``model`` over ``data`` (zero costs, all-in)."""
    params.setdefault("max_model_age_days", None)  # never expire unless a test asks
    strategy = MLStrategy(**params)
    model.strategy, model.symbol = strategy, data.symbols[0]
    strategy.attach_model(make_bundle(model, **(bundle_kw or {})))
    result = run(RunSpec(strategy, data, EngineConfig(), db_path=db_path))
    return strategy, result


def held_sign(position: float) -> int:
    return (position > 0) - (position < 0)


def states_after_each_call(model: ScriptedModel, n_calls: int) -> list[int]:
    # the position seen at call k + 1 is what the decision at call k produced
    return [held_sign(p) for p in model.positions[1 : n_calls + 1]]


def hold_rows(db_path: Path) -> list[str]:
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(
            "SELECT detail FROM audit_log WHERE kind = 'decision.hold' ORDER BY seq"
        ).fetchall()
    return [detail for (detail,) in rows]


def decision_bars(data: MarketData) -> int:
    # features are complete from bar WARMUP_BARS - 1 (0-based) on
    return len(data) - WARMUP_BARS + 1


# -- warm-up ---------------------------------------------------------------------------------
def test_no_prediction_before_warmup_bars(data: MarketData) -> None:
    model = ScriptedModel(default=0.9)

    strategy, result = run_ml(data, model)

    assert model.call_ts_ns[0] == int(data.ts_ns[WARMUP_BARS - 1])
    assert strategy.n_predictions == decision_bars(data) == len(model.call_ts_ns)
    assert result.fills, "an always-bullish model should have bought"
    assert min(f.ts_ns for f in result.fills) == int(data.ts_ns[WARMUP_BARS])


def test_model_sees_finite_rows_in_bundle_column_order(data: MarketData) -> None:
    model = ScriptedModel()
    names = ("rsi_14", "logret_1", "day_of_week")

    run_ml(data, model, bundle_kw={"names": names})

    rows = np.array(model.rows)
    assert rows.shape == (decision_bars(data), 3)
    assert np.isfinite(rows).all()
    assert ((rows[:, 0] >= 0) & (rows[:, 0] <= 100)).all()  # RSI column first
    assert set(np.unique(rows[:, 2])) <= set(range(7))  # weekday column last


# -- hysteresis ------------------------------------------------------------------------------
def test_long_hysteresis_enters_at_entry_holds_between_and_exits_below_exit(
    data: MarketData,
) -> None:
    probs = [0.50, 0.65, 0.50, 0.41, 0.40, 0.39, 0.50, 0.59, 0.60, 0.45, 0.30]
    expected = [0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0]
    model = ScriptedModel(probs, default=0.5)

    run_ml(data, model, entry_threshold=0.6, exit_threshold=0.4)

    assert states_after_each_call(model, len(probs)) == expected


def test_long_only_never_goes_short_on_bearish_probabilities(data: MarketData) -> None:
    model = ScriptedModel(default=0.05)

    _, result = run_ml(data, model)

    assert result.fills == []
    assert all(p == 0 for p in model.positions)


def test_allow_short_mirrors_hysteresis_below_short_thresholds(data: MarketData) -> None:
    # short at <= 0.30, cover above 0.45; 0.70 and 0.20 reverse in one decision
    probs = [0.50, 0.30, 0.40, 0.45, 0.46, 0.30, 0.44, 0.70, 0.20, 0.50]
    expected = [0, -1, -1, -1, 0, -1, -1, 1, -1, 0]
    model = ScriptedModel(probs, default=0.5)

    run_ml(
        data,
        model,
        allow_short=True,
        entry_threshold=0.6,
        exit_threshold=0.5,
        short_entry_threshold=0.3,
        short_exit_threshold=0.45,
    )

    assert states_after_each_call(model, len(probs)) == expected


# -- sizing ----------------------------------------------------------------------------------
def first_buy_quantity(data: MarketData, target_vol_annual: float) -> float:
    _, result = run_ml(data, ScriptedModel(default=0.9), target_vol_annual=target_vol_annual)
    return result.fills[0].quantity


def test_vol_target_size_is_at_most_all_in_and_shrinks_with_target(data: MarketData) -> None:
    all_in_qty = 100_000.0 / float(data.close[WARMUP_BARS - 1])

    q_high = first_buy_quantity(data, target_vol_annual=5.0)
    q_low = first_buy_quantity(data, target_vol_annual=0.02)

    assert 0 < q_low < q_high <= all_in_qty


def test_max_leverage_caps_the_vol_target(data: MarketData) -> None:
    _, capped = run_ml(data, ScriptedModel(default=0.9), target_vol_annual=5.0, max_leverage=0.5)
    _, full = run_ml(data, ScriptedModel(default=0.9), target_vol_annual=5.0, max_leverage=1.0)

    assert capped.fills[0].quantity == pytest.approx(full.fills[0].quantity / 2, abs=1.0)


# -- holds -----------------------------------------------------------------------------------
def test_out_of_range_feature_holds_and_writes_audit_rows(data: MarketData, tmp_path: Path) -> None:
    model = ScriptedModel(default=0.9)
    db = tmp_path / "ml.db"
    # RSI lies in [0, 100]: a training range of [200, 300] (± 50 tolerance) excludes it
    bundle_kw = {"names": ("logret_1", "rsi_14"), "low": (-1.0, 200.0), "high": (1.0, 300.0)}

    _, result = run_ml(data, model, db_path=db, bundle_kw=bundle_kw)

    n = decision_bars(data)
    assert result.strategy_stats["holds"] == {"out_of_range": n}
    assert result.strategy_stats["n_predictions"] == 0 == len(model.call_ts_ns)
    assert result.fills == []
    rows = hold_rows(db)
    assert len(rows) == n
    assert all(row == f"{data.symbols[0]} out_of_range: rsi_14" for row in rows)


def test_nan_feature_holds_with_nan_input_and_trading_resumes(
    data: MarketData, tmp_path: Path
) -> None:
    bad_bar = WARMUP_BARS + 10
    volume = data.volume.copy()
    volume[bad_bar] = np.nan  # bad data: poisons the 20-bar volume z-score
    bad_data = dataclasses.replace(data, volume=volume)
    model = ScriptedModel()
    db = tmp_path / "ml.db"

    strategy, _ = run_ml(bad_data, model, db_path=db)

    n_nan = strategy.hold_counts["nan_input"]
    assert set(strategy.hold_counts) == {"nan_input"}
    assert n_nan >= 20  # at least the window that contains the NaN
    assert int(data.ts_ns[bad_bar]) not in model.call_ts_ns
    assert strategy.n_predictions == decision_bars(data) - n_nan
    assert model.call_ts_ns[-1] == int(data.ts_ns[-1])  # decisions resume after the window
    rows = hold_rows(db)
    assert len(rows) == n_nan
    assert all(row == f"{data.symbols[0]} nan_input: volume_z_20" for row in rows)


def test_range_tolerance_widens_the_training_range(data: MarketData) -> None:
    # RSI in [0, 100]; training range [40, 60] widened by 3 × 20 on each side covers it
    bundle_kw = {"names": ("rsi_14",), "low": (40.0,), "high": (60.0,)}

    strict, _ = run_ml(data, ScriptedModel(), bundle_kw=bundle_kw, range_tolerance=0.0)
    tolerant, _ = run_ml(data, ScriptedModel(), bundle_kw=bundle_kw, range_tolerance=3.0)

    assert strict.stats()["holds"].get("out_of_range", 0) > 0
    assert tolerant.stats()["holds"] == {}
    assert tolerant.n_predictions == decision_bars(data)


def test_expired_model_holds_every_bar_with_reason(data: MarketData, tmp_path: Path) -> None:
    model = ScriptedModel(default=0.9)
    db = tmp_path / "ml.db"
    trained_until = int(data.ts_ns[0]) - 400 * NS_PER_DAY

    _, result = run_ml(
        data,
        model,
        db_path=db,
        max_model_age_days=30.0,
        bundle_kw={"train_start_ns": trained_until - NS_PER_DAY, "train_end_ns": trained_until},
    )

    n = decision_bars(data)
    assert result.strategy_stats["holds"] == {"model_expired": n}
    assert result.strategy_stats["n_predictions"] == 0
    rows = hold_rows(db)
    assert len(rows) == n
    assert all("model_expired" in row and "30.0 days" in row for row in rows)


def test_hold_keeps_the_open_position(data: MarketData) -> None:
    model = ScriptedModel(default=0.9)
    decided_at = int(data.ts_ns[WARMUP_BARS + 2])

    strategy, result = run_ml(
        data,
        model,
        max_model_age_days=3.0,  # expires 3 days (bars) after decided_at
        bundle_kw={"train_start_ns": decided_at, "train_end_ns": decided_at},
    )

    expiry_ns = decided_at + 3 * NS_PER_DAY
    assert strategy.n_predictions == 7  # bars WARMUP_BARS - 1 .. WARMUP_BARS + 5
    assert strategy.hold_counts["model_expired"] == decision_bars(data) - 7
    assert all(f.ts_ns <= expiry_ns + NS_PER_DAY for f in result.fills)
    assert result.final_positions[data.symbols[0]] > 0


# -- in-sample accounting --------------------------------------------------------------------
def test_bars_inside_the_training_period_are_counted_in_sample(data: MarketData) -> None:
    bundle_kw = {"train_start_ns": int(data.ts_ns[0]), "train_end_ns": int(data.ts_ns[-1])}

    _, result = run_ml(data, ScriptedModel(), bundle_kw=bundle_kw)

    stats = result.strategy_stats
    assert stats["in_sample"] is True
    assert stats["in_sample_bars"] == decision_bars(data)
    assert stats["model_version"] == "v-test"


def test_bars_after_the_training_period_are_out_of_sample(data: MarketData) -> None:
    before = int(data.ts_ns[0]) - NS_PER_DAY

    _, result = run_ml(
        data, ScriptedModel(), bundle_kw={"train_start_ns": before - 1, "train_end_ns": before}
    )

    assert result.strategy_stats["in_sample"] is False
    assert result.strategy_stats["in_sample_bars"] == 0
    assert result.strategy_stats["n_predictions"] == decision_bars(data)


def test_partial_overlap_counts_only_the_overlapping_bars(data: MarketData) -> None:
    last_in_sample = WARMUP_BARS + 9
    bundle_kw = {"train_start_ns": 0, "train_end_ns": int(data.ts_ns[last_in_sample])}

    strategy, _ = run_ml(data, ScriptedModel(), bundle_kw=bundle_kw)

    assert strategy.n_in_sample_bars == last_in_sample - (WARMUP_BARS - 1) + 1


# -- timing points (what the profiler may time) ----------------------------------------------
def test_the_model_and_each_symbols_features_are_declared_timing_points(data: MarketData) -> None:
    symbol = data.symbols[0]
    assert MLStrategy().timing_points() == []  # no model yet
    assert MLStrategy().symbol_timing_points(symbol) == []  # not started

    strategy, _ = run_ml(data, ScriptedModel())

    state = strategy._symbols[symbol]
    assert strategy.timing_points() == [TimingPoint("model", strategy.bundle, "predict_row")]
    assert strategy.symbol_timing_points(symbol) == [TimingPoint("features", state, "update")]
    assert strategy.symbol_timing_points("UNSEEN") == []
    assert "update" in type(state).__slots__  # swapping it adds no instance attribute


def test_each_bar_goes_through_the_features_timing_point(data: MarketData) -> None:
    symbol = data.symbols[0]
    strategy = MLStrategy(max_model_age_days=None)
    strategy.attach_model(make_bundle(ScriptedModel()))
    strategy.on_start()
    columns = (data.open, data.high, data.low, data.close, data.volume)
    bars = [Bar(int(data.ts_ns[i]), symbol, *(float(c[i]) for c in columns)) for i in range(3)]
    strategy.on_bar(bars[0])  # warming up: the strategy needs no context yet
    [point] = strategy.symbol_timing_points(symbol)
    original = getattr(point.owner, point.attr)
    timed: list[int] = []

    def timing(ts_ns: int, *ohlcv: float) -> np.ndarray:
        timed.append(ts_ns)
        return original(ts_ns, *ohlcv)

    setattr(point.owner, point.attr, timing)  # what the profiler does on a sampled bar
    strategy.on_bar(bars[1])
    setattr(point.owner, point.attr, original)
    strategy.on_bar(bars[2])

    assert timed == [bars[1].ts_ns]
    assert strategy.n_bars == 3


# -- configuration errors --------------------------------------------------------------------
def test_missing_model_is_a_clean_strategy_error(data: MarketData) -> None:
    strategy = MLStrategy()

    with pytest.raises(StrategyError, match="ultrathink train"):
        run(RunSpec(strategy, data, EngineConfig()))


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"entry_threshold": 0.5, "exit_threshold": 0.6}, "exit_threshold"),
        ({"short_entry_threshold": 0.4, "short_exit_threshold": 0.3}, "short_exit_threshold"),
        ({"entry_threshold": 1.5}, "entry_threshold"),
        ({"target_vol_annual": 0.0}, "target_vol_annual"),
        ({"max_leverage": 11.0}, "max_leverage"),
        ({"max_model_age_days": -1.0}, "max_model_age_days"),
        ({"bogus": 1}, "bogus"),
    ],
    ids=[
        "exit>entry",
        "short-exit<short-entry",
        "entry>=1",
        "vol=0",
        "leverage>10",
        "age<0",
        "unknown",
    ],
)
def test_invalid_params_raise_config_error_naming_the_parameter(
    params: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        MLStrategy(**params)


def test_params_round_trip_through_get_params() -> None:
    strategy = MLStrategy(entry_threshold=0.7, exit_threshold=0.45, allow_short=True)

    params = strategy.get_params()

    assert params["entry_threshold"] == 0.7
    assert params["allow_short"] is True
    assert MLStrategy(**params).get_params() == params


# -- denied orders -----------------------------------------------------------------------------
def run_denied(data: MarketData, **params: Any) -> tuple[MLStrategy, RunResult]:
    # an always-bullish model whose every buy is denied (MAX_ORDER_NOTIONAL of 1)
    model = ScriptedModel(default=0.9)
    strategy = MLStrategy(max_model_age_days=None, **params)
    model.strategy, model.symbol = strategy, data.symbols[0]
    strategy.attach_model(make_bundle(model))
    config = EngineConfig.model_validate({"risk": {"max_order_notional": 1.0}})
    return strategy, run(RunSpec(strategy, data, config))


def test_a_denied_entry_waits_denied_retry_bars_then_twice_as_long_after_each_denial(
    data: MarketData,
) -> None:
    strategy, result = run_denied(data, denied_retry_bars=8)

    n_denied = result.order_counts.get("DENIED", 0)
    # every decision bar signals an entry: the first is tried, then one after a wait of 8
    # bars, 16, 32, ... (the retry on the bar its wait ends)
    bars = decision_bars(data)
    expected, at, wait = 0, 0, 8
    while at < bars:
        expected += 1
        at += wait
        wait = min(wait * 2, 8 << 6)
    assert n_denied == expected and 3 < expected < 10
    assert result.denial_reasons == {"MAX_ORDER_NOTIONAL": n_denied}
    assert strategy.stats()["retries_held"] == bars - n_denied


def test_with_denied_retry_bars_0_a_denied_entry_is_retried_on_every_signal(
    data: MarketData,
) -> None:
    strategy, result = run_denied(data, denied_retry_bars=0)

    assert result.order_counts.get("DENIED", 0) == decision_bars(data)
    assert strategy.stats()["retries_held"] == 0
