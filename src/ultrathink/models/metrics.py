"""Out-of-sample metrics of one set of predictions: classification scores and strategy Sharpe.

Pure functions of numpy arrays, shared by walk-forward training and later by tuning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score


@dataclass(frozen=True)
class FoldMetrics:
    """Scores of one walk-forward fold (or of all folds' out-of-sample rows together).

    Attributes
    ----------
    name : str
        ``"fold 1"``, ``"fold 2"``, … or ``"overall"``.
    n_train : int
        Training rows of the fold (for ``"overall"``: the total over folds).
    n_test : int
        Out-of-sample rows scored.
    positive_rate : float
        Share of class 1 among the test rows.
    auc : float
        ROC AUC of the model; NaN when the test rows hold a single class.
    log_loss : float
        Mean negative log-likelihood of the model's probabilities.
    accuracy : float
        Accuracy of predicting class 1 when p > 0.5.
    baseline_accuracy : float
        Accuracy of always predicting the training set's majority class.
    baseline_log_loss : float
        Log loss of predicting the training set's class-1 frequency for every row.
    sharpe : float
        Annualised Sharpe ratio (zero risk-free rate) of the threshold strategy.
    buy_hold_sharpe : float
        Annualised Sharpe ratio of holding long on every test row.
    exposure_pct : float
        Percentage of test rows on which the strategy holds a position.
    """

    name: str
    n_train: int
    n_test: int
    positive_rate: float
    auc: float
    log_loss: float
    accuracy: float
    baseline_accuracy: float
    baseline_log_loss: float
    sharpe: float
    buy_hold_sharpe: float
    exposure_pct: float


@dataclass(frozen=True)
class StrategyRule:
    """How probabilities become positions and how Sharpe is annualised.

    Attributes
    ----------
    long_threshold : float
        Long (position +1) when p >= this.
    short_threshold : float or None
        Short (position -1) when p <= this; None: flat instead of short.
    periods_per_year : float
        Bars per year (252 for daily bars).
    horizon : int
        Bars spanned by each row's forward return.
    """

    long_threshold: float = 0.55
    short_threshold: float | None = None
    periods_per_year: float = 252.0
    horizon: int = 1

    def positions(self, proba: np.ndarray) -> np.ndarray:
        """Return +1 / 0 / -1 per row for class-1 probabilities ``proba``."""
        pos = np.where(proba >= self.long_threshold, 1.0, 0.0)
        if self.short_threshold is not None:
            pos[proba <= self.short_threshold] = -1.0
        return pos


def annualised_sharpe(returns: np.ndarray, periods_per_year: float, horizon: int = 1) -> float:
    """Return mean / std of per-row returns, annualised by ``sqrt(periods_per_year / horizon)``.

    Each row's return spans ``horizon`` bars, so a year holds ``periods_per_year / horizon``
    such returns. With ``horizon > 1`` consecutive rows overlap: the ratio still estimates the
    per-horizon Sharpe, but the rows are not independent, so it is noisier than the row count
    suggests (no overlap correction is applied to its significance).
    Zero risk-free rate; 0.0 when the returns do not vary (e.g. always flat); NaN for < 2 rows.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 2:
        return math.nan
    sd = float(r.std(ddof=1))
    if sd == 0.0 or not math.isfinite(sd):
        return 0.0
    return float(r.mean()) / sd * math.sqrt(periods_per_year / horizon)


def score_predictions(
    name: str,
    n_train: int,
    y_true: np.ndarray,
    proba: np.ndarray,
    baseline_proba: np.ndarray,
    fwd_returns: np.ndarray,
    rule: StrategyRule,
) -> FoldMetrics:
    """Score class-1 probabilities ``proba`` against labels and forward returns.

    ``baseline_proba`` holds, per row, the class-1 frequency of the training set that row's
    model was fitted on (the majority-class baseline).
    """
    y = np.asarray(y_true).astype(np.int64)
    positions = rule.positions(proba)
    return FoldMetrics(
        name=name,
        n_train=int(n_train),
        n_test=int(y.shape[0]),
        positive_rate=float(y.mean()),
        auc=_auc(y, proba),
        log_loss=float(log_loss(y, proba, labels=[0, 1])),
        accuracy=float(accuracy_score(y, (proba > 0.5).astype(np.int64))),
        baseline_accuracy=float(accuracy_score(y, (baseline_proba > 0.5).astype(np.int64))),
        baseline_log_loss=float(log_loss(y, baseline_proba, labels=[0, 1])),
        sharpe=annualised_sharpe(positions * fwd_returns, rule.periods_per_year, rule.horizon),
        buy_hold_sharpe=annualised_sharpe(fwd_returns, rule.periods_per_year, rule.horizon),
        exposure_pct=float(np.mean(positions != 0.0) * 100.0),
    )


def _auc(y: np.ndarray, proba: np.ndarray) -> float:
    # roc_auc_score raises on a single-class fold; report it as undefined instead
    if np.unique(y).size < 2:
        return math.nan
    return float(roc_auc_score(y, proba))
