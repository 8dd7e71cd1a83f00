"""The regression verdict: is the head slower than the base, beyond noise and beyond 5 %?

:func:`judge` flags a regression only when all three hold:

1. a one-sided Mann-Whitney U test (head worse than base) gives p < ``alpha``;
2. the bootstrap confidence interval (level ``1 - alpha``, two-sided, percentile method)
   of the ratio of medians head / base lies entirely on the worse side of 1;
3. the slowdown of the medians exceeds ``min_effect`` (5 % by default).

The slowdown is measured in time: for a time, latency or memory (lower is better) it is
``head / base - 1``; for a throughput (higher is better) it is ``base / head - 1``, so a
20 % slower run reads as 20 % in both. Improvements are judged by the mirror rules and are
reported, never failed. The function is pure: same inputs and seed, same verdict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

REGRESSION, IMPROVEMENT, NO_CHANGE = "regression", "improvement", "no change"


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`judge`.

    Attributes
    ----------
    status : {"regression", "improvement", "no change"}
    base_median, head_median : float
        Medians of the samples, in the benchmark's unit.
    ratio : float
        ``head_median / base_median``.
    slowdown : float
        Fractional slowdown of the head in time terms (> 0 worse, < 0 better).
    p_value : float
        One-sided Mann-Whitney U p-value in the direction of the observed change.
    ci_low, ci_high : float
        Bootstrap confidence interval of ``ratio``.
    reason : str
        Why this status, e.g. ``"below min effect: 2.0% <= 5.0%"``.
    """

    status: str
    base_median: float
    head_median: float
    ratio: float
    slowdown: float
    p_value: float
    ci_low: float
    ci_high: float
    reason: str

    @property
    def is_regression(self) -> bool:
        """True when the head is significantly and materially worse."""
        return self.status == REGRESSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


def _samples(values: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 2:
        raise ValueError(f"{name} needs at least 2 samples, got {arr.size}")
    if not (np.isfinite(arr).all() and (arr > 0).all()):
        raise ValueError(f"{name} samples must be finite and > 0, got {arr.tolist()}")
    return arr


def bootstrap_ratio_ci(
    base: np.ndarray, head: np.ndarray, *, level: float, n_boot: int, seed: int
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``median(head) / median(base)``, sides resampled apart.

    Parameters
    ----------
    base, head : np.ndarray
        Positive samples of each side.
    level : float
        Two-sided confidence level in (0, 1), e.g. 0.99.
    n_boot : int
        Bootstrap resamples.
    seed : int
        Seed of the resampling.

    Returns
    -------
    tuple of float
        (low, high) bounds of the interval.
    """
    rng = np.random.default_rng(seed)
    med_base = np.median(base[rng.integers(0, base.size, size=(n_boot, base.size))], axis=1)
    med_head = np.median(head[rng.integers(0, head.size, size=(n_boot, head.size))], axis=1)
    tail_pct = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(med_head / med_base, [tail_pct, 100.0 - tail_pct])
    return float(low), float(high)


def _check_options(alpha: float, min_effect: float, n_boot: int) -> None:
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), was {alpha}")
    if min_effect < 0.0:
        raise ValueError(f"min_effect must be >= 0, was {min_effect}")
    if n_boot < 100:
        raise ValueError(f"n_boot must be >= 100, was {n_boot}")


def judge(
    base: Sequence[float],
    head: Sequence[float],
    *,
    lower_is_better: bool,
    alpha: float = 0.01,
    min_effect: float = 0.05,
    n_boot: int = 5_000,
    seed: int = 0,
) -> Verdict:
    """Decide whether ``head`` regressed (or improved) against ``base``.

    Parameters
    ----------
    base, head : sequence of float
        Repeat values of one benchmark on each side (>= 2 each, positive).
    lower_is_better : bool
        True for times, latencies and memory; False for throughput.
    alpha : float
        Significance level of the one-sided test; the CI level is ``1 - alpha``.
    min_effect : float
        Smallest slowdown (fraction, 0.05 = 5 %) worth flagging.
    n_boot : int
        Bootstrap resamples for the ratio CI.
    seed : int
        Bootstrap seed.

    Returns
    -------
    Verdict
        ``status`` is ``"regression"`` only when the test, the CI and the effect size agree.
    """
    _check_options(alpha, min_effect, n_boot)
    b, h = _samples(base, "base"), _samples(head, "head")
    p_worse, p_better = _one_sided_p(b, h, lower_is_better)
    base_median, head_median = float(np.median(b)), float(np.median(h))
    ratio = head_median / base_median
    low, high = bootstrap_ratio_ci(b, h, level=1.0 - alpha, n_boot=n_boot, seed=seed)
    slowdown = ratio - 1.0 if lower_is_better else 1.0 / ratio - 1.0
    # the CI's bounds on the worse and on the better side of 1, in the metric's direction
    ci_worse, ci_better = (low > 1.0, high < 1.0) if lower_is_better else (high < 1.0, low > 1.0)
    if slowdown >= 0.0:
        status, reason = _classify(p_worse, ci_worse, slowdown, alpha, min_effect, REGRESSION)
    else:
        speedup = 1.0 / (1.0 + slowdown) - 1.0
        status, reason = _classify(p_better, ci_better, speedup, alpha, min_effect, IMPROVEMENT)
    p_value = p_worse if slowdown >= 0.0 else p_better
    return Verdict(status, base_median, head_median, ratio, slowdown, p_value, low, high, reason)


def _one_sided_p(b: np.ndarray, h: np.ndarray, lower_is_better: bool) -> tuple[float, float]:
    # Mann-Whitney U p-values of "head worse than base" and "head better than base"
    from scipy.stats import mannwhitneyu  # lazy: scipy is only needed to judge

    worse, better = ("greater", "less") if lower_is_better else ("less", "greater")
    p_worse = float(mannwhitneyu(h, b, alternative=worse).pvalue)
    p_better = float(mannwhitneyu(h, b, alternative=better).pvalue)
    return p_worse, p_better


def _classify(
    p_value: float, ci_excludes_1: bool, effect: float, alpha: float, min_effect: float, kind: str
) -> tuple[str, str]:
    # every condition must hold; the reason names the first that does not
    if not p_value < alpha:
        return NO_CHANGE, f"not significant: p={p_value:.3g} >= alpha={alpha:g}"
    if not ci_excludes_1:
        return NO_CHANGE, "confidence interval of the ratio includes 1"
    if not effect > min_effect:
        return NO_CHANGE, f"below min effect: {effect:.1%} <= {min_effect:.1%}"
    return kind, f"{effect:.1%} {'slower' if kind == REGRESSION else 'faster'}, p={p_value:.3g}"
