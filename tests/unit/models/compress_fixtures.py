"""Test helper shared by the compress tests (unit and CLI): a recipe's real walk-forward.

``refit_report`` refits ``fit_recipe`` on each purged fold of a ``TrainingSet`` through
``training.walk_forward_report``, the reference the search's and the registry's figures must
equal exactly.
"""

from __future__ import annotations

import numpy as np

from ultrathink.models.compress import Recipe, fit_recipe
from ultrathink.models.pipeline import TrainingSet
from ultrathink.models.training import WalkForwardReport, walk_forward_report


class RecipeModel:
    """``fit_recipe`` behind the fit/predict_proba interface ``walk_forward_report`` calls."""

    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe

    def fit(self, X: np.ndarray, y: np.ndarray) -> RecipeModel:
        self.model_ = fit_recipe(self.recipe, X, y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(X)


def refit_report(data: TrainingSet, recipe: Recipe) -> WalkForwardReport:
    """The walk-forward report of ``recipe`` refitted on ``data``'s folds."""
    return walk_forward_report(
        data.X, data.y, data.fwd, data.splits, lambda: RecipeModel(recipe),
        long_threshold=data.config.long_threshold, periods_per_year=data.periods_per_year,
        horizon=data.config.horizon,
    )  # fmt: skip
