"""CompiledEnsemble returns what the reference ensemble and its members return.

Tolerance: 1e-12 absolute on probabilities. Tree members match exactly in practice (the same
leaves, summed in the same order, through the same sigmoid); the linear member differs by a
few ulps because the scaler is folded into the weights (measured ~3e-16).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ultrathink.models import compiled_kernels as kernels
from ultrathink.models.compiled import CompiledEnsemble
from ultrathink.models.ensemble import EnsembleClassifier

TOL = 1e-12
N_FEATURES = 6


@dataclass
class StandIn:
    """The duck-typed fitted structure of EnsembleClassifier, with its predict_proba."""

    members_: dict[str, Any]
    weights_: np.ndarray

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p1 = np.zeros(X.shape[0])
        for weight, member in zip(self.weights_, self.members_.values(), strict=True):
            if weight > 0.0:
                p1 += weight * member.predict_proba(X)[:, 1]
        np.clip(p1, 0.0, 1.0, out=p1)
        return np.column_stack([1.0 - p1, p1])


def make_data(seed: int, n_rows: int = 600, nan_fraction: float = 0.0) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, N_FEATURES)) * np.array([1.0, 2.0, 0.5, 10.0, 1.0, 0.1])
    y = (X[:, 0] - 0.5 * X[:, 1] + 0.1 * X[:, 3] + rng.normal(size=n_rows) > 0).astype(int)
    if nan_fraction:
        X[rng.random(X.shape) < nan_fraction] = np.nan
    return X, y


def fit_members(X: np.ndarray, y: np.ndarray, forest: str = "extra_trees", **gbm: Any) -> dict:
    params = {"n_estimators": 40, "num_leaves": 7, "min_child_samples": 5, "verbose": -1}
    forest_cls = ExtraTreesClassifier if forest == "extra_trees" else RandomForestClassifier
    linear = Pipeline([("scale", StandardScaler()), ("logit", LogisticRegression())])
    return {
        "gbm": lgb.LGBMClassifier(**{**params, **gbm}).fit(X, y),
        "forest": forest_cls(n_estimators=25, max_depth=6, random_state=0).fit(X, y),
        "linear": linear.fit(np.nan_to_num(X), y),
    }


def standin(members: dict, weights: tuple[float, ...] = (1.0, 1.0, 1.0)) -> StandIn:
    w = np.asarray(weights, dtype=np.float64)
    return StandIn(members_=members, weights_=w / w.sum())


@pytest.fixture(scope="module")
def members() -> dict:
    return fit_members(*make_data(0))


@pytest.fixture(scope="module")
def compiled(members: dict) -> CompiledEnsemble:
    return CompiledEnsemble.from_ensemble(standin(members))


def assert_parity(compiled: CompiledEnsemble, reference: Any, X: np.ndarray) -> None:
    expected = reference.predict_proba(X)[:, 1]
    np.testing.assert_allclose(compiled.predict_batch(X), expected, rtol=0.0, atol=TOL)
    rows = np.array([compiled.predict_row(x) for x in X])
    np.testing.assert_allclose(rows, expected, rtol=0.0, atol=TOL)


def assert_member_parity(compiled: CompiledEnsemble, members: dict, X: np.ndarray) -> None:
    got = compiled.predict_members(X)
    for column, name in enumerate(("gbm", "forest")):
        expected = members[name].predict_proba(X)[:, 1]
        np.testing.assert_allclose(got[:, column], expected, rtol=0.0, atol=TOL, err_msg=name)


# -- whole ensemble -----------------------------------------------------------------------


def test_random_rows_match_reference(compiled: CompiledEnsemble, members: dict) -> None:
    X, _ = make_data(1, n_rows=500)
    assert_parity(compiled, standin(members), X)


@pytest.mark.parametrize(
    "weights", [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0), (3.0, 1.0, 0.5)]
)
def test_weight_variations_match_reference(members: dict, weights: tuple[float, ...]) -> None:
    model = standin(members, weights)
    X, _ = make_data(2, n_rows=200)
    assert_parity(CompiledEnsemble.from_ensemble(model), model, X)


def test_random_forest_member_matches_reference() -> None:
    members = fit_members(*make_data(3), forest="random_forest")
    X, _ = make_data(4, n_rows=300)
    assert_parity(CompiledEnsemble.from_ensemble(standin(members)), standin(members), X)


def test_extreme_values_match_reference(compiled: CompiledEnsemble, members: dict) -> None:
    # infinities, values beyond float32 range, signed zeros and subnormals
    values = [1e300, -1e300, np.inf, -np.inf, 0.0, -0.0, 1e-40, -1e-40, 3e38, 5e-324]
    X = np.array([[v] * N_FEATURES for v in values])
    gbm = members["gbm"].predict_proba(X)[:, 1]
    np.testing.assert_allclose(compiled.predict_members(X)[:, 0], gbm, rtol=0.0, atol=TOL)
    # scikit-learn refuses what does not fit in float32 (and the reference with it)
    in_float32 = X[np.all(np.abs(X) < 3.4e38, axis=1)]
    assert_member_parity(compiled, members, in_float32)
    assert_parity(compiled, standin(members), in_float32)


def test_batch_equals_row_by_row_bit_for_bit(compiled: CompiledEnsemble) -> None:
    X, _ = make_data(5, n_rows=3 * kernels.BLOCK_ROWS + 7, nan_fraction=0.02)
    rows = np.array([compiled.predict_row(x) for x in X])
    np.testing.assert_array_equal(compiled.predict_batch(X), rows)


# -- splits exactly at thresholds ------------------------------------------------------------


def threshold_rows(compiled: CompiledEnsemble, trees: slice, float32_neighbours: bool) -> Any:
    # every split threshold of the chosen trees, placed in its own feature of a base row
    rng = np.random.default_rng(6)
    first, stop = trees.start, trees.stop
    roots = compiled.tree_i[kernels.ROOT]
    lo, hi = roots[first], roots[stop] if stop < roots.size else compiled.node_i.shape[1]
    features = compiled.node_i[kernels.FEATURE, lo:hi]
    thresholds = compiled.node_f[kernels.THRESHOLD, lo:hi]
    split = np.isfinite(thresholds)
    values = [thresholds[split]]
    if float32_neighbours:
        t32 = thresholds[split].astype(np.float32)
        values += [np.nextafter(t32, np.inf), np.nextafter(t32, -np.inf)]
    rows = []
    for vals in values:
        X = rng.normal(size=(vals.size, N_FEATURES))
        X[np.arange(vals.size), features[split]] = vals
        rows.append(X)
    return np.vstack(rows).astype(np.float64)


def test_lightgbm_rows_at_thresholds_match(compiled: CompiledEnsemble, members: dict) -> None:
    n_gbm, _ = compiled.n_trees
    X = threshold_rows(compiled, slice(0, n_gbm), float32_neighbours=False)
    assert_member_parity(compiled, members, X)
    assert_parity(compiled, standin(members), X)


def test_forest_rows_at_thresholds_match_float32_semantics(
    compiled: CompiledEnsemble, members: dict
) -> None:
    # scikit-learn compares float32(x) with float64 thresholds; x at the threshold and at its
    # float32 neighbours exercises exactly that rounding
    n_gbm, n_forest = compiled.n_trees
    X = threshold_rows(compiled, slice(n_gbm, n_gbm + n_forest), float32_neighbours=True)
    assert_member_parity(compiled, members, X)
    assert_parity(compiled, standin(members), X)


# -- missing values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("train_nan", "gbm_params"),
    [
        (0.1, {}),  # missing_type NaN: NaN goes the learned default way
        (0.0, {}),  # missing_type None: NaN is read as 0.0
        (0.0, {"use_missing": False}),
        (0.0, {"zero_as_missing": True}),  # missing_type Zero: 0 and NaN go the default way
        (0.1, {"zero_as_missing": True}),
    ],
)
def test_nan_and_zero_inputs_match_lightgbm_and_sklearn(train_nan: float, gbm_params: dict) -> None:
    X, y = make_data(7, nan_fraction=train_nan)
    X[::7, 2] = 0.0
    members = fit_members(X, y, **gbm_params)
    compiled = CompiledEnsemble.from_ensemble(standin(members))
    X_test, _ = make_data(8, n_rows=300, nan_fraction=0.2)
    X_test[::5, 1] = 0.0
    X_test[::6, 2] = 1e-36  # LightGBM reads |x| <= 1e-35 as 0.0
    X_test[::11] = np.nan
    assert_member_parity(compiled, members, X_test)


def test_nan_row_without_linear_weight_matches_reference() -> None:
    X, y = make_data(9, nan_fraction=0.1)
    members = fit_members(X, y)
    model = standin(members, (1.0, 2.0, 0.0))
    X_test, _ = make_data(10, n_rows=100, nan_fraction=0.3)
    assert_parity(CompiledEnsemble.from_ensemble(model), model, X_test)


def test_nan_with_linear_weight_gives_nan(compiled: CompiledEnsemble) -> None:
    x = np.zeros(N_FEATURES)
    x[3] = np.nan
    assert np.isnan(compiled.predict_row(x))


# -- properties -------------------------------------------------------------------------------


row_values = st.floats(min_value=-50.0, max_value=50.0, allow_nan=False, width=64)


@settings(max_examples=60, deadline=None)
@given(rows=arrays(np.float64, (4, N_FEATURES), elements=row_values))
def test_any_finite_rows_match_reference(
    compiled: CompiledEnsemble, members: dict, rows: np.ndarray
) -> None:
    assert_parity(compiled, standin(members), rows)


@settings(max_examples=60, deadline=None)
@given(
    rows=arrays(
        np.float64,
        (4, N_FEATURES),
        elements=st.one_of(row_values, st.just(np.nan), st.just(0.0)),
    )
)
def test_any_rows_with_nan_match_tree_members(
    compiled: CompiledEnsemble, members: dict, rows: np.ndarray
) -> None:
    assert_member_parity(compiled, members, rows)


# -- the real EnsembleClassifier --------------------------------------------------------------


@pytest.mark.parametrize("forest", ["extra_trees", "random_forest"])
def test_real_ensemble_classifier_matches(forest: str) -> None:
    X, y = make_data(11, n_rows=800)
    model = EnsembleClassifier(
        gbm_n_estimators=30,
        gbm_min_child_samples=10,
        forest=forest,
        forest_n_estimators=20,
        forest_min_samples_leaf=10,
        weights=(2.0, 1.0, 1.0),
    ).fit(X, y)
    compiled = CompiledEnsemble.from_ensemble(model)
    X_test, _ = make_data(12, n_rows=400)
    assert_parity(compiled, model, X_test)
    members = model.member_proba(X_test)
    got = compiled.predict_members(X_test)
    for column, name in enumerate(("gbm", "forest", "linear")):
        np.testing.assert_allclose(got[:, column], members[name], rtol=0.0, atol=TOL)
