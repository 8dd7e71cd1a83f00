"""Per-variant statistics (snapshot, merge, histograms, shadow) and the feedback quality tests."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from ultrathink.errors import ConfigError
from ultrathink.serving.variants import PRED_BINS, VariantStats, compare, quality

US = 1_000
MS = 1_000_000


def _feed(stats: VariantStats, rng: np.random.Generator, n: int) -> None:
    latencies = rng.lognormal(mean=np.log(2 * MS), sigma=0.8, size=n).astype(np.int64)
    probs = rng.random(n)
    for i in range(n):
        if i % 17 == 0:
            stats.record(int(latencies[i]), None, error=True)
        else:
            stats.record(int(latencies[i]), float(probs[i]), cached=i % 5 == 0)
        if i % 3 == 0:
            p_shadow = None if i % 31 == 0 else float(rng.random())
            stats.record_shadow(int(latencies[i]) // 2, p_shadow, float(probs[i]))


# --- VariantStats -----------------------------------------------------------------------------


def test_merge_of_worker_snapshots_equals_one_object() -> None:
    rng = np.random.default_rng(7)
    worker_a, worker_b, single = VariantStats("v0001"), VariantStats("v0001"), VariantStats("v0001")
    state = rng.bit_generator.state
    _feed(worker_a, rng, 1_500)
    _feed(worker_b, rng, 900)
    rng.bit_generator.state = state  # replay the same records into one object
    _feed(single, rng, 1_500)
    _feed(single, rng, 900)

    snapshots = [json.loads(json.dumps(s.snapshot())) for s in (worker_a, worker_b)]
    merged = VariantStats.merge(snapshots)
    alone = VariantStats.merge([single.snapshot()])

    for key in ("version", "requests", "errors", "error_rate", "cache_hits", "prediction_hist"):
        assert merged[key] == alone[key], key
    assert merged["latency_us"] == alone["latency_us"]  # percentiles, max and mean
    assert merged["prediction_mean"] == pytest.approx(alone["prediction_mean"])
    for key in ("requests", "errors", "disagreements", "disagreement_rate", "latency_us"):
        assert merged["shadow"][key] == alone["shadow"][key], key
    assert merged["shadow"]["mean_abs_diff"] == pytest.approx(alone["shadow"]["mean_abs_diff"])
    assert merged["requests"] == 2_400
    assert merged["errors"] == len(range(0, 1_500, 17)) + len(range(0, 900, 17))
    assert sum(merged["prediction_hist"]) == merged["requests"] - merged["errors"]
    assert single.summary() == alone


def test_summary_fields_and_latency_units() -> None:
    stats = VariantStats("v0002")
    for latency_us in (100, 200, 300, 400, 10_000):
        stats.record(latency_us * US, 0.25)
    stats.record(5 * US, None, error=True)
    stats.record(50 * US, 0.75, cached=True)
    summary = stats.summary()
    assert summary["version"] == "v0002"
    assert summary["requests"] == 7
    assert summary["errors"] == 1
    assert summary["error_rate"] == pytest.approx(1 / 7)
    assert summary["cache_hits"] == 1
    latency = summary["latency_us"]
    assert set(latency) == {"p50", "p90", "p99", "max", "mean"}
    assert latency["p50"] == pytest.approx(200, rel=1e-3)
    assert latency["max"] == pytest.approx(10_000, rel=1e-3)
    assert latency["mean"] == pytest.approx((100 + 200 + 300 + 400 + 10_000 + 5 + 50) / 7, rel=1e-3)
    assert summary["prediction_mean"] == pytest.approx((5 * 0.25 + 0.75) / 6)


def test_latency_is_clamped_into_the_histogram_range() -> None:
    stats = VariantStats("v0001")
    stats.record(0, 0.5)  # below 1 µs
    stats.record(3_600 * 10**9, 0.5)  # an hour, above 60 s
    summary = stats.summary()
    assert summary["requests"] == 2
    assert summary["latency_us"]["max"] == pytest.approx(60_000_000, rel=1e-3)


def test_prediction_histogram_bins() -> None:
    stats = VariantStats("v0001")
    for p in (0.0, 0.049, 0.05, 0.5, 0.999, 1.0):
        stats.record(MS, p)
    hist = stats.summary()["prediction_hist"]
    assert len(hist) == PRED_BINS == 20
    expected = [0] * 20
    expected[0] = 2  # 0.0 and 0.049
    expected[1] = 1  # 0.05
    expected[10] = 1  # 0.5
    expected[19] = 2  # 0.999 and p = 1.0 in the last bin
    assert hist == expected


def test_out_of_range_and_nan_predictions() -> None:
    stats = VariantStats("v0001")
    stats.record(MS, -0.2)
    stats.record(MS, 1.3)
    stats.record(MS, float("nan"))
    summary = stats.summary()
    assert summary["requests"] == 3
    assert summary["prediction_hist"][0] == 1 and summary["prediction_hist"][19] == 1
    assert sum(summary["prediction_hist"]) == 2
    assert summary["prediction_mean"] == pytest.approx(0.5)


def test_snapshot_is_json_serialisable() -> None:
    stats = VariantStats("v0001")
    _feed(stats, np.random.default_rng(1), 200)
    snapshot = stats.snapshot()
    text = json.dumps(snapshot)
    assert json.loads(text) == snapshot
    assert isinstance(snapshot["latency_hist"], str)
    json.dumps(VariantStats.merge([snapshot]))


def test_empty_stats_summary_is_zeros() -> None:
    summary = VariantStats("v0001").summary()
    assert summary["requests"] == 0 and summary["error_rate"] == 0.0
    assert summary["latency_us"] == {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    assert summary["prediction_hist"] == [0] * 20
    assert summary["prediction_mean"] == 0.0
    assert summary["shadow"] == {
        "requests": 0,
        "errors": 0,
        "disagreements": 0,
        "disagreement_rate": 0.0,
        "mean_abs_diff": 0.0,
        "latency_us": {"p50": 0.0, "p99": 0.0},
    }
    json.dumps(summary)


def test_shadow_disagreement_counts() -> None:
    stats = VariantStats("v0003")
    stats.record_shadow(100 * US, 0.6, 0.4)  # disagree
    stats.record_shadow(100 * US, 0.2, 0.3)  # agree (both negative)
    stats.record_shadow(200 * US, 0.9, 0.7)  # agree (both positive)
    stats.record_shadow(200 * US, 0.5, 0.49)  # disagree: 0.5 is on the positive side
    stats.record_shadow(300 * US, None, 0.8)  # shadow error
    stats.record_shadow(100 * US, 0.6, 0.4, threshold=0.7)  # agree under a 0.7 threshold
    shadow = stats.summary()["shadow"]
    assert shadow["requests"] == 6
    assert shadow["errors"] == 1
    assert shadow["disagreements"] == 2
    assert shadow["disagreement_rate"] == pytest.approx(2 / 5)
    assert shadow["mean_abs_diff"] == pytest.approx((0.2 + 0.1 + 0.2 + 0.01 + 0.2) / 5)
    assert shadow["latency_us"]["p50"] == pytest.approx(100, rel=1e-3)
    assert shadow["latency_us"]["p99"] == pytest.approx(300, rel=1e-3)
    assert stats.summary()["requests"] == 0  # shadow calls are not answered requests


def test_merge_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        VariantStats.merge([])
    with pytest.raises(ConfigError, match=r"v0001.*v0002"):
        VariantStats.merge([VariantStats("v0001").snapshot(), VariantStats("v0002").snapshot()])
    with pytest.raises(ConfigError, match="snapshot"):
        VariantStats.merge([{"version": "v0001"}])


# --- quality ----------------------------------------------------------------------------------


def test_quality_matches_sklearn() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=500)
    p = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2, size=500), 0.0, 1.0)
    p[:3] = [0.0, 1.0, 0.5]  # exact 0 and 1 are clipped for the log loss
    result = quality(p, y)
    clipped = np.clip(p, 1e-15, 1 - 1e-15)
    assert result["n"] == 500
    assert result["logloss"] == pytest.approx(log_loss(y, clipped, labels=[0, 1]))
    assert result["auc"] == pytest.approx(roc_auc_score(y, p))
    assert result["accuracy"] == pytest.approx(np.mean((p >= 0.5) == (y == 1)))
    assert result["positive_rate"] == pytest.approx(y.mean())
    json.dumps(result)


def test_quality_auc_none_with_one_class() -> None:
    result = quality(np.array([0.2, 0.9, 0.7]), np.array([1, 1, 1]))
    assert result["auc"] is None
    assert result["n"] == 3
    assert result["positive_rate"] == 1.0
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["logloss"] == pytest.approx(log_loss([1, 1, 1], [0.2, 0.9, 0.7], labels=[0, 1]))


def test_quality_without_feedback() -> None:
    result = quality(np.array([]), np.array([]))
    assert result == {"n": 0, "logloss": None, "auc": None, "accuracy": None, "positive_rate": None}


@pytest.mark.parametrize(
    ("p", "y", "offending"),
    [
        ([0.5, 0.5], [1], "(2,)"),
        ([0.5, 1.5], [1, 0], "1.5"),
        ([0.5, float("nan")], [1, 0], "nan"),
        ([0.5, 0.5], [1, 2], "2"),
    ],
)
def test_quality_rejects_bad_feedback(p: list[float], y: list[int], offending: str) -> None:
    with pytest.raises(ConfigError) as info:
        quality(np.array(p), np.array(y))
    assert offending in str(info.value)


# --- compare ----------------------------------------------------------------------------------


def _labels_and_truth(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    truth = rng.uniform(0.05, 0.95, size=n)
    return truth, (rng.random(n) < truth).astype(int)


def test_compare_better_calibrated_candidate_is_significant() -> None:
    rng = np.random.default_rng(11)
    n = 2_000
    truth_a, y_a = _labels_and_truth(rng, n)
    truth_b, y_b = _labels_and_truth(rng, n)
    p_a = np.clip(0.5 + 1.8 * (truth_a - 0.5), 0.01, 0.99)  # over-confident incumbent
    p_b = truth_b  # the candidate predicts the true probabilities
    result = compare(p_a, y_a, p_b, y_b)
    assert result["n_a"] == result["n_b"] == n
    assert result["significant"] is True
    assert result["better"] == "b"
    assert result["diff"] < 0 and result["t"] < 0
    assert result["p_value"] < 0.05
    assert result["logloss_a"] == pytest.approx(quality(p_a, y_a)["logloss"])
    assert result["logloss_b"] == pytest.approx(quality(p_b, y_b)["logloss"])
    assert result["verdict"].startswith("b (candidate) is better")
    assert "\n" not in result["verdict"]
    json.dumps(result)


def test_compare_worse_candidate_favours_incumbent() -> None:
    rng = np.random.default_rng(12)
    truth_a, y_a = _labels_and_truth(rng, 2_000)
    _, y_b = _labels_and_truth(rng, 2_000)
    result = compare(truth_a, y_a, np.full(2_000, 0.9), y_b)  # a constant, confident candidate
    assert result["significant"] is True and result["better"] == "a"
    assert result["verdict"].startswith("a (incumbent) is better")


def test_compare_identical_distributions_not_significant() -> None:
    rng = np.random.default_rng(5)
    truth_a, y_a = _labels_and_truth(rng, 2_000)
    truth_b, y_b = _labels_and_truth(rng, 2_000)
    result = compare(truth_a, y_a, truth_b, y_b)
    assert result["p_value"] >= 0.05
    assert result["significant"] is False
    assert result["better"] is None
    assert result["verdict"].startswith("no significant difference")


def test_compare_below_min_n_needs_more_feedback() -> None:
    rng = np.random.default_rng(11)
    truth_a, y_a = _labels_and_truth(rng, 60)
    truth_b, y_b = _labels_and_truth(rng, 130)
    p_a = np.where(truth_a > 0.5, 0.01, 0.99)  # terrible, yet too few rows to decide
    result = compare(p_a, y_a, truth_b, y_b, min_n=100)
    assert result["significant"] is False and result["better"] is None
    assert result["p_value"] is not None
    assert "needs 40 more" in result["verdict"]
    assert "needs 0 more" in result["verdict"]
    assert result["min_n"] == 100


def test_compare_with_no_feedback() -> None:
    result = compare(np.array([]), np.array([]), np.array([0.5]), np.array([1]))
    assert result["n_a"] == 0 and result["logloss_a"] is None and result["diff"] is None
    assert result["t"] is None and result["p_value"] is None
    assert result["significant"] is False
    assert "needs 100 more" in result["verdict"] and "needs 99 more" in result["verdict"]


@pytest.mark.parametrize(("alpha", "min_n"), [(0.0, 100), (1.0, 100), (0.05, 1), (0.05, 10.5)])
def test_compare_rejects_bad_options(alpha: float, min_n: int) -> None:
    with pytest.raises(ConfigError):
        compare([0.5, 0.5], [0, 1], [0.5, 0.5], [0, 1], alpha=alpha, min_n=min_n)
