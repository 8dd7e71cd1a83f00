"""Purged walk-forward: disjoint, time-ordered, purged folds; impossible settings explained."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ultrathink.errors import ConfigError
from ultrathink.features import purged_walk_forward


def test_blocks_and_purge_on_a_small_example() -> None:
    splits = purged_walk_forward(n_samples=10, n_folds=4, label_horizon=0)

    assert [test.tolist() for _, test in splits] == [[2, 3], [4, 5], [6, 7], [8, 9]]
    assert [train.tolist() for train, _ in splits] == [
        [0],
        [0, 1, 2],
        [0, 1, 2, 3, 4],
        list(range(7)),
    ]


def test_uneven_sizes_put_the_extra_samples_first() -> None:
    splits = purged_walk_forward(n_samples=11, n_folds=2, label_horizon=1)

    assert [test.tolist() for _, test in splits] == [[4, 5, 6, 7], [8, 9, 10]]
    assert [train.tolist() for train, _ in splits] == [[0, 1], [0, 1, 2, 3, 4, 5]]


@settings(max_examples=60, deadline=None)
@given(
    n_samples=st.integers(2, 2_000),
    n_folds=st.integers(1, 12),
    label_horizon=st.integers(0, 30),
    embargo=st.integers(0, 30),
)
def test_splits_are_ordered_disjoint_and_purged(
    n_samples: int, n_folds: int, label_horizon: int, embargo: int
) -> None:
    assume(n_samples // (n_folds + 1) > label_horizon + 1)

    splits = purged_walk_forward(n_samples, n_folds, label_horizon, embargo=embargo)

    assert len(splits) == n_folds
    tests = np.concatenate([test for _, test in splits])
    assert tests.tolist() == list(range(int(splits[0][1][0]), n_samples))  # tests tile the end
    for train, test in splits:
        assert train.size >= 1
        assert np.intersect1d(train, test).size == 0
        assert train.max() < test.min()
        forbidden_lo, forbidden_hi = test[0] - label_horizon - 1, test[-1] + embargo
        assert not np.any((train >= forbidden_lo) & (train <= forbidden_hi))
        assert train.max() == test[0] - label_horizon - 2  # purge removes exactly h + 1
        assert np.all(np.diff(train) == 1) and np.all(np.diff(test) == 1)


def test_training_windows_expand() -> None:
    splits = purged_walk_forward(n_samples=1_000, n_folds=5, label_horizon=5, embargo=3)

    sizes = [train.size for train, _ in splits]

    assert sizes == sorted(sizes)
    assert all(train[0] == 0 for train, _ in splits)


def test_min_train_is_enforced_with_an_explanation() -> None:
    with pytest.raises(ConfigError, match=r"min_train=200: fold 1 would train on 160 samples"):
        purged_walk_forward(n_samples=1_000, n_folds=4, label_horizon=39, min_train=200)

    splits = purged_walk_forward(n_samples=1_000, n_folds=4, label_horizon=39, min_train=160)
    assert splits[0][0].size == 160


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_folds": 0}, r"n_folds must be an integer >= 1, was 0"),
        ({"label_horizon": -1}, r"label_horizon must be an integer >= 0, was -1"),
        ({"embargo": -2}, r"embargo must be an integer >= 0, was -2"),
        ({"min_train": 0}, r"min_train must be an integer >= 1, was 0"),
        ({"n_samples": 4, "n_folds": 4}, r"n_samples must be >= n_folds \+ 1 = 5.*was 4"),
        ({"n_samples": 100, "n_folds": 4, "label_horizon": 19}, r"fold 1 would train on 0"),
        ({"n_folds": 2.0}, r"n_folds must be an integer"),
    ],
)
def test_impossible_settings_raise_config_error(kwargs: dict[str, object], match: str) -> None:
    params: dict[str, object] = {"n_samples": 100, "n_folds": 4, "label_horizon": 1, **kwargs}

    with pytest.raises(ConfigError, match=match):
        purged_walk_forward(**params)  # type: ignore[arg-type]
