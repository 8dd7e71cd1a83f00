"""CompiledEnsemble's API: construction, persistence, threads, validation and refusals."""

from __future__ import annotations

import pickle
from types import SimpleNamespace
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from ultrathink.errors import ConfigError
from ultrathink.models import compiled_kernels as kernels
from ultrathink.models.compiled import CompiledEnsemble, UnsupportedModelError

N_FEATURES = 5


def make_data(seed: int, n_rows: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, N_FEATURES))
    y = (X[:, 0] + X[:, 1] + rng.normal(size=n_rows) > 0).astype(int)
    return X, y


def build(gbm: Any = None, linear: Any = None, weights: Any = (0.5, 0.25, 0.25)) -> Any:
    X, y = make_data(0)
    members = {
        "gbm": gbm
        or lgb.LGBMClassifier(n_estimators=20, num_leaves=5, min_child_samples=5, verbose=-1),
        "forest": ExtraTreesClassifier(n_estimators=10, max_depth=4, random_state=0),
        "linear": linear
        or Pipeline([("scale", StandardScaler()), ("logit", LogisticRegression())]),
    }
    for member in members.values():
        member.fit(X, y)
    return SimpleNamespace(members_=members, weights_=np.asarray(weights, dtype=np.float64))


@pytest.fixture(scope="module")
def model() -> Any:
    return build()


@pytest.fixture(scope="module")
def compiled(model: Any) -> CompiledEnsemble:
    return CompiledEnsemble.from_ensemble(model)


def test_tables_describe_the_members(compiled: CompiledEnsemble) -> None:
    assert compiled.n_features == N_FEATURES
    assert compiled.n_trees == (20, 10)
    np.testing.assert_allclose(compiled.weights, [0.5, 0.25, 0.25])
    assert compiled.node_i.dtype == np.int32 and compiled.node_f.dtype == np.float64
    assert "n_gbm_trees=20" in repr(compiled)


def test_leaves_point_at_themselves_and_splits_at_adjacent_children(
    compiled: CompiledEnsemble,
) -> None:
    nodes = np.arange(compiled.node_i.shape[1])
    left = compiled.node_i[kernels.LEFT]
    right = compiled.node_i[kernels.RIGHT]
    leaf = left == nodes
    assert np.array_equal(right[leaf], nodes[leaf])
    assert np.all(np.isinf(compiled.node_f[kernels.THRESHOLD, leaf]))
    assert np.array_equal(right[~leaf], left[~leaf] + 1)


def test_pickle_round_trip_predicts_identically(compiled: CompiledEnsemble) -> None:
    X, _ = make_data(1, n_rows=50)
    restored = pickle.loads(pickle.dumps(compiled))
    assert isinstance(restored, CompiledEnsemble)
    np.testing.assert_array_equal(restored.predict_batch(X), compiled.predict_batch(X))


def test_threads_do_not_change_results(compiled: CompiledEnsemble) -> None:
    X, _ = make_data(2, n_rows=5_000)
    serial = compiled.predict_batch(X)
    np.testing.assert_array_equal(compiled.predict_batch(X, n_threads=2), serial)
    np.testing.assert_array_equal(compiled.predict_batch(X, n_threads=3), serial)


def test_predict_proba_has_sklearn_shape(compiled: CompiledEnsemble, model: Any) -> None:
    X, _ = make_data(3, n_rows=20)
    proba = compiled.predict_proba(X)
    assert proba.shape == (20, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_empty_batch_and_warmup(compiled: CompiledEnsemble) -> None:
    compiled.warmup()
    assert compiled.predict_batch(np.empty((0, N_FEATURES))).shape == (0,)


def test_batch_converts_lists_and_float32(compiled: CompiledEnsemble) -> None:
    X, _ = make_data(4, n_rows=10)
    expected = compiled.predict_batch(X.astype(np.float32).astype(np.float64))
    np.testing.assert_array_equal(compiled.predict_batch(X.astype(np.float32)), expected)
    np.testing.assert_array_equal(compiled.predict_batch(X.tolist()), compiled.predict_batch(X))


@pytest.mark.parametrize("shape", [(3,), (2, N_FEATURES + 1)])
def test_batch_rejects_wrong_shape(compiled: CompiledEnsemble, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=f"shape \\(n_rows, {N_FEATURES}\\)"):
        compiled.predict_batch(np.zeros(shape))


@pytest.mark.parametrize("n_threads", [0, -1, 1.5, True])
def test_batch_rejects_bad_thread_count(compiled: CompiledEnsemble, n_threads: Any) -> None:
    with pytest.raises(ValueError, match="n_threads must be an integer >= 1"):
        compiled.predict_batch(np.zeros((1, N_FEATURES)), n_threads=n_threads)


def test_scaler_free_linear_member_folds() -> None:
    model = build(linear=LogisticRegression(), weights=(0.0, 0.0, 1.0))
    X, _ = make_data(5, n_rows=30)
    expected = model.members_["linear"].predict_proba(X)[:, 1]
    got = CompiledEnsemble.from_ensemble(model).predict_batch(X)
    np.testing.assert_allclose(got, expected, rtol=0.0, atol=1e-12)


def test_unsupported_linear_step_is_refused() -> None:
    linear = Pipeline([("scale", MinMaxScaler()), ("logit", LogisticRegression())])
    with pytest.raises(UnsupportedModelError, match="folds only StandardScaler"):
        CompiledEnsemble.from_ensemble(build(linear=linear))


def test_categorical_lightgbm_split_is_refused() -> None:
    rng = np.random.default_rng(6)
    X = rng.normal(size=(400, N_FEATURES))
    X[:, 0] = rng.integers(0, 4, size=400)
    y = np.isin(X[:, 0], [1, 3]).astype(int)
    gbm = lgb.LGBMClassifier(n_estimators=5, num_leaves=4, min_child_samples=5, verbose=-1)
    gbm.fit(X, y, categorical_feature=[0])
    model = build()
    model.members_["gbm"] = gbm
    with pytest.raises(UnsupportedModelError, match="categorical features are not supported"):
        CompiledEnsemble.from_ensemble(model)


def test_linear_tree_lightgbm_is_refused() -> None:
    gbm = lgb.LGBMClassifier(
        n_estimators=5, num_leaves=4, min_child_samples=5, linear_tree=True, verbose=-1
    )
    with pytest.raises(UnsupportedModelError, match="linear_tree=True"):
        CompiledEnsemble.from_ensemble(build(gbm=gbm))


def test_non_binary_lightgbm_objective_is_refused() -> None:
    gbm = lgb.LGBMClassifier(
        n_estimators=5, num_leaves=4, min_child_samples=5, objective="cross_entropy", verbose=-1
    )
    with pytest.raises(UnsupportedModelError, match="objective must be 'binary'"):
        CompiledEnsemble.from_ensemble(build(gbm=gbm))


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (SimpleNamespace(), "members_ keys"),
        (SimpleNamespace(members_={"gbm": None}, weights_=[1.0]), "members_ keys"),
    ],
)
def test_unfitted_or_foreign_model_is_refused(model: Any, match: str) -> None:
    with pytest.raises(UnsupportedModelError, match=match):
        CompiledEnsemble.from_ensemble(model)


def test_wrong_weight_count_is_refused(model: Any) -> None:
    bad = SimpleNamespace(members_=model.members_, weights_=np.array([1.0, 0.0]))
    with pytest.raises(UnsupportedModelError, match="3 weights"):
        CompiledEnsemble.from_ensemble(bad)


def test_tables_pointing_outside_are_refused(compiled: CompiledEnsemble) -> None:
    node_i = compiled.node_i.copy()
    node_i[kernels.FEATURE, 0] = N_FEATURES
    with pytest.raises(UnsupportedModelError, match="outside"):
        CompiledEnsemble(node_i, compiled.node_f, compiled.tree_i, compiled.params)
    with pytest.raises(UnsupportedModelError, match="inconsistent shapes"):
        CompiledEnsemble(compiled.node_i.T, compiled.node_f, compiled.tree_i, compiled.params)


def test_unsupported_model_error_is_a_config_error() -> None:
    assert issubclass(UnsupportedModelError, ConfigError)
    assert issubclass(UnsupportedModelError, ValueError)


@pytest.mark.parametrize("width", [N_FEATURES - 1, N_FEATURES + 1])
def test_row_of_wrong_length_is_refused(compiled: CompiledEnsemble, width: int) -> None:
    with pytest.raises(ValueError, match="row length must equal"):
        compiled.predict_row(np.zeros(width))


def test_single_leaf_trees_compile_and_match() -> None:
    # no split meets the requirements: every tree is a lone leaf of depth 0
    X, y = make_data(7)
    members = {
        "gbm": lgb.LGBMClassifier(n_estimators=3, min_child_samples=10_000, verbose=-1),
        "forest": ExtraTreesClassifier(n_estimators=3, min_samples_split=10_000),
        "linear": Pipeline([("scale", StandardScaler()), ("logit", LogisticRegression())]),
    }
    for member in members.values():
        member.fit(X, y)
    compiled = CompiledEnsemble.from_ensemble(
        SimpleNamespace(members_=members, weights_=np.array([0.5, 0.5, 0.0]))
    )
    assert np.all(compiled.tree_i[kernels.DEPTH] == 0)
    expected = 0.5 * sum(members[m].predict_proba(X[:20])[:, 1] for m in ("gbm", "forest"))
    np.testing.assert_allclose(compiled.predict_batch(X[:20]), expected, rtol=0.0, atol=1e-12)
