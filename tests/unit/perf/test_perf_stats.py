"""``judge``: catches real slowdowns, stays quiet on noise, respects min effect and direction."""

from __future__ import annotations

import numpy as np
import pytest

from ultrathink.perf.stats import IMPROVEMENT, NO_CHANGE, REGRESSION, judge

N_PER_SIDE = 15
SIGMA = 0.03  # 3 % multiplicative noise: a realistic spread of repeated timings


def _times(seed: int, *, scale: float = 1.0, sigma: float = SIGMA) -> np.ndarray:
    """Lognormal timings around ``scale`` seconds."""
    return scale * np.random.default_rng(seed).lognormal(0.0, sigma, N_PER_SIDE)


@pytest.mark.parametrize("seed", range(20))
def test_catches_an_injected_20pct_slowdown(seed: int) -> None:
    base, head = _times(2 * seed), _times(2 * seed + 1, scale=1.2)

    verdict = judge(base, head, lower_is_better=True, seed=seed)

    assert verdict.status == REGRESSION
    assert verdict.is_regression
    assert verdict.p_value < 0.01
    assert 1.0 < verdict.ci_low <= verdict.ratio <= verdict.ci_high
    assert 0.10 < verdict.slowdown < 0.30


def test_aa_comparisons_stay_quiet() -> None:
    # same distribution on both sides, 300 seeds; with min effect off only the test and
    # the CI guard, so their false-positive rate must stay near alpha (0.01)
    n_seeds = 300
    with_effect = [
        judge(_times(2 * s), _times(2 * s + 1), lower_is_better=True, seed=s, n_boot=1000)
        for s in range(n_seeds)
    ]
    no_effect = [
        judge(_times(2 * s), _times(2 * s + 1), lower_is_better=True, seed=s, n_boot=1000,
              min_effect=0.0)
        for s in range(n_seeds)
    ]  # fmt: skip

    assert not any(v.is_regression for v in with_effect)
    false_positive_rate = sum(v.is_regression for v in no_effect) / n_seeds
    assert false_positive_rate <= 0.02


def test_a_significant_2pct_slowdown_is_below_min_effect() -> None:
    base = _times(1, sigma=0.005)
    head = _times(2, scale=1.02, sigma=0.005)

    default = judge(base, head, lower_is_better=True)
    lowered = judge(base, head, lower_is_better=True, min_effect=0.01)

    assert default.p_value < 0.01 and default.ci_low > 1.0  # significant ...
    assert default.status == NO_CHANGE  # ... but smaller than the 5 % that matters
    assert "below min effect" in default.reason
    assert lowered.status == REGRESSION


def test_throughput_is_higher_is_better() -> None:
    base = 1e6 / _times(3)  # ops/s
    head = 1e6 / _times(4, scale=1.2)  # each op 20 % slower: throughput down

    as_throughput = judge(base, head, lower_is_better=False)
    as_time = judge(base, head, lower_is_better=True)

    assert as_throughput.status == REGRESSION
    assert as_throughput.ratio < 1.0 and as_throughput.ci_high < 1.0
    assert as_throughput.slowdown == pytest.approx(1 / as_throughput.ratio - 1)
    assert as_time.status == IMPROVEMENT  # the same numbers read as times got faster


def test_improvements_are_reported_never_failed() -> None:
    verdict = judge(_times(5), _times(6, scale=0.8), lower_is_better=True)

    assert verdict.status == IMPROVEMENT
    assert not verdict.is_regression
    assert verdict.slowdown < 0


def test_same_inputs_and_seed_give_the_same_verdict() -> None:
    base, head = _times(7), _times(8, scale=1.05)

    assert judge(base, head, lower_is_better=True, seed=3) == judge(
        base, head, lower_is_better=True, seed=3
    )


@pytest.mark.parametrize(
    ("base", "head", "options", "message"),
    [
        ([1.0], [1.0, 2.0], {}, "at least 2 samples"),
        ([1.0, -1.0], [1.0, 2.0], {}, "finite and > 0"),
        ([1.0, 2.0], [1.0, float("nan")], {}, "finite and > 0"),
        ([1.0, 2.0], [1.0, 2.0], {"alpha": 0.0}, "alpha"),
        ([1.0, 2.0], [1.0, 2.0], {"min_effect": -0.1}, "min_effect"),
        ([1.0, 2.0], [1.0, 2.0], {"n_boot": 10}, "n_boot"),
    ],
)
def test_rejects_unusable_input(
    base: list[float], head: list[float], options: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        judge(base, head, lower_is_better=True, **options)  # type: ignore[arg-type]
