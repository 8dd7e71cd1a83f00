"""Walk-forward report: scores on signal and on noise, baselines, Sharpe, rendering, checks."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from ultrathink.errors import ConfigError
from ultrathink.models.ensemble import EnsembleClassifier
from ultrathink.models.metrics import StrategyRule, annualised_sharpe
from ultrathink.models.training import WalkForwardReport, fit_final, walk_forward_report

SMALL = {
    "gbm_n_estimators": 30,
    "forest_n_estimators": 30,
    "gbm_min_child_samples": 20,
    "forest_min_samples_leaf": 20,
}


def small_model() -> EnsembleClassifier:
    return EnsembleClassifier(**SMALL)


def expanding_splits(n_rows: int, n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    size = n_rows // (n_folds + 1)
    return [
        (np.arange(0, k * size), np.arange(k * size, (k + 1) * size)) for k in range(1, n_folds + 1)
    ]


def market(n_rows: int = 2000, n_features: int = 30, signal: float = 1.0, seed: int = 0):
    """Features, forward returns driven by ``signal`` × a few features, and labels sign(r)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, n_features))
    driver = 0.8 * X[:, 0] - 0.5 * X[:, 1] + 0.4 * np.tanh(X[:, 2] * X[:, 3])
    fwd_returns = 0.0005 + 0.01 * (signal * driver + rng.normal(size=n_rows))
    y = (fwd_returns > 0).astype(np.int64)
    return X, y, fwd_returns


class ConstantModel:
    """A real fake: predicts the same class-1 probability for every row."""

    def __init__(self, p: float) -> None:
        self.p = p
        self.n_fits = 0

    def fit(self, X, y):
        self.n_fits += 1
        return self

    def predict_proba(self, X):
        p = np.full(len(X), self.p)
        return np.column_stack([1 - p, p])


@pytest.fixture(scope="module")
def signal_report() -> WalkForwardReport:
    X, y, r = market()
    return walk_forward_report(X, y, r, expanding_splits(len(y), 4), small_model)


def test_signal_is_found_out_of_sample(signal_report):
    overall = signal_report.overall

    assert overall.auc > 0.6
    assert all(fold.auc > 0.6 for fold in signal_report.folds)
    assert overall.log_loss < overall.baseline_log_loss
    assert overall.accuracy > overall.baseline_accuracy
    assert overall.sharpe > 0.0


def test_report_shape_and_oos_predictions(signal_report):
    splits = expanding_splits(2000, 4)

    folds = signal_report.folds

    assert [f.name for f in folds] == ["fold 1", "fold 2", "fold 3", "fold 4"]
    assert [f.n_train for f in folds] == [len(tr) for tr, _ in splits]
    assert signal_report.overall.n_test == sum(len(te) for _, te in splits) == 1600
    np.testing.assert_array_equal(signal_report.test_index, np.arange(400, 2000))
    assert signal_report.proba.shape == (1600,)
    assert np.all((signal_report.proba >= 0) & (signal_report.proba <= 1))


def test_pure_noise_scores_like_a_coin():
    X, y, r = market(signal=0.0, seed=3)

    report = walk_forward_report(X, y, r, expanding_splits(len(y), 4), small_model)

    assert abs(report.overall.auc - 0.5) < 0.06
    assert report.overall.log_loss > report.overall.baseline_log_loss - 0.01


def test_fresh_model_per_fold_and_exact_baseline_numbers():
    y = np.array([1, 1, 1, 0] * 5 + [0, 1, 0, 0, 1])
    r = np.linspace(-0.01, 0.02, y.size)
    made: list[ConstantModel] = []

    def make() -> ConstantModel:
        made.append(ConstantModel(0.7))
        return made[-1]

    splits = [(np.arange(0, 20), np.arange(20, 25))]
    report = walk_forward_report(np.zeros((25, 2)), y, r, splits, make)

    fold = report.folds[0]
    assert len(made) == 1 and made[0].n_fits == 1
    assert fold.baseline_accuracy == pytest.approx(2 / 5)  # train is 75 % ones -> predicts 1
    assert fold.baseline_log_loss == pytest.approx(-(2 * math.log(0.75) + 3 * math.log(0.25)) / 5)
    assert fold.accuracy == pytest.approx(2 / 5)
    assert fold.exposure_pct == 100.0
    assert fold.sharpe == pytest.approx(fold.buy_hold_sharpe)
    assert fold.auc == 0.5  # constant scores rank nothing


def test_short_threshold_goes_short_and_flat_strategy_has_zero_sharpe():
    X, y, r = market(400, 4)
    splits = expanding_splits(400, 1)

    short = walk_forward_report(X, y, r, splits, lambda: ConstantModel(0.2), short_threshold=0.3)
    flat = walk_forward_report(X, y, r, splits, lambda: ConstantModel(0.5))

    assert short.overall.sharpe == pytest.approx(-short.overall.buy_hold_sharpe)
    assert short.overall.exposure_pct == 100.0
    assert flat.overall.sharpe == 0.0
    assert flat.overall.exposure_pct == 0.0


def test_positions_follow_thresholds():
    rule = StrategyRule(long_threshold=0.6, short_threshold=0.4)

    positions = rule.positions(np.array([0.1, 0.4, 0.5, 0.6, 0.9]))

    np.testing.assert_array_equal(positions, [-1, -1, 0, 1, 1])


def test_annualised_sharpe_known_values_and_horizon_scaling():
    returns = np.array([0.01, -0.005, 0.02, 0.0, 0.004])
    per_row = returns.mean() / returns.std(ddof=1)

    assert annualised_sharpe(returns, 252) == pytest.approx(per_row * math.sqrt(252))
    assert annualised_sharpe(returns, 252, horizon=4) == pytest.approx(per_row * math.sqrt(63))
    assert annualised_sharpe(np.zeros(10), 252) == 0.0
    assert math.isnan(annualised_sharpe(np.array([0.01]), 252))


def test_single_class_fold_reports_auc_as_missing():
    y = np.array([0, 1] * 10 + [1] * 5)
    r = np.full(25, 0.001)
    splits = [(np.arange(20), np.arange(20, 25))]

    report = walk_forward_report(np.zeros((25, 2)), y, r, splits, lambda: ConstantModel(0.6))

    assert math.isnan(report.overall.auc)
    assert report.to_dict()["overall"]["auc"] is None
    assert "n/a" in report.to_markdown()


def test_to_dict_is_strict_json(signal_report):
    data = signal_report.to_dict()

    text = json.dumps(data, allow_nan=False)

    assert json.loads(text)["overall"]["n_test"] == 1600
    assert len(data["folds"]) == 4
    assert data["rule"] == {
        "long_threshold": 0.55,
        "short_threshold": None,
        "periods_per_year": 252.0,
        "horizon": 1,
    }


def test_markdown_has_a_row_per_fold_and_overall(signal_report):
    lines = signal_report.to_markdown().splitlines()

    table = [line for line in lines if line.startswith("|")]

    assert len(table) == 2 + 4 + 1
    assert "AUC" in table[0] and "buy & hold Sharpe" in table[0]
    assert table[-1].startswith("| **overall**")
    assert any("sqrt(252 / 1)" in line for line in lines)


def test_html_is_standalone(signal_report):
    page = signal_report.to_html()

    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<tr") == 1 + 4 + 1
    assert '<tr class="overall">' in page
    for external in ("<script", "src=", "href=", "http://", "https://", "@import"):
        assert external not in page


def test_fit_final_fits_every_row():
    X, y, _ = market(500, 5)

    model = fit_final(X, y, small_model)

    assert isinstance(model, EnsembleClassifier)
    assert model.n_features_in_ == 5
    assert model.predict_proba(X).shape == (500, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"long_threshold": 1.5}, r"long_threshold must be in \[0, 1\]"),
        ({"short_threshold": 0.6}, "short_threshold must be in"),
        ({"periods_per_year": 0}, "periods_per_year must be > 0"),
        ({"horizon": 0}, "horizon must be an integer >= 1"),
    ],
)
def test_invalid_rule_is_rejected(kwargs, message):
    X, y, r = market(100, 4)

    with pytest.raises(ConfigError, match=message):
        walk_forward_report(X, y, r, expanding_splits(100, 1), small_model, **kwargs)


def test_invalid_inputs_are_rejected():
    X, y, r = market(100, 4)
    ok = expanding_splits(100, 2)
    bad_r = r.copy()
    bad_r[80] = np.nan

    cases = [
        ((X, y[:-1], r, ok), "same number of rows"),
        ((X, y, r, []), "at least one"),
        ((X, y, r, [(np.arange(50), np.arange(40, 60))]), "train and test rows overlap"),
        ((X, y, r, [(np.arange(10), np.arange(90, 101))]), r"indices must be in \[0, 100\)"),
        ((X, y, r, [(np.arange(10), np.array([], dtype=int))]), "must not be empty"),
        ((X, y, r, [(np.arange(10), np.arange(20, 30) * 1.0)]), "integer row indices"),
        ((X, y, r, [*ok, ok[-1]]), "overlap an earlier fold"),
        ((X, y, bad_r, ok), "1 are NaN/inf"),
    ]
    for args, message in cases:
        with pytest.raises(ConfigError, match=message):
            walk_forward_report(*args, small_model)


def test_dataframe_features_keep_their_column_names():
    X, y, r = market(500, 4)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])

    report = walk_forward_report(frame, y, r, expanding_splits(500, 2), small_model)
    model = fit_final(frame, y, small_model)

    assert report.overall.n_test == 332
    assert list(model.feature_names_in_) == ["a", "b", "c", "d"]
