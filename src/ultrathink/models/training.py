"""Walk-forward evaluation of a classifier and the final fit on all rows.

``walk_forward_report`` fits a fresh model per (train, test) split, predicts the test rows
and scores every fold and all out-of-sample rows together: ROC AUC, log loss, accuracy, a
majority-class baseline, and the Sharpe ratio of a threshold strategy next to buy-and-hold.

Sharpe, honestly: each row's strategy return is ``position × fwd_return`` where
``fwd_return`` is that row's forward return *as given* (over ``horizon`` bars). Returns are
annualised by ``sqrt(periods_per_year / horizon)``. When ``horizon > 1`` consecutive rows
overlap, so the figure is not the Sharpe of a tradable non-overlapping book and is noisier
than the row count suggests; no costs are charged. Use the backtest engine for P&L.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ultrathink.errors import ConfigError
from ultrathink.models.ensemble import EnsembleClassifier
from ultrathink.models.metrics import FoldMetrics, StrategyRule, score_predictions
from ultrathink.models.report import render_html, render_markdown

__all__ = [
    "FoldMetrics",
    "WalkForwardReport",
    "fit_final",
    "walk_forward_report",
]

Split = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True, eq=False)
class WalkForwardReport:
    """Per-fold and overall out-of-sample scores of a walk-forward evaluation.

    Attributes
    ----------
    folds : list of FoldMetrics
        One entry per split, in the order given.
    overall : FoldMetrics
        Scores of all folds' out-of-sample rows concatenated.
    rule : StrategyRule
        Thresholds, periods per year and horizon used for the Sharpe ratios.
    test_index : np.ndarray
        Row index (into ``X``) of every out-of-sample prediction, fold after fold.
    proba : np.ndarray
        Out-of-sample class-1 probability of each row in ``test_index``.
    y_true : np.ndarray
        The label of each row in ``test_index`` (for ROC and calibration curves).
    """

    folds: list[FoldMetrics]
    overall: FoldMetrics
    rule: StrategyRule = field(default_factory=StrategyRule)
    test_index: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    proba: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    y_true: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (NaN becomes None); the prediction arrays are left out."""
        return {
            "rule": _json_safe(vars(self.rule)),
            "folds": [_json_safe(vars(fold)) for fold in self.folds],
            "overall": _json_safe(vars(self.overall)),
        }

    def to_markdown(self) -> str:
        """Return a Markdown table: one row per fold and a final ``overall`` row."""
        return render_markdown(self.folds, self.overall, self.rule)

    def to_html(self) -> str:
        """Return a standalone HTML page (inline CSS, no external assets) with the table."""
        return render_html(self.folds, self.overall, self.rule)


def walk_forward_report(
    X: Any,
    y: Any,
    fwd_returns: Any,
    splits: Sequence[tuple[Any, Any]],
    make_model: Callable[[], EnsembleClassifier],
    *,
    long_threshold: float = 0.55,
    short_threshold: float | None = None,
    periods_per_year: float = 252,
    horizon: int = 1,
) -> WalkForwardReport:
    """Fit a fresh model per split, predict its test rows and score them.

    Parameters
    ----------
    X : array-like of shape (n_rows, n_features)
        Features, rows in time order.
    y : array-like of shape (n_rows,)
        Binary labels {0, 1}.
    fwd_returns : array-like of shape (n_rows,)
        Each row's forward return over ``horizon`` bars (simple or log), finite on test rows.
    splits : sequence of (train_idx, test_idx)
        Integer row indices; test sets must not overlap each other or their train set.
    make_model : callable
        Returns a new unfitted model with ``fit`` and ``predict_proba`` (called per fold).
    long_threshold : float, default=0.55
        Go long when the class-1 probability is >= this.
    short_threshold : float or None, default=None
        Go short when the probability is <= this (must be < ``long_threshold``); None: flat.
    periods_per_year : float, default=252
        Bars per year, for annualising.
    horizon : int, default=1
        Bars spanned by each forward return; annualisation uses ``periods_per_year / horizon``.

    Returns
    -------
    WalkForwardReport
    """
    rule = _make_rule(long_threshold, short_threshold, periods_per_year, horizon)
    X_arr, y_arr, r_arr = _check_arrays(X, y, fwd_returns)
    checked = _check_splits(splits, y_arr.shape[0])
    folds: list[FoldMetrics] = []
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for number, (train, test) in enumerate(checked, start=1):
        _check_finite_returns(r_arr[test], number)
        proba, base = _fit_predict(X_arr, y_arr, train, test, make_model)
        name = f"fold {number}"
        folds.append(
            score_predictions(name, train.size, y_arr[test], proba, base, r_arr[test], rule)
        )
        parts.append((test, proba, base))
    test_index = np.concatenate([p[0] for p in parts])
    proba_all = np.concatenate([p[1] for p in parts])
    base_all = np.concatenate([p[2] for p in parts])
    n_train_total = sum(f.n_train for f in folds)
    overall = score_predictions(
        "overall", n_train_total, y_arr[test_index], proba_all, base_all, r_arr[test_index], rule
    )
    return WalkForwardReport(folds, overall, rule, test_index, proba_all, y_arr[test_index])


def fit_final(X: Any, y: Any, make_model: Callable[[], EnsembleClassifier]) -> EnsembleClassifier:
    """Fit a fresh model from ``make_model`` on every row of ``X``, ``y`` and return it."""
    model = make_model()
    model.fit(X, y)
    return model


def _fit_predict(
    X: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    make_model: Callable[[], EnsembleClassifier],
) -> tuple[np.ndarray, np.ndarray]:
    model = make_model()
    model.fit(X[train], y[train])
    proba = np.asarray(model.predict_proba(X[test]), dtype=np.float64)[:, 1]
    baseline = np.full(test.size, float(np.mean(y[train])))
    return proba, baseline


def _make_rule(
    long_threshold: float, short_threshold: float | None, periods_per_year: float, horizon: int
) -> StrategyRule:
    if not 0.0 <= long_threshold <= 1.0:
        raise ConfigError(f"long_threshold must be in [0, 1], was {long_threshold}")
    if short_threshold is not None and not 0.0 <= short_threshold < long_threshold:
        raise ConfigError(
            f"short_threshold must be in [0, long_threshold={long_threshold}), was "
            f"{short_threshold}; use None for long/flat only"
        )
    if not periods_per_year > 0:
        raise ConfigError(f"periods_per_year must be > 0, was {periods_per_year} (252: daily)")
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ConfigError(
            f"horizon must be an integer >= 1 (bars per forward return), was {horizon!r}"
        )
    return StrategyRule(long_threshold, short_threshold, float(periods_per_year), horizon)


def _check_arrays(X: Any, y: Any, fwd_returns: Any) -> tuple[Any, np.ndarray, np.ndarray]:
    # X keeps its type (a DataFrame keeps its column names); only its length is checked here
    y_arr = np.asarray(y).reshape(-1)
    r_arr = np.asarray(fwd_returns, dtype=np.float64).reshape(-1)
    n_x = len(X)
    if not n_x == y_arr.shape[0] == r_arr.shape[0]:
        raise ConfigError(
            f"X, y and fwd_returns must have the same number of rows, had {n_x}, "
            f"{y_arr.shape[0]} and {r_arr.shape[0]}; align them on the same index"
        )
    X_rows = X.iloc if hasattr(X, "iloc") else np.asarray(X)
    return X_rows, y_arr, r_arr


def _check_splits(splits: Sequence[tuple[Any, Any]], n_rows: int) -> list[Split]:
    if len(splits) == 0:
        raise ConfigError("splits must hold at least one (train_idx, test_idx) pair, was empty")
    seen = np.zeros(n_rows, dtype=bool)
    checked: list[Split] = []
    for number, (train_raw, test_raw) in enumerate(splits, start=1):
        train = _as_index(train_raw, n_rows, f"fold {number} train")
        test = _as_index(test_raw, n_rows, f"fold {number} test")
        if np.intersect1d(train, test).size:
            raise ConfigError(f"fold {number}: train and test rows overlap; purge the split")
        if np.any(seen[test]):
            raise ConfigError(
                f"fold {number}: test rows overlap an earlier fold's test rows; walk-forward "
                "test windows must be disjoint"
            )
        seen[test] = True
        checked.append((train, test))
    return checked


def _as_index(raw: Any, n_rows: int, what: str) -> np.ndarray:
    idx = np.asarray(raw).reshape(-1)
    if idx.size == 0:
        raise ConfigError(f"{what} rows must not be empty")
    if idx.dtype == bool or not np.issubdtype(idx.dtype, np.integer):
        raise ConfigError(f"{what} must be integer row indices, had dtype {idx.dtype}")
    if idx.min() < 0 or idx.max() >= n_rows:
        raise ConfigError(
            f"{what} indices must be in [0, {n_rows}), had [{idx.min()}, {idx.max()}]"
        )
    return idx.astype(np.int64)


def _check_finite_returns(returns: np.ndarray, number: int) -> None:
    bad = int(np.count_nonzero(~np.isfinite(returns)))
    if bad:
        raise ConfigError(
            f"fold {number}: fwd_returns must be finite on test rows, {bad} are NaN/inf; drop "
            "the rows whose forward return is unknown (the last `horizon` bars) first"
        )


def _json_safe(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()
    }
