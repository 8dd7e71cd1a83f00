"""Feature selection on data with a planted signal: clustered MDA keeps the signal whose twin
shares it, drops noise; plain MDA under-rates twins; the shuffles are sklearn's; a seed
repeats a selection exactly. Real ensembles (small), no mocks."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.inspection import permutation_importance

from ultrathink.features.validation import purged_walk_forward
from ultrathink.models.compiled import CompiledEnsemble
from ultrathink.models.ensemble import EnsembleClassifier
from ultrathink.optimization.selection import (
    Problem,
    Selection,
    SelectionConfig,
    correlation_clusters,
    permutation_scores,
    select_features,
)
from ultrathink.optimization.selection_run import row_latency_us

NOISE = tuple(f"noise{i}" for i in range(5))
NAMES = ("s1", "s1_twin", "s2", *NOISE)


def _small() -> EnsembleClassifier:
    return EnsembleClassifier(gbm_n_estimators=40, forest_n_estimators=40)


def planted(n_rows: int = 1500, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """s1 and s2 carry the signal, s1_twin is s1 plus 5 % noise, five columns are noise."""
    rng = np.random.default_rng(seed)
    s1, s2 = rng.normal(size=n_rows), rng.normal(size=n_rows)
    twin = s1 + 0.05 * rng.normal(size=n_rows)
    X = np.column_stack([s1, twin, s2, rng.normal(size=(n_rows, len(NOISE)))])
    y = (s1 + 0.8 * s2 + rng.normal(size=n_rows) > 0).astype(np.int64)
    return X, y


def _problem(X: np.ndarray, y: np.ndarray, names: tuple[str, ...], n_folds: int = 4) -> Problem:
    return Problem(X, y, purged_walk_forward(len(y), n_folds, 1), names, _small)


@pytest.fixture(scope="module")
def clustered() -> Selection:
    X, y = planted()
    return select_features(_problem(X, y, NAMES), SelectionConfig(n_repeats=5, seed=0))


def test_clustered_keeps_the_signal_cluster_and_drops_the_noise(clustered: Selection) -> None:
    first = clustered.clusters[0]

    assert first.members == ("s1", "s1_twin")  # the twins are one cluster
    assert first.is_significant(clustered.config.min_t)
    assert "s2" in clustered.kept
    assert {"s1", "s1_twin"} & set(clustered.kept)  # the twins' signal is kept
    assert not set(NOISE) & set(clustered.kept)
    assert not clustered.fallback
    assert clustered.reduction_pct >= 50.0
    assert clustered.loss_se <= 1.0  # nothing of the out-of-sample accuracy was lost


def test_plain_mda_under_rates_twins(clustered: Selection) -> None:
    alone = {imp.label: imp.mean for imp in clustered.features}
    together = clustered.clusters[0].mean

    # shuffling one twin barely hurts: the model reads the same signal from the other
    assert alone["s1"] < 0.6 * together and alone["s1_twin"] < 0.6 * together
    assert alone["s1"] + alone["s1_twin"] < 0.8 * together
    assert alone["s2"] > 0.5 * together  # a signal without a twin is not under-rated


def test_a_seed_repeats_a_selection_exactly_and_another_seed_shuffles_differently(
    clustered: Selection,
) -> None:
    X, y = planted()
    again = select_features(_problem(X, y, NAMES), SelectionConfig(n_repeats=5, seed=0))
    other = select_features(_problem(X, y, NAMES), SelectionConfig(n_repeats=5, seed=1))

    assert again.kept == clustered.kept
    assert again.features == clustered.features and again.clusters == clustered.clusters
    assert again.after == clustered.after
    assert other.features != clustered.features  # the seed drives the shuffles
    assert other.before == clustered.before  # the fits do not depend on it


def test_mda_keeps_features_important_on_their_own() -> None:
    X, y = planted()

    sel = select_features(_problem(X, y, NAMES), SelectionConfig(method="mda", n_repeats=5, seed=0))

    assert "s2" in sel.kept and not set(NOISE) & set(sel.kept)
    assert set(sel.kept) | set(sel.dropped) == set(NAMES)


def test_sequential_elimination_keeps_one_twin_and_the_other_signal() -> None:
    X, y = planted(n_rows=1200, seed=4)

    sel = select_features(
        _problem(X, y, NAMES, n_folds=3), SelectionConfig(method="sequential", n_repeats=3)
    )

    assert "s2" in sel.kept and {"s1", "s1_twin"} & set(sel.kept)
    assert len(sel.kept) < len(NAMES)
    assert sel.steps[-1]["stopped"] or len(sel.kept) == 1
    assert sel.loss_se <= sel.config.max_loss_se  # the stopping rule held
    # every accepted step is a drop, in order
    accepted = [s["drop"] for s in sel.steps if not s["stopped"]]
    assert set(accepted) == set(sel.dropped)


def test_nothing_significant_keeps_one_feature_and_says_so() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(900, 4))
    y = rng.integers(0, 2, size=900)

    sel = select_features(
        _problem(X, y, ("a", "b", "c", "d"), n_folds=3), SelectionConfig(n_repeats=3, min_t=50)
    )

    assert sel.fallback and len(sel.kept) == 1


@pytest.mark.parametrize(("scoring", "sk_scoring"), [("accuracy", "accuracy"),
                                                     ("logloss", "neg_log_loss")])  # fmt: skip
def test_single_column_shuffles_are_sklearns_permutation_importance(
    scoring: str, sk_scoring: str
) -> None:
    X, y = planted(n_rows=600, seed=5)
    model = _small().fit(X[:400], y[:400])
    compiled = CompiledEnsemble.from_ensemble(model)

    ours = permutation_scores(
        compiled.predict_batch, X[400:], y[400:], [(i,) for i in range(X.shape[1])],
        scoring=scoring, n_repeats=4, random_state=7,
    )[1]  # fmt: skip
    theirs = permutation_importance(
        model, X[400:], y[400:], scoring=sk_scoring, n_repeats=4, random_state=7
    ).importances

    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)


def test_a_group_moves_with_one_row_permutation() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=200)
    X = np.column_stack([a, a, rng.normal(size=200)])
    y = (a > 0).astype(np.int64)
    seen: list[np.ndarray] = []

    def predict(rows: np.ndarray) -> np.ndarray:
        seen.append(rows.copy())
        return 1.0 / (1.0 + np.exp(-rows[:, 0]))

    base, scores = permutation_scores(predict, X, y, [(0, 1)], n_repeats=3, random_state=0)

    assert base == 1.0 and scores.shape == (1, 3) and np.all(scores > 0.2)
    repeats = seen[1].reshape(3, *X.shape)  # the three shuffles, scored in one call
    for rows in repeats:
        np.testing.assert_array_equal(rows[:, 0], rows[:, 1])  # still twins after the shuffle
        np.testing.assert_array_equal(rows[:, 2], X[:, 2])  # the other column untouched
        assert not np.array_equal(rows[:, 0], X[:, 0])
        np.testing.assert_array_equal(np.sort(rows[:, 0]), np.sort(X[:, 0]))


def test_correlation_clusters_join_twins_and_leave_constants_alone() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=500), rng.normal(size=500)
    X = np.column_stack([a, b, -a * 3 + 0.01 * rng.normal(size=500), np.ones(500), b**3])

    clusters = correlation_clusters(X, 0.5)

    assert clusters == [(0, 2), (1, 4), (3,)]  # |ρ| counts; rank correlation sees b³ as b


def test_row_latency_reports_p50_and_p99_per_model() -> None:
    X, y = planted(n_rows=400)
    compiled = CompiledEnsemble.from_ensemble(_small().fit(X, y))

    lat = row_latency_us({"m": compiled}, {"m": np.ascontiguousarray(X)}, n_calls=500,
                         n_warmup=50)  # fmt: skip

    assert lat["m"]["n"] == 500 and 0 < lat["m"]["p50_us"] <= lat["m"]["p99_us"]


@pytest.mark.parametrize("bad", [{"method": "boruta"}, {"n_repeats": 0}, {"min_t": -1},
                                 {"max_cluster_distance": 0}, {"unknown": 1}])  # fmt: skip
def test_the_config_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SelectionConfig(**bad)  # type: ignore[arg-type]
