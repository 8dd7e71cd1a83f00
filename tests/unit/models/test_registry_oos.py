"""``oos.npz``: the binned out-of-sample predictions a registry version keeps for its model
page. Checked against scikit-learn's own curves on the rows, and for its bounded size."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score, roc_curve

from ultrathink.models.artifacts import ModelIntegrityError
from ultrathink.models.registry_oos import OosHistogram, decode_oos, encode_oos, encode_report
from ultrathink.models.training import walk_forward_report


def predictions(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A weak model's probabilities: crowded within a few hundredths of 0.5."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.5 + 0.02 * (y - 0.5) + rng.normal(0, 0.02, n), 0.0, 1.0)
    return p, y


def binned(p: np.ndarray, y: np.ndarray, n_folds: int) -> OosHistogram:
    sizes = [p.size // n_folds] * (n_folds - 1) + [p.size - p.size // n_folds * (n_folds - 1)]
    data = encode_oos(p, y, sizes, [f"fold {i + 1}" for i in range(n_folds)])
    assert data is not None
    return decode_oos(data)


def test_few_rows_keep_the_exact_roc_curve() -> None:
    p, y = predictions(900)
    h = binned(p, y, 3)

    fpr, tpr = h.roc()
    exact_fpr, exact_tpr, _ = roc_curve(y, p, drop_intermediate=False)

    assert h.n_rows == 900 and h.folds == ["fold 1", "fold 2", "fold 3"]
    np.testing.assert_allclose(fpr, exact_fpr, atol=1e-12)
    np.testing.assert_allclose(tpr, exact_tpr, atol=1e-12)
    fold_fpr, fold_tpr = h.roc(1)
    sk_fpr, sk_tpr, _ = roc_curve(y[300:600], p[300:600], drop_intermediate=False)
    np.testing.assert_allclose(fold_fpr, sk_fpr, atol=1e-12)
    np.testing.assert_allclose(fold_tpr, sk_tpr, atol=1e-12)


def test_many_rows_keep_calibration_and_distribution_exact_and_the_roc_close() -> None:
    p, y = predictions(200_000, seed=1)
    h = binned(p, y, 5)

    fpr, tpr = h.roc()
    mean_predicted, positive, rows = h.calibration(10)
    sk_positive, sk_predicted = calibration_curve(y, p, n_bins=10)
    edges, class1, class0 = h.distribution(50)

    assert h.edges.size <= 1052 and fpr.size <= h.edges.size
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc_score(y, p), abs=1e-4)
    np.testing.assert_allclose(mean_predicted, sk_predicted, rtol=1e-12)
    np.testing.assert_allclose(positive, sk_positive, rtol=1e-12)
    assert rows.sum() == p.size
    np.testing.assert_array_equal(class1 + class0, np.histogram(p, 50, range=(0, 1))[0])
    np.testing.assert_array_equal(class1, np.histogram(p[y == 1], 50, range=(0, 1))[0])
    assert list(edges[[0, -1]]) == [0.0, 1.0]


def test_the_size_is_bounded_by_the_folds_not_the_rows() -> None:
    small, large = predictions(20_000, seed=2), predictions(1_000_000, seed=3)
    sizes = {}
    for n, (p, y) in ((20_000, small), (1_000_000, large)):
        data = encode_oos(p, y, [n // 5] * 5, [f"fold {i}" for i in range(1, 6)])
        assert data is not None
        sizes[n] = len(data)

    assert sizes[1_000_000] < 100_000, "a million rows as float32 + uint8 would be 5 MB"
    assert sizes[1_000_000] < 2 * sizes[20_000]


def test_a_single_class_fold_has_no_roc_curve() -> None:
    p = np.linspace(0.1, 0.9, 40)
    y = np.r_[np.zeros(20), np.r_[np.zeros(10), np.ones(10)]].astype(int)
    h = binned(p, y, 2)

    assert h.roc(0) is None and h.roc(1) is not None and h.roc() is not None
    with pytest.raises(IndexError, match="fold 2 out of range"):
        h.roc(2)
    with pytest.raises(ValueError, match="must divide 50"):
        h.calibration(7)


def test_a_walk_forward_report_is_stored_with_its_folds() -> None:
    rng = np.random.default_rng(4)
    X = rng.normal(size=(600, 3))
    y = (X[:, 0] + rng.normal(size=600) > 0).astype(np.int64)
    splits = [(np.arange(0, 200), np.arange(200, 400)), (np.arange(0, 400), np.arange(400, 600))]
    from ultrathink.models.ensemble import EnsembleClassifier

    report = walk_forward_report(
        X, y, np.zeros(600), splits,
        lambda: EnsembleClassifier(gbm_n_estimators=5, forest_n_estimators=5),
    )  # fmt: skip
    data = encode_report(report)
    assert data is not None
    h = decode_oos(data)

    assert h.folds == ["fold 1", "fold 2"] and h.n_rows == 400
    assert int(h.positive.sum()) == int(y[200:].sum())
    fpr, tpr = h.roc(0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(report.folds[0].auc, abs=1e-9)


def test_nothing_is_stored_without_labels() -> None:
    p, y = predictions(100)

    assert encode_oos(p, np.empty(0), [100], ["fold 1"]) is None
    assert encode_oos(p, y, [60], ["fold 1"]) is None, "fold sizes that do not add up"


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_a_foreign_file_is_an_integrity_error() -> None:
    p, y = predictions(100)
    good = encode_oos(p, y, [100], ["fold 1"])
    assert good is not None
    with np.load(io.BytesIO(good)) as npz:
        arrays = {k: npz[k] for k in npz.files}
    pickled = io.BytesIO()
    np.savez(pickled, **{**arrays, "folds": np.array([object()], dtype=object)})

    for data, message in (
        (b"not a zip", "not a readable .npz"),
        (_npz(**{k: v for k, v in arrays.items() if k != "edges"}), "has no edges array"),
        (_npz(**{**arrays, "format": np.array(2)}), "has format"),
        (_npz(**{**arrays, "edges": arrays["edges"][::-1]}), "wrong shape, type or range"),
        (_npz(**{**arrays, "positive": arrays["positive"][:, :3]}), "wrong shape"),
        (pickled.getvalue(), "not a readable .npz"),
    ):
        with pytest.raises(ModelIntegrityError, match=message):
            decode_oos(data)
    assert zipfile.is_zipfile(io.BytesIO(good))
