"""``models/compress.py``: the levers, the AUC guard, exactness of the search, parity.

The data are small random rows with a signal (a linear part and a non-linear one), so each
member has something to lose; ensembles are small (40 + 40 trees) to keep the module fast.
Speed figures are not measured here (``speed=False``): timing belongs to the benchmarks.
"""

from __future__ import annotations

import hashlib
import pickle
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from tests.unit.models.compress_fixtures import refit_report

from ultrathink.errors import ConfigError
from ultrathink.features.validation import purged_walk_forward
from ultrathink.models.compiled import CompiledEnsemble
from ultrathink.models.compress import Compression, Recipe, compress, fit_recipe
from ultrathink.models.ensemble import EnsembleClassifier
from ultrathink.models.pipeline import TrainConfig, TrainingSet

PARAMS = {"gbm_n_estimators": 40, "forest_n_estimators": 40, "gbm_min_child_samples": 20,
          "forest_min_samples_leaf": 20}  # fmt: skip
N_ROWS, N_FEATURES, N_FOLDS = 1_200, 6, 3


def make_rows(seed: int, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, N_FEATURES))
    signal = 0.6 * X[:, 0] - 0.4 * X[:, 1] + 0.5 * (X[:, 2] ** 2 - 1.0) * (X[:, 3] > 0)
    return X, (signal + rng.normal(size=n_rows) > 0).astype(np.int64)


def training_set(model: Any = None, info: Any = None, **params: Any) -> TrainingSet:
    params = {**PARAMS, **params}
    X, y = make_rows(0, N_ROWS)
    fwd = np.random.default_rng(1).normal(scale=0.01, size=N_ROWS)
    config = TrainConfig(horizon=1, n_folds=N_FOLDS, model_params=params)
    splits = purged_walk_forward(N_ROWS, N_FOLDS, 1)
    model = model if model is not None else EnsembleClassifier(**params).fit(X, y)
    return TrainingSet(model, info, None, config, X, y, fwd, np.arange(N_ROWS), splits, 252.0)


@pytest.fixture(scope="module")
def data() -> TrainingSet:
    return training_set()


@pytest.fixture(scope="module")
def result(data: TrainingSet) -> Compression:
    return compress(data, max_auc_loss_pct=0.5, speed=False)


def rows_by_lever(result: Compression) -> dict[str, Any]:
    return {row.lever: row for row in result.rows}


def test_compressed_model_is_smaller_and_within_the_auc_budget(result: Compression) -> None:
    budget = result.budget
    assert isinstance(result.model, EnsembleClassifier)
    assert budget["bytes_after"] < budget["bytes_before"]
    assert budget["bytes_after"] == len(pickle.dumps(result.model, pickle.HIGHEST_PROTOCOL))
    assert budget["auc_after"] >= budget["auc_before"] * (1 - 0.005)
    assert result.rows[0].lever == "before" and result.rows[-1].lever == "final"
    assert any(row.status == "applied" for row in result.rows)


def test_every_lever_is_reported(result: Compression) -> None:
    levers = {"gbm_trees", "forest_trees", "gbm_leaves", "forest_depth", "drop_members",
              "distil_forest", "float32_thresholds"}  # fmt: skip
    assert set(result.levers) == levers
    assert levers <= set(rows_by_lever(result))
    float32 = result.levers["float32_thresholds"]
    assert float32["applied"] is False and "not applied" in float32["change"]


def test_search_figures_equal_a_real_walk_forward_of_the_final_recipe(
    data: TrainingSet, result: Compression
) -> None:
    # tree counts are evaluated as prefixes of larger fits: they must be exactly a refit
    report = refit_report(data, result.recipe)
    np.testing.assert_array_equal(report.proba, result.report.proba)
    assert report.overall.auc == result.report.overall.auc
    assert report.overall.log_loss == result.report.overall.log_loss
    assert rows_by_lever(result)["final"].auc == report.overall.auc


def test_distilled_search_figures_equal_a_real_walk_forward() -> None:
    # with the forest's vote 3x the boosted member's, the forest can neither be dropped nor
    # kept as small as its distilled student on these rows
    data = training_set(weights=(1.0, 3.0, 0.0))
    result = compress(data, max_auc_loss_pct=0.5, speed=False)
    assert result.recipe.teacher is not None, "not distilled: pick weights where it is"
    assert result.levers["distil_forest"]["applied"]
    report = refit_report(data, result.recipe)
    np.testing.assert_array_equal(report.proba, result.report.proba)
    assert report.overall.auc == result.report.overall.auc


def test_parent_baseline_equals_the_parents_walk_forward(
    data: TrainingSet, result: Compression
) -> None:
    report = refit_report(data, Recipe(data.model.get_params()))
    assert result.budget["auc_before"] == report.overall.auc


def test_compiled_form_of_the_compressed_model_matches_its_predict_proba(
    result: Compression,
) -> None:
    X, _ = make_rows(5, 400)
    compiled = CompiledEnsemble.from_ensemble(result.model)
    expected = result.model.predict_proba(X)[:, 1]
    np.testing.assert_allclose(compiled.predict_batch(X), expected, rtol=0.0, atol=1e-12)
    rows = np.array([compiled.predict_row(x) for x in X])
    np.testing.assert_allclose(rows, expected, rtol=0.0, atol=1e-12)


def test_distilled_ensemble_is_an_ordinary_ensemble_with_parity(data: TrainingSet) -> None:
    teacher = {**data.model.get_params(), "weights": (1.0, 1.0, 1.0)}
    params = {**teacher, "forest_n_estimators": 1, "forest_max_depth": 1,
              "gbm_n_estimators": 15, "gbm_num_leaves": 7, "weights": (2.0, 0.0, 1.0)}  # fmt: skip
    model = fit_recipe(Recipe(params, teacher), data.X, data.y)
    assert model.members_["gbm"].n_estimators == 15
    assert model.members_["forest"].n_estimators == 1
    X, _ = make_rows(6, 300)
    compiled = CompiledEnsemble.from_ensemble(model)
    expected = model.predict_proba(X)[:, 1]
    np.testing.assert_allclose(compiled.predict_batch(X), expected, rtol=0.0, atol=1e-12)
    # the student learned the teacher's vote, not the hard labels
    hard = EnsembleClassifier(**params).fit(data.X, data.y).members_["gbm"]
    assert not np.array_equal(hard.predict_proba(X), model.members_["gbm"].predict_proba(X))


def test_guard_rejects_levers_that_lose_more_than_the_budget(data: TrainingSet) -> None:
    strict = compress(data, max_auc_loss_pct=0.0, speed=False)
    before = strict.budget["auc_before"]
    applied = [row for row in strict.rows if row.status == "applied"]
    rejected = [row for row in strict.rows if row.status == "rejected"]
    assert all(row.auc is not None and row.auc >= before for row in applied)
    assert rejected, "no lever lost AUC on this data: the guard was not exercised"
    assert all(row.auc is not None and row.auc < before for row in rejected)
    assert all("below" in row.change and "budget 0 %" in row.change for row in rejected)
    assert strict.budget["auc_after"] >= before


def test_results_are_deterministic(data: TrainingSet, result: Compression) -> None:
    again = compress(data, max_auc_loss_pct=0.5, speed=False)

    def digest(r: Compression) -> str:
        return hashlib.sha256(pickle.dumps(r.model, pickle.HIGHEST_PROTOCOL)).hexdigest()

    assert again.recipe == result.recipe
    assert again.levers == result.levers
    assert again.rows == result.rows
    assert digest(again) == digest(result)


def test_nothing_to_compress_is_a_clear_error(data: TrainingSet) -> None:
    stubs = {"gbm_n_estimators": 1, "gbm_num_leaves": 2, "forest_n_estimators": 1,
             "forest_max_depth": 1}  # fmt: skip
    params = {**data.model.get_params(), **stubs, "weights": (0.0, 0.0, 1.0)}
    linear_only = training_set(model=fit_recipe(Recipe(params), data.X, data.y), **params)
    with pytest.raises(ConfigError, match=r"no lever shrinks .* drop_members n/a"):
        compress(linear_only, speed=False)


def test_a_model_that_is_not_an_ensemble_is_refused(data: TrainingSet) -> None:
    other = training_set(model=LogisticRegression().fit(data.X, data.y))
    with pytest.raises(ConfigError, match="not an EnsembleClassifier"):
        compress(other, speed=False)


@pytest.mark.parametrize("budget", [-0.1, 100.0, float("nan")])
def test_budget_out_of_range_is_refused(data: TrainingSet, budget: float) -> None:
    with pytest.raises(ConfigError, match=r"--max-auc-loss-pct must be in \[0, 100\)"):
        compress(data, max_auc_loss_pct=budget, speed=False)


def test_a_distilled_version_is_refused(data: TrainingSet) -> None:
    lineage = {"kind": "compress", "parent": "v0001", "teacher_params": {"gbm": 1}}
    info = SimpleNamespace(version="v0002", extra={"lineage": lineage}, metrics={})
    with pytest.raises(ConfigError, match=r"v0002 was distilled.*compress its parent v0001"):
        compress(training_set(model=data.model, info=info), speed=False)
