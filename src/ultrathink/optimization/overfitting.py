"""How likely is a study's winner an overfit? The Deflated Sharpe Ratio and the PBO.

A search that tries many configurations and keeps the best one is biased upward: the best
of N noisy Sharpe ratios is high even when every configuration is worthless. Two
statistics answer for that bias, and every study reports both.

**Deflated Sharpe Ratio** (Bailey and López de Prado, "The Deflated Sharpe Ratio:
Correcting for Selection Bias, Backtest Overfitting and Non-Normality", 2014). The
Probabilistic Sharpe Ratio PSR(SR*) is the probability that the true Sharpe ratio exceeds
SR*, given the estimate SR over T observations with skewness g3 and kurtosis g4::

    PSR(SR*) = Phi( (SR - SR*) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2) )

The DSR is the PSR against the Sharpe ratio the best of N independent trials would reach by
luck alone, given the variance V of the trials' Sharpe ratios (gamma is Euler's constant)::

    SR0 = sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e)))

All Sharpe ratios here are per period (not annualised) and the kurtosis is the raw fourth
standardised moment (3 for a normal), as in the paper.

**Probability of Backtest Overfitting** (Bailey, Borwein, López de Prado and Zhu, "The
Probability of Backtest Overfitting", 2015), by combinatorially symmetric cross-validation
(CSCV). The T x N matrix of per-period returns of N trials is cut into S equal blocks of
rows. For each of the C(S, S/2) ways to pick half of the blocks as in-sample (the rest
out-of-sample), the trial with the best in-sample metric is chosen, and its relative rank
w among the N trials out-of-sample gives the logit ``l = ln(w / (1 - w))``. The PBO is the
share of splits with ``l <= 0``: the in-sample winner is at or below the out-of-sample
median. The degradation is the regression of the winner's out-of-sample metric on its
in-sample one, and the probability of loss the share of splits where the winner's
out-of-sample metric is below zero.

The sums per block are computed once, so every split's Sharpe ratios come from one matrix
product (12,870 splits of 16 blocks cost milliseconds for hundreds of trials).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
from scipy import stats

EULER_GAMMA = 0.5772156649015329
#: below this the winner is "not significant" (the paper's usual 95 % confidence)
DSR_THRESHOLD = 0.95
#: above this the winner is "likely overfit": it is below the median out of sample more
#: often than not
PBO_THRESHOLD = 0.5


# -- Sharpe ratio and its moments ----------------------------------------------------------


@dataclass(frozen=True)
class ReturnMoments:
    """The per-period Sharpe ratio of a return series and the moments the PSR needs."""

    sharpe: float
    skewness: float
    kurtosis: float  # raw: 3 for a normal distribution
    n_obs: int


def return_moments(returns: np.ndarray) -> ReturnMoments:
    """Sharpe ratio (mean / std, ddof 1), skewness and raw kurtosis of ``returns``.

    A constant series has a Sharpe ratio of 0 and the normal distribution's moments.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1 or len(r) < 2:
        raise ValueError("need at least two returns to estimate a Sharpe ratio")
    if not np.isfinite(r).all():
        raise ValueError("returns contain NaN or infinity")
    std = float(r.std(ddof=1))
    if std == 0.0 or not math.isfinite(std):
        return ReturnMoments(0.0, 0.0, 3.0, len(r))
    return ReturnMoments(
        sharpe=float(r.mean()) / std,
        skewness=float(stats.skew(r, bias=False)),
        kurtosis=float(stats.kurtosis(r, fisher=False, bias=False)),
        n_obs=len(r),
    )


def probabilistic_sharpe_ratio(
    sharpe: float, benchmark: float, n_obs: int, skewness: float = 0.0, kurtosis: float = 3.0
) -> float:
    """Probability that the true per-period Sharpe ratio exceeds ``benchmark``."""
    if n_obs < 2:
        raise ValueError("the PSR needs at least two observations")
    variance = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if variance <= 0.0:  # possible with extreme sample moments: the estimate is unreliable
        variance = 1e-12
    z = (sharpe - benchmark) * math.sqrt(n_obs - 1) / math.sqrt(variance)
    return float(stats.norm.cdf(z))


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """The Sharpe ratio the best of ``n_trials`` worthless trials reaches in expectation."""
    if n_trials < 1:
        raise ValueError("n_trials must be at least 1")
    if n_trials == 1 or sharpe_variance <= 0.0:
        return 0.0
    z1 = stats.norm.ppf(1.0 - 1.0 / n_trials)
    z2 = stats.norm.ppf(1.0 - 1.0 / (n_trials * math.e))
    return float(math.sqrt(sharpe_variance) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2))


@dataclass(frozen=True)
class DeflatedSharpe:
    """The winner's Sharpe ratio deflated for the number of trials and non-normality."""

    dsr: float
    sharpe: float  # per period
    expected_max_sharpe: float  # SR0, per period
    n_trials: int
    sharpe_variance: float  # of the trials' per-period Sharpe ratios
    skewness: float
    kurtosis: float
    n_obs: int

    @property
    def significant(self) -> bool:
        return self.dsr >= DSR_THRESHOLD

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "significant": self.significant}


def deflated_sharpe_ratio(
    sharpe: float,
    n_trials: int,
    sharpe_variance: float,
    n_obs: int,
    skewness: float = 0.0,
    kurtosis: float = 3.0,
) -> DeflatedSharpe:
    """The DSR of a winner with per-period ``sharpe`` over ``n_obs`` observations."""
    sr0 = expected_max_sharpe(n_trials, sharpe_variance)
    dsr = probabilistic_sharpe_ratio(sharpe, sr0, n_obs, skewness, kurtosis)
    return DeflatedSharpe(dsr, sharpe, sr0, n_trials, sharpe_variance, skewness, kurtosis, n_obs)


def deflated_sharpe_of_trials(
    returns: np.ndarray, winner: int, n_trials: int | None = None
) -> DeflatedSharpe:
    """The DSR of column ``winner`` of a T x N matrix of per-period returns of N trials.

    ``n_trials`` (default N) is how many configurations the search tried: a study that
    pruned some still chose among all of them, so it passes its complete + pruned count."""
    matrix = _check_matrix(returns, min_trials=1)
    sharpes = np.array([return_moments(matrix[:, j]).sharpe for j in range(matrix.shape[1])])
    best = return_moments(matrix[:, winner])
    variance = float(sharpes.var(ddof=1)) if len(sharpes) > 1 else 0.0
    tried = max(int(n_trials), matrix.shape[1]) if n_trials is not None else matrix.shape[1]
    return deflated_sharpe_ratio(
        best.sharpe, tried, variance, best.n_obs, best.skewness, best.kurtosis
    )


# -- PBO by CSCV ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BacktestOverfitting:
    """The outcome of CSCV over a trials x time-blocks matrix of returns."""

    pbo: float
    logits: np.ndarray  # one per split
    is_sharpe: np.ndarray  # the in-sample winner's per-period Sharpe ratio, per split
    oos_sharpe: np.ndarray  # the same trial's out-of-sample Sharpe ratio, per split
    degradation_slope: float  # OOS = intercept + slope * IS, least squares over splits
    degradation_intercept: float
    prob_oos_loss: float  # share of splits where the winner loses out of sample
    n_blocks: int
    n_splits: int
    n_trials: int

    @property
    def overfit(self) -> bool:
        return self.pbo > PBO_THRESHOLD

    def to_dict(self) -> dict[str, Any]:
        return {
            "pbo": self.pbo,
            "overfit": self.overfit,
            "degradation_slope": self.degradation_slope,
            "degradation_intercept": self.degradation_intercept,
            "prob_oos_loss": self.prob_oos_loss,
            "n_blocks": self.n_blocks,
            "n_splits": self.n_splits,
            "n_trials": self.n_trials,
            "logit_median": float(np.median(self.logits)),
        }


def _check_matrix(returns: np.ndarray, min_trials: int) -> np.ndarray:
    matrix = np.asarray(returns, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError("returns must be a T x N matrix (periods x trials)")
    if matrix.shape[1] < min_trials:
        raise ValueError(f"need at least {min_trials} trials, got {matrix.shape[1]}")
    if not np.isfinite(matrix).all():
        raise ValueError("returns contain NaN or infinity")
    return matrix


def _block_sharpes(
    sums: np.ndarray, squares: np.ndarray, counts: np.ndarray, select: np.ndarray
) -> np.ndarray:
    """Per-period Sharpe ratios (ddof 1) of each trial over the union of selected blocks.

    ``select`` is splits x blocks (0/1); ``sums`` and ``squares`` are blocks x trials.
    """
    n = (select @ counts)[:, None]
    total = select @ sums
    mean = total / n
    var = (select @ squares - total * mean) / (n - 1)
    std = np.sqrt(np.clip(var, 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 1e-15 * np.maximum(1.0, np.abs(mean)), mean / std, 0.0)


def probability_of_backtest_overfitting(
    returns: np.ndarray, n_blocks: int = 16
) -> BacktestOverfitting:
    """PBO of choosing the best in-sample Sharpe ratio among the columns of ``returns``.

    ``returns`` is T x N (periods x trials). The first ``T mod n_blocks`` rows are dropped
    so the blocks are equal; each block needs at least two rows.
    """
    matrix = _check_matrix(returns, min_trials=2)
    if n_blocks < 2 or n_blocks % 2:
        raise ValueError(f"n_blocks must be an even number >= 2, got {n_blocks}")
    n_periods, n_trials = matrix.shape
    size = n_periods // n_blocks
    if size < 2:
        raise ValueError(
            f"{n_periods} periods are too few for {n_blocks} blocks of at least 2 periods"
        )
    blocks = matrix[n_periods - size * n_blocks :].reshape(n_blocks, size, n_trials)
    sums, squares = blocks.sum(axis=1), (blocks**2).sum(axis=1)
    counts = np.full(n_blocks, float(size))

    chosen = np.array(list(combinations(range(n_blocks), n_blocks // 2)))
    is_select = np.zeros((len(chosen), n_blocks))
    np.put_along_axis(is_select, chosen, 1.0, axis=1)
    oos_select = 1.0 - is_select

    is_sr = _block_sharpes(sums, squares, counts, is_select)
    oos_sr = _block_sharpes(sums, squares, counts, oos_select)
    best = np.argmax(is_sr, axis=1)  # first of equals, deterministically
    rows = np.arange(len(chosen))
    ranks = stats.rankdata(oos_sr, axis=1)  # 1 = worst; ties share the average rank
    omega = ranks[rows, best] / (n_trials + 1)
    logits = np.log(omega / (1.0 - omega))
    is_best, oos_best = is_sr[rows, best], oos_sr[rows, best]
    if np.ptp(is_best) > 0:
        slope, intercept = np.polyfit(is_best, oos_best, 1)
    else:
        slope, intercept = 0.0, float(oos_best.mean())
    return BacktestOverfitting(
        pbo=float(np.mean(logits <= 0.0)),
        logits=logits,
        is_sharpe=is_best,
        oos_sharpe=oos_best,
        degradation_slope=float(slope),
        degradation_intercept=float(intercept),
        prob_oos_loss=float(np.mean(oos_best < 0.0)),
        n_blocks=n_blocks,
        n_splits=len(chosen),
        n_trials=n_trials,
    )


def overfitting_warnings(dsr: DeflatedSharpe | None, pbo: BacktestOverfitting | None) -> list[str]:
    """The plain-words warnings a study prints and its report shows."""
    out = []
    if pbo is not None and pbo.overfit:
        out.append(
            f"likely overfit: PBO {pbo.pbo:.2f} > {PBO_THRESHOLD}: the in-sample winner ranks "
            f"at or below the out-of-sample median in {pbo.pbo:.0%} of "
            f"{pbo.n_splits:,} splits"
        )
    if dsr is not None and not dsr.significant:
        out.append(
            f"not significant: deflated Sharpe ratio {dsr.dsr:.2f} < {DSR_THRESHOLD} after "
            f"{dsr.n_trials} trials (the best of {dsr.n_trials} worthless trials would reach "
            f"a per-period Sharpe of {dsr.expected_max_sharpe:.4f}; the winner has "
            f"{dsr.sharpe:.4f})"
        )
    return out
