"""EnsembleClassifier: sklearn contract, soft voting, determinism, input validation."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from lightgbm import LGBMClassifier
from sklearn.base import clone
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import check_estimator

from ultrathink.errors import ConfigError
from ultrathink.models.ensemble import EnsembleClassifier, ModelInputError

SMALL = {
    "gbm_n_estimators": 20,
    "forest_n_estimators": 20,
    "gbm_min_child_samples": 20,
    "forest_min_samples_leaf": 20,
}


def make_data(n_rows: int = 2000, n_features: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_rows, n_features))
    logit = 1.2 * X[:, 0] - 0.8 * X[:, 1] + 0.6 * X[:, 2] * X[:, 3]
    y = (logit + rng.logistic(size=n_rows) > 0).astype(np.int64)
    return X, y


@pytest.fixture(scope="module")
def data():
    return make_data()


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return EnsembleClassifier(**SMALL).fit(X, y)


def test_init_stores_params_as_given():
    weights = [2, 1, 0]
    model = EnsembleClassifier(weights=weights, forest="random_forest", n_jobs=2)

    params = model.get_params()

    assert params["weights"] is weights
    assert params["forest"] == "random_forest"
    assert params["n_jobs"] == 2
    assert not hasattr(model, "members_")


def test_defaults():
    params = EnsembleClassifier().get_params()

    assert params == {
        "gbm_n_estimators": 200,
        "gbm_learning_rate": 0.05,
        "gbm_num_leaves": 15,
        "gbm_min_child_samples": 50,
        "forest": "extra_trees",
        "forest_n_estimators": 200,
        "forest_max_depth": 6,
        "forest_min_samples_leaf": 50,
        "logit_C": 0.1,
        "weights": (1.0, 1.0, 1.0),
        "random_state": 0,
        "n_jobs": 1,
    }


def test_clone_and_set_params_round_trip():
    model = EnsembleClassifier(**SMALL, weights=(3.0, 1.0, 1.0))

    copy = clone(model).set_params(weights=(0.0, 1.0, 0.0), logit_C=1.0)

    assert copy.get_params()["weights"] == (0.0, 1.0, 0.0)
    assert copy.get_params()["logit_C"] == 1.0
    assert model.get_params()["weights"] == (3.0, 1.0, 1.0)
    assert clone(copy).get_params() == copy.get_params()


def test_fit_returns_self_and_sets_learned_attributes(data):
    X, y = data
    model = EnsembleClassifier(**SMALL)

    result = model.fit(X, y)

    assert result is model
    assert list(model.members_) == ["gbm", "forest", "linear"]
    assert isinstance(model.members_["gbm"], LGBMClassifier)
    assert isinstance(model.members_["forest"], ExtraTreesClassifier)
    linear = model.members_["linear"]
    assert isinstance(linear, Pipeline)
    assert [name for name, _ in linear.steps] == ["scale", "logit"]
    np.testing.assert_allclose(model.weights_, [1 / 3, 1 / 3, 1 / 3])
    np.testing.assert_array_equal(model.classes_, [0, 1])
    assert model.n_features_in_ == 30
    assert not hasattr(model, "feature_names_in_")


def test_random_forest_member(data):
    X, y = data

    model = EnsembleClassifier(**SMALL, forest="random_forest").fit(X, y)

    assert isinstance(model.members_["forest"], RandomForestClassifier)


def test_members_get_the_hyperparameters(fitted):
    gbm = fitted.members_["gbm"]
    forest = fitted.members_["forest"]

    assert gbm.n_estimators == 20
    assert gbm.get_params()["deterministic"] is True
    assert gbm.get_params()["force_row_wise"] is True
    assert forest.n_estimators == 20
    assert forest.max_depth == 6
    assert fitted.members_["linear"].named_steps["logit"].C == 0.1


def test_proba_shape_sums_to_one_and_learns_signal(fitted, data):
    X, y = data

    proba = fitted.predict_proba(X)

    assert proba.shape == (X.shape[0], 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.all((proba >= 0) & (proba <= 1))
    assert np.mean(fitted.predict(X) == y) > 0.7


def test_proba_is_weighted_average_of_members(data):
    X, y = data
    model = EnsembleClassifier(**SMALL, weights=(2.0, 1.0, 1.0)).fit(X, y)

    members = model.member_proba(X[:100])
    expected = 0.5 * members["gbm"] + 0.25 * members["forest"] + 0.25 * members["linear"]

    np.testing.assert_allclose(model.predict_proba(X[:100])[:, 1], expected, rtol=1e-12)


@pytest.mark.parametrize(
    ("weights", "member"),
    [((1, 0, 0), "gbm"), ((0, 1, 0), "forest"), ((0, 0, 1), "linear")],
)
def test_single_member_weight_equals_that_member(data, weights, member):
    X, y = data
    model = EnsembleClassifier(**SMALL).set_params(weights=weights).fit(X, y)

    expected = model.members_[member].predict_proba(X[:200])[:, 1]

    np.testing.assert_array_equal(model.predict_proba(X[:200])[:, 1], expected)


@pytest.mark.parametrize("forest", ["extra_trees", "random_forest"])
def test_same_seed_gives_bit_identical_proba_with_threads(forest):
    # 2 threads: LightGBM runs deterministic=True; forests predict single-threaded
    X, y = make_data(600, 8)
    params = {**SMALL, "forest": forest, "random_state": 7, "n_jobs": 2}

    first_model = EnsembleClassifier(**params).fit(X, y)
    first = first_model.predict_proba(X)
    second = EnsembleClassifier(**params).fit(X, y).predict_proba(X)

    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, first_model.predict_proba(X))


def test_different_seed_gives_different_proba(data):
    X, y = data

    first = EnsembleClassifier(**SMALL, random_state=1).fit(X, y).predict_proba(X)
    second = EnsembleClassifier(**SMALL, random_state=2).fit(X, y).predict_proba(X)

    assert not np.array_equal(first, second)


def test_pickle_round_trip_keeps_predictions(fitted, data):
    X, _ = data

    restored = pickle.loads(pickle.dumps(fitted))

    np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))


def test_dataframe_input_remembers_and_checks_feature_names(data):
    X, y = data
    columns = [f"f{i}" for i in range(X.shape[1])]
    frame = pd.DataFrame(X, columns=columns)
    model = EnsembleClassifier(**SMALL).fit(frame, y)

    proba_frame = model.predict_proba(frame.iloc[:50])

    assert list(model.feature_names_in_) == columns
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        proba_array = model.predict_proba(X[:50])
    np.testing.assert_array_equal(proba_frame, proba_array)
    with pytest.raises(ValueError, match="feature names"):
        model.predict_proba(frame.iloc[:50, ::-1])


def test_predict_before_fit_raises():
    with pytest.raises(NotFittedError):
        EnsembleClassifier().predict_proba(np.zeros((1, 3)))


def test_wrong_feature_count_raises(fitted):
    with pytest.raises(ValueError, match="30 features"):
        fitted.predict_proba(np.zeros((1, 29)))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([0, 1, 2], "Only binary classification"),
        ([1, 2], r"exactly the values \{0, 1\}"),
        (["down", "up"], r"exactly the values \{0, 1\}"),
        ([1, 1], r"exactly the values \{0, 1\}"),
        ([0.1, 0.7, 0.3], "Unknown label type: continuous"),
    ],
)
def test_non_binary_labels_are_rejected(labels, message):
    X = np.random.default_rng(0).normal(size=(60, 3))
    y = np.resize(np.asarray(labels), 60)

    with pytest.raises(ModelInputError, match=message) as info:
        EnsembleClassifier(**SMALL).fit(X, y)

    assert isinstance(info.value, ConfigError)
    assert isinstance(info.value, ValueError)


def test_boolean_and_float_labels_are_accepted(data):
    X, y = data

    model = EnsembleClassifier(**SMALL).fit(X[:500], y[:500].astype(bool))

    np.testing.assert_array_equal(model.classes_, [0, 1])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"forest": "xgboost"}, "forest must be one of"),
        ({"weights": (1.0, 1.0)}, "weights must be 3 finite non-negative"),
        ({"weights": (1.0, -1.0, 1.0)}, "weights must be 3 finite non-negative"),
        ({"weights": (0, 0, 0)}, "weights must not all be zero"),
        ({"weights": "heavy"}, "weights must be 3"),
        ({"gbm_learning_rate": 0.0}, "gbm_learning_rate must be a number > 0"),
        ({"gbm_n_estimators": 0}, "gbm_n_estimators must be an integer >= 1"),
        ({"gbm_num_leaves": 1}, "gbm_num_leaves must be an integer >= 2"),
        ({"forest_max_depth": 2.5}, "forest_max_depth must be an integer"),
        ({"logit_C": -1}, "logit_C must be a number > 0"),
        ({"n_jobs": 0}, "n_jobs must be an integer >= 1"),
    ],
)
def test_invalid_params_are_rejected_at_fit(params, message):
    X, y = make_data(100, 4)
    model = EnsembleClassifier(**params)

    with pytest.raises(ModelInputError, match=message):
        model.fit(X, y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
def test_sklearn_estimator_checks():
    # the ensemble only accepts labels {0, 1} by design; these checks fit on {1, 2} or strings
    label_checks = [
        "check_estimators_dtypes",
        "check_classifier_data_not_an_array",
        "check_classifiers_classes",
        "check_fit2d_1feature",
    ]
    model = EnsembleClassifier(
        gbm_n_estimators=5,
        forest_n_estimators=5,
        gbm_min_child_samples=1,
        forest_min_samples_leaf=1,
    )

    check_estimator(model, expected_failed_checks=dict.fromkeys(label_checks, "labels {0, 1}"))
