"""Per-variant statistics of the model server, and the A/B quality comparison from feedback.

Each worker process keeps one :class:`VariantStats` per served version. A worker's
:meth:`VariantStats.snapshot` is plain JSON (the latency histograms are HdrHistogram
base64 blobs), and :meth:`VariantStats.merge` adds any number of snapshots of one version into
a single summary, so the totals over workers are exact: counts are summed and the histograms
added bucket by bucket (percentiles of a merge equal those of one object that saw everything).

:func:`quality` scores a variant's predictions against feedback labels; :func:`compare` is
the significance test run before promoting a candidate over the incumbent.
"""

from __future__ import annotations

import functools
import math
import threading
import warnings
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from ultrathink.errors import ConfigError

#: Bins of the prediction histogram: equal widths over [0, 1], p = 1.0 in the last bin.
PRED_BINS = 20
#: Latency histogram range in microseconds (1 µs .. 60 s) and precision.
LATENCY_MIN_US, LATENCY_MAX_US, LATENCY_DIGITS = 1, 60_000_000, 3
#: Version of the snapshot layout.
SNAPSHOT_FORMAT = 1

_P_CLIP = 1e-15


def _new_histogram() -> HdrHistogram:
    return HdrHistogram(LATENCY_MIN_US, LATENCY_MAX_US, LATENCY_DIGITS)


def _to_us(latency_ns: int) -> int:
    # clamped into the histogram's range so a record never silently drops
    return min(max(int(latency_ns) // 1000, LATENCY_MIN_US), LATENCY_MAX_US)


#: Latencies buffered before they are folded into the histogram (see ``VariantStats.record``).
_FLUSH_AT = 4096


def _fold(hist: HdrHistogram, pending: list[int]) -> None:
    # hdrh's record_value is pure Python (~4 µs); equal values fold into one call with a count
    if not pending:
        return
    us = np.clip(np.asarray(pending, dtype=np.int64) // 1000, LATENCY_MIN_US, LATENCY_MAX_US)
    values, counts = np.unique(us, return_counts=True)
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        hist.record_value(value, count)
    pending.clear()


def _encode(hist: HdrHistogram) -> str:
    blob = hist.encode()
    return blob.decode("ascii") if isinstance(blob, bytes) else str(blob)


class VariantStats:
    """Counts, latency, prediction distribution, errors, cache hits and shadow disagreement.

    Latency is an HdrHistogram over 1 µs .. 60 s with 3 significant digits, recorded in µs
    (durations outside the range are clamped into it). ``record`` is on the request path, so
    it only appends the duration; durations are folded into the histogram, equal values in
    one call, when 4,096 are pending or a snapshot is taken (measured: 4.2 µs a request
    recorded one by one, under 1 µs buffered). Predictions go into 20 equal bins over
    [0, 1]; a value outside [0, 1] is clipped into the edge bins and a NaN is counted as a
    request but left out of the distribution. The methods are thread-safe.

    Parameters
    ----------
    version : str
        The registry version these statistics belong to.
    """

    def __init__(self, version: str) -> None:
        if not isinstance(version, str) or not version:
            raise ConfigError(
                f"VariantStats version must be a non-empty string, got {version!r}; "
                "pass the registry version, e.g. v0001"
            )
        self.version = version
        self._lock = threading.Lock()
        self.requests = 0
        self.errors = 0
        self.cache_hits = 0
        self._latency = _new_histogram()
        self._pending: list[int] = []
        self._pred_hist = [0] * PRED_BINS
        self._pred_sum = 0.0
        self._pred_count = 0
        self.shadow_requests = 0
        self.shadow_errors = 0
        self.shadow_disagreements = 0
        self._shadow_compared = 0
        self._shadow_abs_diff_sum = 0.0
        self._shadow_latency = _new_histogram()

    def record(
        self, latency_ns: int, p: float | None, *, cached: bool = False, error: bool = False
    ) -> None:
        """Record one answered request.

        Parameters
        ----------
        latency_ns : int
            Time to answer, in nanoseconds (recorded for errors too).
        p : float or None
            The predicted probability; None when the request failed.
        cached : bool
            The answer came from the prediction cache.
        error : bool
            The request failed (``p`` is then ignored).
        """
        with self._lock:
            self.requests += 1
            pending = self._pending
            pending.append(latency_ns)
            if len(pending) >= _FLUSH_AT:
                _fold(self._latency, pending)
            if cached:
                self.cache_hits += 1
            if error or p is None:
                if error:
                    self.errors += 1
                return
            value = float(p)
            if value != value:  # NaN
                return
            value = 0.0 if value < 0.0 else (1.0 if value > 1.0 else value)
            self._pred_hist[min(int(value * PRED_BINS), PRED_BINS - 1)] += 1
            self._pred_sum += value
            self._pred_count += 1

    def record_shadow(
        self, latency_ns: int, p_shadow: float | None, p_primary: float, threshold: float = 0.5
    ) -> None:
        """Record one shadow call beside the answer that was actually served.

        Parameters
        ----------
        latency_ns : int
            The shadow call's time, in nanoseconds (recorded for errors too).
        p_shadow : float or None
            The shadow's probability; None when the shadow call failed.
        p_primary : float
            The served probability it is compared with.
        threshold : float
            Decision threshold: the two disagree when they fall on different sides of it
            (``p >= threshold`` is the positive side).
        """
        latency_us = _to_us(latency_ns)
        with self._lock:
            self.shadow_requests += 1
            self._shadow_latency.record_value(latency_us)
            if p_shadow is None:
                self.shadow_errors += 1
                return
            shadow, primary = float(p_shadow), float(p_primary)
            if math.isnan(shadow) or math.isnan(primary):
                return
            self._shadow_compared += 1
            self._shadow_abs_diff_sum += abs(shadow - primary)
            if (shadow >= threshold) != (primary >= threshold):
                self.shadow_disagreements += 1

    def snapshot(self) -> dict[str, Any]:
        """A JSON-serialisable copy of the raw statistics, for :meth:`merge`."""
        with self._lock:
            _fold(self._latency, self._pending)
            return {
                "format": SNAPSHOT_FORMAT,
                "version": self.version,
                "requests": self.requests,
                "errors": self.errors,
                "cache_hits": self.cache_hits,
                "latency_hist": _encode(self._latency),
                "prediction_hist": list(self._pred_hist),
                "prediction_sum": self._pred_sum,
                "prediction_count": self._pred_count,
                "shadow": {
                    "requests": self.shadow_requests,
                    "errors": self.shadow_errors,
                    "disagreements": self.shadow_disagreements,
                    "compared": self._shadow_compared,
                    "abs_diff_sum": self._shadow_abs_diff_sum,
                    "latency_hist": _encode(self._shadow_latency),
                },
            }

    def summary(self) -> dict[str, Any]:
        """This object's statistics as a summary: ``merge([self.snapshot()])``."""
        return VariantStats.merge([self.snapshot()])

    @staticmethod
    def merge(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
        """Add snapshots of one version (e.g. one per worker) into one summary.

        Parameters
        ----------
        snapshots : list of dict
            :meth:`snapshot` outputs, all of the same version (at least one).

        Returns
        -------
        dict
            ``version``, ``requests``, ``errors``, ``error_rate``, ``cache_hits``,
            ``latency_us`` ``{p50, p90, p99, max, mean}``, ``prediction_hist`` (20 counts),
            ``prediction_mean`` and ``shadow`` ``{requests, errors,
            disagreements, disagreement_rate, mean_abs_diff, latency_us {p50, p99}}``. Rates,
            means and latencies are 0 when there is nothing to measure.

        Raises
        ------
        ConfigError
            If the list is empty, a snapshot is not one, or the versions differ.
        """
        if not snapshots:
            raise ConfigError(
                "VariantStats.merge needs at least one snapshot, got none; "
                "pass [stats.snapshot(), ...]"
            )
        for snap in snapshots:
            if not isinstance(snap, dict) or snap.get("format") != SNAPSHOT_FORMAT:
                raise ConfigError(
                    f"VariantStats.merge got {type(snap).__name__} that is not a format "
                    f"{SNAPSHOT_FORMAT} snapshot; pass VariantStats.snapshot() outputs"
                )
        versions = sorted({snap["version"] for snap in snapshots})
        if len(versions) != 1:
            raise ConfigError(
                f"VariantStats.merge got snapshots of several versions {versions}; "
                "pass snapshots of one version"
            )
        latency, shadow_latency = _new_histogram(), _new_histogram()
        requests = errors = cache_hits = pred_count = 0
        pred_sum = 0.0
        pred_hist = [0] * PRED_BINS
        sh_requests = sh_errors = sh_disagreements = sh_compared = 0
        sh_abs_diff = 0.0
        for snap in snapshots:
            requests += snap["requests"]
            errors += snap["errors"]
            cache_hits += snap["cache_hits"]
            latency.decode_and_add(snap["latency_hist"])
            pred_hist = [a + b for a, b in zip(pred_hist, snap["prediction_hist"], strict=True)]
            pred_sum += snap["prediction_sum"]
            pred_count += snap["prediction_count"]
            shadow = snap["shadow"]
            sh_requests += shadow["requests"]
            sh_errors += shadow["errors"]
            sh_disagreements += shadow["disagreements"]
            sh_compared += shadow["compared"]
            sh_abs_diff += shadow["abs_diff_sum"]
            shadow_latency.decode_and_add(shadow["latency_hist"])
        return {
            "version": versions[0],
            "requests": requests,
            "errors": errors,
            "error_rate": errors / requests if requests else 0.0,
            "cache_hits": cache_hits,
            "latency_us": _latency_summary(latency, (50.0, 90.0, 99.0), with_mean=True),
            "prediction_hist": pred_hist,
            "prediction_mean": pred_sum / pred_count if pred_count else 0.0,
            "shadow": {
                "requests": sh_requests,
                "errors": sh_errors,
                "disagreements": sh_disagreements,
                "disagreement_rate": sh_disagreements / sh_compared if sh_compared else 0.0,
                "mean_abs_diff": sh_abs_diff / sh_compared if sh_compared else 0.0,
                "latency_us": _latency_summary(shadow_latency, (50.0, 99.0), with_mean=False),
            },
        }


@functools.cache
def _bucket_values() -> tuple[np.ndarray, np.ndarray]:
    # per counts index: the highest and the median value it stands for (hdrh's semantics),
    # computed once for the fixed layout, so a summary is numpy over the counts, not hdrh's
    # Python loops (its get_mean_value walks every bucket: ~40 ms a call here, on the loop)
    hist = _new_histogram()
    index = range(hist.counts_len)
    values = [hist.get_value_from_index(i) for i in index]
    highest = np.array([hist.get_highest_equivalent_value(v) for v in values], dtype=np.float64)
    median = np.array([hist._hdr_median_equiv_value(v) for v in values], dtype=np.float64)
    return highest, median


def prepare() -> None:
    """Build the bucket tables now (at start-up) rather than on the first status request."""
    _bucket_values()


def _latency_summary(
    hist: HdrHistogram, percentiles: tuple[float, ...], *, with_mean: bool
) -> dict[str, float]:
    counts = np.frombuffer(hist.counts, dtype=np.int64, count=hist.counts_len)
    total = int(counts.sum())
    highest, median = _bucket_values()
    cumulative = np.cumsum(counts)
    out = {}
    for p in percentiles:
        target = max(int(p * total / 100 + 0.5), 1)  # hdrh's get_target_count_at_percentile
        at = int(np.searchsorted(cumulative, target))
        out[f"p{p:g}"] = float(highest[at]) if total else 0.0
    if with_mean:
        out["max"] = float(hist.get_max_value()) if total else 0.0
        out["mean"] = float(counts @ median / total) if total else 0.0
    return out


def _feedback(p: Any, y: Any, side: str) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(p, dtype=np.float64)
    labels = np.asarray(y, dtype=np.float64)
    if probs.ndim != 1 or labels.ndim != 1 or probs.shape != labels.shape:
        raise ConfigError(
            f"{side} predictions and labels must be 1-D of equal length, got shapes "
            f"{probs.shape} and {labels.shape}; pass one probability per label"
        )
    if probs.size and not (np.isfinite(probs).all() and ((probs >= 0) & (probs <= 1)).all()):
        bad = probs[~(np.isfinite(probs) & (probs >= 0) & (probs <= 1))][0]
        raise ConfigError(
            f"{side} probabilities must be finite and in [0, 1], got {float(bad)!r}; "
            "pass predicted probabilities of the positive class"
        )
    if labels.size and not np.isin(labels, (0.0, 1.0)).all():
        bad = labels[~np.isin(labels, (0.0, 1.0))][0]
        raise ConfigError(f"{side} labels must be 0 or 1, got {float(bad)!r}; pass binary outcomes")
    return probs, labels.astype(np.int64)


def _row_logloss(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    clipped = np.clip(p, _P_CLIP, 1.0 - _P_CLIP)
    return -(y * np.log(clipped) + (1 - y) * np.log1p(-clipped))


def quality(p: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Score predictions against feedback labels.

    Parameters
    ----------
    p : np.ndarray
        Predicted probabilities of the positive class, in [0, 1].
    y : np.ndarray
        Binary outcomes (0 or 1), one per prediction.

    Returns
    -------
    dict
        ``n``; ``logloss`` (scikit-learn ``log_loss`` with labels [0, 1], ``p`` clipped to
        [1e-15, 1 - 1e-15]); ``auc`` (None when only one class is present); ``accuracy`` of
        ``p >= 0.5``; ``positive_rate`` (share of labels that are 1). All but ``n`` are None
        when there is no feedback.

    Raises
    ------
    ConfigError
        On mismatched shapes, probabilities outside [0, 1] or labels other than 0/1.
    """
    from sklearn.metrics import log_loss, roc_auc_score  # lazy: only feedback needs sklearn

    probs, labels = _feedback(p, y, "quality")
    n = int(probs.size)
    if n == 0:
        return {"n": 0, "logloss": None, "auc": None, "accuracy": None, "positive_rate": None}
    clipped = np.clip(probs, _P_CLIP, 1.0 - _P_CLIP)
    both = bool(labels.min() != labels.max())
    return {
        "n": n,
        "logloss": float(log_loss(labels, clipped, labels=[0, 1])),
        "auc": float(roc_auc_score(labels, probs)) if both else None,
        "accuracy": float(np.mean((probs >= 0.5) == (labels == 1))),
        "positive_rate": float(labels.mean()),
    }


def compare(
    a_p: Any,
    a_y: Any,
    b_p: Any,
    b_y: Any,
    *,
    alpha: float = 0.05,
    min_n: int = 100,
) -> dict[str, Any]:
    """Test whether a candidate's log loss differs from the incumbent's, before a promotion.

    Welch's two-sample t-test (``scipy.stats.ttest_ind``, ``equal_var=False``) on the
    per-prediction log loss (probabilities clipped to [1e-15, 1 - 1e-15]) of each side.

    Parameters
    ----------
    a_p, a_y : array-like
        Incumbent predictions and their feedback labels.
    b_p, b_y : array-like
        Candidate predictions and their feedback labels.
    alpha : float
        Significance level, in (0, 1).
    min_n : int
        Feedback rows each side needs before the test may be significant (>= 2).

    Returns
    -------
    dict
        ``n_a``, ``n_b``, ``logloss_a``, ``logloss_b`` (None without rows), ``diff``
        (``logloss_b - logloss_a``), ``t`` (> 0 when b's loss is higher), ``p_value``
        (``t`` and ``p_value`` are None when the test is undefined: fewer than 2 rows a side,
        or no variance), ``alpha``, ``min_n``, ``significant``
        (both sides >= ``min_n`` and ``p_value < alpha``), ``better`` (``"b"`` or ``"a"``,
        the lower mean log loss, when significant; else None) and a one-line ``verdict``.

    Raises
    ------
    ConfigError
        On a bad ``alpha`` or ``min_n``, or invalid predictions or labels.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 < alpha < 1.0:
        raise ConfigError(f"compare alpha must be in (0, 1), got {alpha!r}; pass e.g. 0.05")
    if isinstance(min_n, bool) or not isinstance(min_n, int) or min_n < 2:
        raise ConfigError(f"compare min_n must be an integer >= 2, got {min_n!r}; pass e.g. 100")
    loss_a = _row_logloss(*_feedback(a_p, a_y, "compare a (incumbent)"))
    loss_b = _row_logloss(*_feedback(b_p, b_y, "compare b (candidate)"))
    n_a, n_b = int(loss_a.size), int(loss_b.size)
    mean_a = float(loss_a.mean()) if n_a else None
    mean_b = float(loss_b.mean()) if n_b else None
    diff = mean_b - mean_a if mean_a is not None and mean_b is not None else None
    t_stat, p_value = _welch(loss_a, loss_b)
    enough = n_a >= min_n and n_b >= min_n
    significant = bool(enough and p_value is not None and p_value < alpha)
    better = None
    if significant and diff is not None:
        better = "b" if diff < 0 else "a"
    if not enough:
        verdict = (
            f"not enough feedback: a (incumbent) needs {max(min_n - n_a, 0)} more, "
            f"b (candidate) needs {max(min_n - n_b, 0)} more (min_n={min_n}, "
            f"have {n_a} and {n_b})"
        )
    else:
        shown = f"log loss a {mean_a:.4f} vs b {mean_b:.4f}, n={n_a}/{n_b}"
        if p_value is None:
            verdict = f"no test possible, the log losses have no variance ({shown})"
        elif significant:
            who = "b (candidate)" if better == "b" else "a (incumbent)"
            verdict = f"{who} is better: {shown}, p={p_value:.3g} < {alpha:g}"
        else:
            verdict = f"no significant difference: {shown}, p={p_value:.3g} >= {alpha:g}"
    return {
        "n_a": n_a,
        "n_b": n_b,
        "logloss_a": mean_a,
        "logloss_b": mean_b,
        "diff": diff,
        "t": t_stat,
        "p_value": p_value,
        "alpha": float(alpha),
        "min_n": min_n,
        "significant": significant,
        "better": better,
        "verdict": verdict,
    }


def _welch(a: np.ndarray, b: np.ndarray) -> tuple[float | None, float | None]:
    # (t, p) of Welch's test, or None where it is undefined (too few rows, zero variance)
    if a.size < 2 or b.size < 2:
        return None, None
    from scipy.stats import ttest_ind  # lazy: only a promotion decision needs scipy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # zero variance: nan, handled below
        result = ttest_ind(b, a, equal_var=False)
    t_stat, p_value = float(result.statistic), float(result.pvalue)
    if not (math.isfinite(p_value) and math.isfinite(t_stat)):
        return None, None
    return t_stat, p_value
