"""``oos.npz``: what a registry version keeps of its out-of-sample predictions.

The walk-forward report holds one class-1 probability and one label per out-of-sample row;
the model page draws the ROC curves (per fold and over all folds), the calibration curve and
the prediction distribution from them. Storing the rows would make a version's size grow
with its data (5 bytes a row as float32 + uint8: 5 MB for a million rows, in every version
of a registry that keeps many). What is stored instead is a histogram with a bounded number
of bins, per fold and per class, whose size depends on the folds only:

* **bin edges**: the pooled probabilities' quantiles at every 0.1 % (so each bin holds about
  a thousandth of the rows, wherever the probabilities crowd; a weak model's probabilities
  often sit within a few hundredths of 0.5) united with the 50 equal-width edges of
  ``CHART_BINS``; at most 1,051 edges, fewer when the rows are few (duplicates merge);
* per fold and bin: the count of class-1 rows, of class-0 rows, and the sum of the
  probabilities (the mean prediction of a calibration bin is then exact).

What that gives, exactly and approximately:

* the prediction distribution on 50 (or 25, 10, ...) equal-width bins and the calibration
  curve on 10 equal-width bins are **exact**: their edges are among the stored edges;
* a ROC curve has a point at every stored edge: with fewer rows than quantile bins every
  distinct probability keeps its own bin and the curve is the exact one; with more, rows of
  one bin become ties (a diagonal step), a resolution of 0.1 % of the rows per step. The AUC
  figures shown next to it come from the version's metrics, computed on the rows.

Size: 3 arrays of ``n_folds x n_bins`` (uint32, uint32, float64) plus the edges,
compressed, whatever the number of rows: 59 KB for 5 folds and 465 KB for 50 folds (the most
``TrainConfig`` allows) of 1,000,000 rows, 17 KB for 3 folds of 900 rows (measured with
``encode_oos`` on random probabilities; raw float32 + uint8 rows would take 5 MB).
``np.load(..., allow_pickle=False)`` reads it: the file holds plain arrays only, and the
registry's manifest has checked its hash before.
"""

from __future__ import annotations

import io
import itertools
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from ultrathink.models.artifacts import ModelIntegrityError

__all__ = ["CHART_BINS", "OOS_FILE", "OosHistogram", "decode_oos", "encode_oos", "encode_report"]

OOS_FILE = "oos.npz"
#: equal-width bins of [0, 1] whose edges are always stored (prediction distribution)
CHART_BINS = 50
_QUANTILES = 1000
_FORMAT = 1
_KEYS = ("format", "edges", "positive", "negative", "proba_sum", "folds")


@dataclass(frozen=True, eq=False)
class OosHistogram:
    """Out-of-sample probabilities of a version, binned per fold and class.

    Attributes
    ----------
    edges : np.ndarray
        ``n_bins + 1`` increasing bin edges from 0 to 1; bin ``i`` is
        ``[edges[i], edges[i + 1])`` (the last one also holds 1.0).
    positive, negative : np.ndarray
        ``(n_folds, n_bins)`` counts of class-1 and class-0 rows per fold and bin.
    proba_sum : np.ndarray
        ``(n_folds, n_bins)`` sum of the probabilities of the rows of each fold and bin.
    folds : list of str
        Fold names (``"fold 1"``, ...), as in the version's metrics.
    """

    edges: np.ndarray
    positive: np.ndarray
    negative: np.ndarray
    proba_sum: np.ndarray
    folds: list[str]

    @property
    def n_rows(self) -> int:
        """Out-of-sample rows over all folds."""
        return int(self.positive.sum() + self.negative.sum())

    def roc(self, fold: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """``(fpr, tpr)`` of fold ``fold`` (0-based; None: all folds), one point per
        occupied bin from the highest threshold down; None when a class is absent."""
        pos, neg = self._counts(fold)
        keep = (pos + neg) > 0
        pos, neg = pos[keep][::-1], neg[keep][::-1]
        n_pos, n_neg = pos.sum(), neg.sum()
        if n_pos == 0 or n_neg == 0:
            return None
        tpr = np.concatenate(([0.0], np.cumsum(pos) / n_pos))
        fpr = np.concatenate(([0.0], np.cumsum(neg) / n_neg))
        return fpr, tpr

    def calibration(
        self, n_bins: int = 10, fold: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mean_predicted, fraction_positive, rows)`` on ``n_bins`` equal-width bins
        (``n_bins`` must divide ``CHART_BINS``); empty bins are left out, as
        ``sklearn.calibration.calibration_curve`` does."""
        pos, neg = self._counts(fold)
        psum = self.proba_sum.sum(axis=0) if fold is None else self.proba_sum[fold]
        group = self._group(n_bins)
        pos_b, rows = (np.bincount(group, weights=v, minlength=n_bins) for v in (pos, pos + neg))
        psum_b = np.bincount(group, weights=psum, minlength=n_bins)
        filled = rows > 0
        return psum_b[filled] / rows[filled], pos_b[filled] / rows[filled], rows[filled]

    def distribution(self, n_bins: int = CHART_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(edges, class-1 rows, class-0 rows)`` of all folds on ``n_bins`` equal-width
        bins of [0, 1] (``n_bins`` must divide ``CHART_BINS``)."""
        pos, neg = self._counts(None)
        group = self._group(n_bins)
        counts = [np.bincount(group, weights=v, minlength=n_bins).astype(np.int64)
                  for v in (pos, neg)]  # fmt: skip
        return np.linspace(0.0, 1.0, n_bins + 1), counts[0], counts[1]

    def _counts(self, fold: int | None) -> tuple[np.ndarray, np.ndarray]:
        if fold is None:
            return self.positive.sum(axis=0), self.negative.sum(axis=0)
        if not 0 <= fold < len(self.folds):
            raise IndexError(f"fold {fold} out of range: {len(self.folds)} folds")
        return self.positive[fold], self.negative[fold]

    def _group(self, n_bins: int) -> np.ndarray:
        # the coarse bin of each stored bin: its lower edge's place among CHART_BINS edges
        if n_bins < 1 or CHART_BINS % n_bins:
            raise ValueError(f"n_bins must divide {CHART_BINS}, was {n_bins}")
        fine = np.searchsorted(_chart_edges(), self.edges[:-1], side="right") - 1
        return np.clip(fine, 0, CHART_BINS - 1) // (CHART_BINS // n_bins)


def encode_oos(
    proba: Any, y_true: Any, fold_sizes: list[int], fold_names: list[str]
) -> bytes | None:
    """The ``oos.npz`` bytes of out-of-sample ``proba`` and labels, folds in row order.

    Returns None when there is nothing to store (no labels, or sizes that do not match:
    a report built without its labels).
    """
    p = np.asarray(proba, dtype=np.float64).reshape(-1)
    y = np.asarray(y_true).reshape(-1)
    sizes = [int(n) for n in fold_sizes]
    if y.size == 0 or p.shape != y.shape or sum(sizes) != p.size or len(sizes) != len(fold_names):
        return None
    p = np.clip(np.nan_to_num(p, nan=0.5), 0.0, 1.0)
    quantiles = np.quantile(p, np.linspace(0.0, 1.0, _QUANTILES + 1))
    edges = np.unique(np.concatenate((quantiles, _chart_edges())))
    n_bins = edges.size - 1
    index = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    label = y.astype(np.int64) == 1
    shape = (len(sizes), n_bins)
    positive, negative = np.zeros(shape, np.uint32), np.zeros(shape, np.uint32)
    proba_sum = np.zeros(shape, np.float64)
    bounds = np.cumsum([0, *sizes])
    for k, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        idx, lab = index[lo:hi], label[lo:hi]
        positive[k] = np.bincount(idx[lab], minlength=n_bins)
        negative[k] = np.bincount(idx[~lab], minlength=n_bins)
        proba_sum[k] = np.bincount(idx, weights=p[lo:hi], minlength=n_bins)
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer, format=np.array(_FORMAT), edges=edges, positive=positive, negative=negative,
        proba_sum=proba_sum, folds=np.array([str(n) for n in fold_names], dtype=np.str_),
    )  # fmt: skip
    return buffer.getvalue()


def encode_report(report: Any) -> bytes | None:
    """``encode_oos`` of a ``WalkForwardReport`` (its ``proba``, ``y_true`` and folds)."""
    folds = list(report.folds)
    return encode_oos(report.proba, report.y_true, [f.n_test for f in folds],
                      [f.name for f in folds])  # fmt: skip


def decode_oos(data: bytes, where: str = OOS_FILE) -> OosHistogram:
    """Read ``oos.npz`` bytes (already hash-verified); ``ModelIntegrityError`` when they are
    not a histogram this version of the code wrote."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in _KEYS if k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise _bad(where, f"is not a readable .npz ({type(exc).__name__}: {exc})") from None
    missing = [k for k in _KEYS if k not in arrays]
    if missing:
        raise _bad(where, f"has no {', '.join(missing)} array")
    if arrays["format"].shape != () or int(arrays["format"]) != _FORMAT:
        raise _bad(where, f"has format {arrays['format']!r}, expected {_FORMAT}")
    edges = arrays["edges"]
    counts = [arrays[k] for k in ("positive", "negative", "proba_sum")]
    folds = arrays["folds"]
    ok = (
        edges.ndim == 1 and edges.size >= 2 and edges.dtype.kind == "f"
        and bool(np.all(np.diff(edges) > 0)) and edges[0] == 0.0 and edges[-1] == 1.0
        and folds.ndim == 1 and folds.dtype.kind == "U"
        and all(c.shape == (folds.size, edges.size - 1) and c.dtype.kind in "uif" for c in counts)
        and all(bool(np.all(c >= 0)) for c in counts)
    )  # fmt: skip
    if not ok:
        raise _bad(where, "holds arrays of the wrong shape, type or range")
    return OosHistogram(edges, counts[0], counts[1], counts[2], [str(f) for f in folds])


def _chart_edges() -> np.ndarray:
    # the very floats stored among the edges, so grouping by them is exact
    return np.arange(CHART_BINS + 1) / CHART_BINS


def _bad(where: str, problem: str) -> ModelIntegrityError:
    return ModelIntegrityError(
        f"{where} {problem}; it was written by another program or version. Save the model "
        "again to redraw its out-of-sample charts"
    )
