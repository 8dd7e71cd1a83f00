"""The Deflated Sharpe Ratio and the Probability of Backtest Overfitting."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
from scipy import stats

from ultrathink.optimization import overfitting
from ultrathink.optimization.overfitting import (
    deflated_sharpe_of_trials,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    overfitting_warnings,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    return_moments,
)


def test_the_papers_numerical_example() -> None:
    # Bailey and López de Prado (2014), section 5: 100 trials, annualised Sharpe ratios of
    # variance 1/2, the winner's annualised SR 2.5 over 1,250 daily returns with skewness -3
    # and kurtosis 10; the paper finds SR0 = 0.1132 per day and a DSR of 0.9004
    daily_sr = 2.5 / math.sqrt(250)
    result = deflated_sharpe_ratio(daily_sr, 100, 0.5 / 250, 1250, skewness=-3, kurtosis=10)

    assert result.expected_max_sharpe == pytest.approx(0.1132, abs=5e-5)
    assert result.dsr == pytest.approx(0.9004, abs=2e-4)
    assert not result.significant


def test_the_psr_is_one_half_at_the_benchmark_and_grows_with_the_edge() -> None:
    assert probabilistic_sharpe_ratio(0.1, 0.1, 500) == pytest.approx(0.5)
    assert probabilistic_sharpe_ratio(0.2, 0.1, 500) > probabilistic_sharpe_ratio(0.15, 0.1, 500)
    # negative skew and fat tails make the same estimate less trustworthy
    normal = probabilistic_sharpe_ratio(0.15, 0.1, 500)
    assert probabilistic_sharpe_ratio(0.15, 0.1, 500, skewness=-2, kurtosis=9) < normal


def test_the_luck_bar_rises_with_the_number_of_trials() -> None:
    bars = [expected_max_sharpe(n, 0.01) for n in (1, 2, 10, 100, 1000)]
    assert bars[0] == 0.0
    assert bars == sorted(bars) and bars[-1] > 0.3


def test_return_moments_match_scipy() -> None:
    r = np.random.default_rng(3).standard_t(5, size=2000) * 0.01 + 0.0004
    m = return_moments(r)
    assert m.sharpe == pytest.approx(r.mean() / r.std(ddof=1))
    assert m.skewness == pytest.approx(stats.skew(r, bias=False))
    assert m.kurtosis == pytest.approx(stats.kurtosis(r, fisher=False, bias=False))
    assert return_moments(np.zeros(10)).sharpe == 0.0


def _naive_pbo(matrix: np.ndarray, n_blocks: int) -> tuple[float, np.ndarray]:
    t, n = matrix.shape
    size = t // n_blocks
    blocks = np.split(matrix[t - size * n_blocks :], n_blocks)
    logits = []
    for chosen in combinations(range(n_blocks), n_blocks // 2):
        is_rows = np.vstack([blocks[i] for i in chosen])
        oos_rows = np.vstack([blocks[i] for i in range(n_blocks) if i not in chosen])
        is_sr = is_rows.mean(0) / is_rows.std(0, ddof=1)
        oos_sr = oos_rows.mean(0) / oos_rows.std(0, ddof=1)
        best = int(np.argmax(is_sr))
        omega = stats.rankdata(oos_sr)[best] / (n + 1)
        logits.append(math.log(omega / (1 - omega)))
    arr = np.array(logits)
    return float(np.mean(arr <= 0)), arr


def test_cscv_matches_a_direct_loop_over_the_splits() -> None:
    matrix = np.random.default_rng(11).normal(0.0002, 0.01, size=(303, 7))
    result = probability_of_backtest_overfitting(matrix, n_blocks=8)
    pbo, logits = _naive_pbo(matrix, 8)

    assert result.n_splits == 70 and result.n_trials == 7
    assert result.pbo == pytest.approx(pbo)
    np.testing.assert_allclose(result.logits, logits, rtol=1e-9)


def _noise(seed: int, t: int = 1500, n: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.01, size=(t, n))


@pytest.mark.parametrize("seed", range(5))
def test_on_a_random_walk_the_winner_is_flagged(seed: int) -> None:
    returns = _noise(seed)
    winner = int(np.argmax(returns.mean(0) / returns.std(0, ddof=1)))

    pbo = probability_of_backtest_overfitting(returns)
    dsr = deflated_sharpe_of_trials(returns, winner)

    # no trial has an edge: the in-sample winner is a coin flip out of sample, and its
    # Sharpe ratio is what the best of 40 worthless trials reaches by luck
    assert 0.25 < pbo.pbo < 0.75
    assert dsr.dsr < 0.95 and not dsr.significant
    assert any(w.startswith("not significant") for w in overfitting_warnings(dsr, pbo))


@pytest.mark.parametrize("seed", range(5))
def test_a_planted_learnable_signal_is_not_flagged(seed: int) -> None:
    returns = _noise(seed)
    # the trials' true edges differ: trial j earns j * 0.006 % a period on top of the noise,
    # so the best in-sample trial is the best out of sample too
    returns += np.arange(returns.shape[1]) * 0.00006
    winner = int(np.argmax(returns.mean(0) / returns.std(0, ddof=1)))

    pbo = probability_of_backtest_overfitting(returns)
    dsr = deflated_sharpe_of_trials(returns, winner)

    assert pbo.pbo < 0.1 and not pbo.overfit
    assert pbo.degradation_slope > -1.0 and pbo.prob_oos_loss < 0.05
    assert dsr.significant
    assert overfitting_warnings(dsr, pbo) == []


def test_bad_inputs_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="even number"):
        probability_of_backtest_overfitting(_noise(0), n_blocks=5)
    with pytest.raises(ValueError, match="too few"):
        probability_of_backtest_overfitting(_noise(0, t=20), n_blocks=16)
    with pytest.raises(ValueError, match="at least 2 trials"):
        probability_of_backtest_overfitting(_noise(0, n=1))
    bad = _noise(0)
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        probability_of_backtest_overfitting(bad)


def test_pruned_trials_count_as_tried_and_deflate_more() -> None:
    rng = np.random.default_rng(11)
    returns = rng.normal(0.0005, 0.01, size=(2000, 8))
    alone = overfitting.deflated_sharpe_of_trials(returns, 0)
    with_pruned = overfitting.deflated_sharpe_of_trials(returns, 0, n_trials=40)
    assert alone.n_trials == 8 and with_pruned.n_trials == 40
    assert with_pruned.expected_max_sharpe > alone.expected_max_sharpe
    assert with_pruned.dsr < alone.dsr
    # fewer than the columns cannot be: every column was a trial
    assert overfitting.deflated_sharpe_of_trials(returns, 0, n_trials=3).n_trials == 8
