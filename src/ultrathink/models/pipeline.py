"""Training pipeline: bars -> features and labels -> purged walk-forward -> registry.

One symbol per model. A row is kept when every selected feature is finite and its label is
valid (inside the data and outside the dead zone). The walk-forward report is computed
before the final fit on all kept rows, so every figure in it is out-of-sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ultrathink.data.frame import MarketData
from ultrathink.errors import ConfigError
from ultrathink.features.labels import forward_return_labels
from ultrathink.features.spec import FEATURE_NAMES
from ultrathink.features.validation import purged_walk_forward
from ultrathink.features.vectorised import compute_features
from ultrathink.models.ensemble import EnsembleClassifier
from ultrathink.models.registry import ModelRegistry
from ultrathink.models.registry_oos import OOS_FILE, encode_report
from ultrathink.models.training import WalkForwardReport, fit_final, walk_forward_report

_NS_PER_YEAR = 365.25 * 86_400e9
MEMBERS = ("gbm", "forest", "linear")


class TrainConfig(BaseModel):
    """What ``ultrathink train`` trains.

    Attributes
    ----------
    horizon : int
        Label horizon in bars (return from the next open to the open ``horizon`` bars later).
    dead_zone_bps : float
        Rows whose forward return is within ± this many bps are not labelled.
    n_folds : int
        Walk-forward folds.
    embargo : int
        Rows dropped after each test block from later training sets.
    features : tuple of str or None
        Feature subset (None: all of ``FEATURE_NAMES``).
    members : tuple of str
        Ensemble members that vote; the others get weight 0.
    model_params : dict
        ``EnsembleClassifier`` parameters.
    long_threshold : float
        Probability above which the walk-forward strategy is long.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    horizon: int = Field(default=5, ge=1, le=250)
    dead_zone_bps: float = Field(default=0.0, ge=0, le=10_000)
    n_folds: int = Field(default=5, ge=2, le=50)
    embargo: int = Field(default=0, ge=0)
    features: tuple[str, ...] | None = None
    members: tuple[str, ...] = MEMBERS
    model_params: dict[str, Any] = Field(default_factory=dict)
    long_threshold: float = Field(default=0.55, gt=0, lt=1)


@dataclass(frozen=True)
class TrainResult:
    """A trained and registered model with its out-of-sample report."""

    version: str
    report: WalkForwardReport
    n_rows: int
    feature_names: list[str]
    train_start_ns: int
    train_end_ns: int
    seconds: float
    #: feature name -> importance of the final model (``ensemble_importances``)
    importances: dict[str, float] = field(default_factory=dict)


def _feature_index(names: tuple[str, ...] | None) -> np.ndarray:
    if names is None:
        return np.arange(len(FEATURE_NAMES))
    unknown = [n for n in names if n not in FEATURE_NAMES]
    if unknown:
        raise ConfigError(f"unknown features {unknown}; known features: {list(FEATURE_NAMES)}")
    return np.array([FEATURE_NAMES.index(n) for n in names])


def _weights(members: tuple[str, ...], params: dict[str, Any]) -> dict[str, Any]:
    unknown = [m for m in members if m not in MEMBERS]
    if unknown or not members:
        raise ConfigError(f"members must be a non-empty subset of {list(MEMBERS)}, was {members}")
    if "weights" in params:
        return params
    return {**params, "weights": tuple(1.0 if m in members else 0.0 for m in MEMBERS)}


def training_rows(
    data: MarketData, cfg: TrainConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, forward returns, ts_ns, feature index) of the kept rows of one symbol."""
    if data.n_symbols != 1:
        raise ConfigError(
            f"training takes one symbol, data has {list(data.symbols)}; pick one with --symbol"
        )
    index = _feature_index(cfg.features)
    features = compute_features(
        data.ts_ns, data.open, data.high, data.low, data.close, data.volume
    )[:, index]
    y, valid, fwd = forward_return_labels(data.open, cfg.horizon, cfg.dead_zone_bps)
    keep = valid & np.isfinite(features).all(axis=1)
    if keep.sum() < 50 * cfg.n_folds:
        raise ConfigError(
            f"only {int(keep.sum())} usable rows for {cfg.n_folds} folds; fix: use more data, "
            "fewer folds or a smaller dead zone"
        )
    return features[keep], y[keep].astype(np.int64), fwd[keep], data.ts_ns[keep], index


def train(
    data: MarketData,
    cfg: TrainConfig,
    registry: ModelRegistry,
    extra: dict[str, Any] | None = None,
) -> TrainResult:
    """Walk-forward evaluate, fit on all rows, and save a new registry version (``extra``:
    more metadata for it, e.g. the lineage of a tuned model)."""
    import time

    t0 = time.perf_counter()
    X, y, fwd, ts, index = training_rows(data, cfg)
    params = _weights(cfg.members, dict(cfg.model_params))
    known = EnsembleClassifier().get_params()
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(f"unknown ensemble parameters {unknown}; known: {sorted(known)}")
    EnsembleClassifier(**params)._check_params()  # bad values surface before any fitting

    def make_model() -> EnsembleClassifier:
        return EnsembleClassifier(**params)

    years = float(data.ts_ns[-1] - data.ts_ns[0]) / _NS_PER_YEAR
    ppy = (len(data) - 1) / years if years > 0 else 252.0
    splits = purged_walk_forward(len(X), cfg.n_folds, cfg.horizon, cfg.embargo)
    report = walk_forward_report(
        X, y, fwd, splits, make_model, long_threshold=cfg.long_threshold,
        periods_per_year=ppy, horizon=cfg.horizon,
    )  # fmt: skip
    model = fit_final(X, y, make_model)
    names = [FEATURE_NAMES[i] for i in index]
    importances = ensemble_importances(model, names)
    version = registry.save(
        model,
        feature_names=names,
        params=params,
        data_hash=data.sha256(),
        metrics=report.to_dict(),
        train_period=(int(ts[0]), int(ts[-1])),
        extra={
            "train_config": cfg.model_dump(mode="json"),
            "data": data.name,
            "symbol": data.symbols[0],
            "n_rows": len(X),
            "low": X.min(axis=0).tolist(),
            "high": X.max(axis=0).tolist(),
            "periods_per_year": ppy,
            "importances": importances,
            **(extra or {}),
        },
        files=oos_files(report),
    )
    return TrainResult(
        version,
        report,
        len(X),
        names,
        int(ts[0]),
        int(ts[-1]),
        time.perf_counter() - t0,
        importances,
    )


def oos_files(report: WalkForwardReport) -> dict[str, bytes] | None:
    # the out-of-sample labels and probabilities the model page draws its ROC, calibration
    # and prediction charts from, binned to a size bounded by the folds (registry_oos.py); a
    # file beside the model, not in info.json: every listing reads info.json, and derived
    # versions copy its extra (a compressed model's own predictions differ)
    data = encode_report(report)
    return None if data is None else {OOS_FILE: data}


def ensemble_importances(model: EnsembleClassifier, names: list[str]) -> dict[str, float]:
    """Feature importances of a fitted ensemble: each member's importances (the forest's and
    LightGBM's ``feature_importances_``, the linear member's ``|coef|``) scaled to sum to 1,
    then averaged with the ensemble's weights. A reading aid, not a causal claim."""
    total = np.zeros(len(names))
    for weight, member in zip(model.weights_, model.members_.values(), strict=True):
        est = member.steps[-1][1] if hasattr(member, "steps") else member
        raw = getattr(est, "feature_importances_", None)
        if raw is None and hasattr(est, "coef_"):
            raw = np.abs(np.asarray(est.coef_, dtype=np.float64)).reshape(-1)
        if raw is None:
            continue
        values = np.asarray(raw, dtype=np.float64).reshape(-1)
        if values.size != len(names) or not np.all(np.isfinite(values)) or values.sum() <= 0:
            continue
        total += weight * values / values.sum()
    if total.sum() > 0:
        total /= total.sum()
    return {name: float(v) for name, v in zip(names, total, strict=True)}


def write_reports(
    result: TrainResult,
    directory: Path,
    *,
    y_true: np.ndarray | None = None,
    importances: dict[str, float] | None = None,
) -> tuple[Path, Path]:
    """Write the walk-forward report as HTML (interactive charts) and Markdown.

    The HTML page (one file, plotly.js inlined, opens offline) holds the fold table, the
    per-fold AUC and log loss, the distribution of the out-of-sample probabilities and, when
    their inputs are given, the ROC and calibration curves and the feature importances.

    Parameters
    ----------
    result : TrainResult
        The trained version.
    directory : Path
        Where ``VERSION.html`` and ``VERSION.md`` go (created when missing).
    y_true : np.ndarray or None
        Class labels of the out-of-sample rows, aligned with ``result.report.proba``, for
        the ROC and calibration curves (default: ``result.report.y_true``).
    importances : dict or None
        Feature name to importance of the final model (default: ``result.importances``).

    Returns
    -------
    (Path, Path)
        The HTML and the Markdown file.
    """
    from ultrathink.web.html import write_html

    directory.mkdir(parents=True, exist_ok=True)
    html_path = directory / f"{result.version}.html"
    md_path = directory / f"{result.version}.md"
    if y_true is None and result.report.y_true.size:
        y_true = result.report.y_true
    if importances is None and result.importances:
        importances = result.importances
    write_html(html_path, _report_page(result, y_true, importances))
    md_path.write_text(result.report.to_markdown(), encoding="utf-8")
    return html_path, md_path


def _report_page(
    result: TrainResult, y_true: np.ndarray | None, importances: dict[str, float] | None
) -> str:
    import html

    from ultrathink.models.report import describe_rule
    from ultrathink.web import charts
    from ultrathink.web.html import page

    report = result.report
    folds = [
        {"fold": f.name.removeprefix("fold "), "auc": f.auc, "log_loss": f.log_loss,
         "baseline_log_loss": f.baseline_log_loss}
        for f in report.folds
    ]  # fmt: skip
    importance = ("feature importances", "not available: the training result holds no fitted "
                  "model or importances", "")  # fmt: skip
    if importances:
        names = list(importances)
        fig = charts.importances_figure(names, [importances[n] for n in names])
        importance = (importance[0], "of the final model", charts.figure_div(fig, "importances"))
    oos = "out-of-sample rows of every fold"
    sections = [
        ("walk-forward folds", "out-of-sample AUC and log loss of each fold's model; the "
         "baseline predicts the training rows' class-1 rate",
         charts.figure_div(charts.folds_figure(folds), "folds")),
        *_label_sections(report, y_true),
        importance,
        ("prediction distribution", f"class-1 probability on the {oos} ({report.proba.size:,})",
         charts.figure_div(charts.prediction_distribution_figure(report.proba), "proba")),
    ]  # fmt: skip
    start, end = (str(np.datetime64(t, "ns"))[:19] for t in
                  (result.train_start_ns, result.train_end_ns))  # fmt: skip
    table = report.to_html()
    summary = (
        f"<p>{result.n_rows:,} rows from {start} to {end} (UTC), "
        f"{len(result.feature_names)} features, trained in {result.seconds:.1f} s.</p>"
        + table[table.index("<table>") : table.index("</table>") + len("</table>")]
        + f"<p class=note>{html.escape(describe_rule(report.rule))}</p>"
    )
    return page(f"model {result.version}: walk-forward report", summary, sections)


def _label_sections(
    report: WalkForwardReport, y_true: np.ndarray | None
) -> list[tuple[str, str, str]]:
    # ROC and calibration of the out-of-sample probabilities: they need the rows' labels
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import roc_curve

    from ultrathink.web import charts

    titles = ("ROC curve", "calibration")
    if y_true is None:
        why = ("not available: the training result holds the out-of-sample probabilities but "
               "not their labels")  # fmt: skip
        return [(t, why, "") for t in titles]
    y = np.asarray(y_true).reshape(-1)
    if y.shape != report.proba.shape:
        raise ConfigError(
            f"y_true has {y.size} labels for {report.proba.size} out-of-sample predictions; "
            "pass the labels at result.report.test_index"
        )
    if np.unique(y).size < 2:
        why = "not defined: the out-of-sample rows hold a single class"
        return [(t, why, "") for t in titles]
    curves = []
    bounds = np.cumsum([0] + [f.n_test for f in report.folds])
    for f, lo, hi in zip(report.folds, bounds[:-1], bounds[1:], strict=True):
        if np.unique(y[lo:hi]).size == 2:  # a single-class fold has no ROC curve
            fpr, tpr, _ = roc_curve(y[lo:hi], report.proba[lo:hi])
            curves.append((f.name, fpr, tpr, f.auc))
    fpr, tpr, _ = roc_curve(y, report.proba)
    curves.append(("all folds", fpr, tpr, report.overall.auc))
    positive, predicted = calibration_curve(y, report.proba, n_bins=10)
    return [
        (titles[0], "out of sample, per fold and over all folds",
         charts.figure_div(charts.roc_figure(curves), "roc")),
        (titles[1], "out of sample over all folds: the fraction of class 1 among rows in each "
         "of 10 equal-width probability bins against their mean prediction",
         charts.figure_div(charts.calibration_figure([("all folds", predicted, positive)]),
                           "calibration")),
    ]  # fmt: skip


@dataclass(frozen=True)
class TrainingSet:
    """A registered version with the rows it was trained on, rebuilt exactly.

    ``X``, ``y`` and ``fwd`` are the kept rows (as ``training_rows`` keeps them) on the
    version's features; ``splits`` are the purged walk-forward folds its report used;
    ``config`` is its ``TrainConfig`` with ``model_params`` set to the version's parameters.
    """

    model: Any
    info: Any
    data: MarketData
    config: TrainConfig
    X: np.ndarray
    y: np.ndarray
    fwd: np.ndarray
    ts_ns: np.ndarray
    splits: list[tuple[np.ndarray, np.ndarray]]
    periods_per_year: float


def training_set(model: Any, info: Any, data: MarketData) -> TrainingSet:
    """The ``TrainingSet`` of a loaded version ``info`` on ``data`` (already hash-checked)."""
    extra = info.extra or {}
    recorded = dict(extra.get("train_config") or {})
    recorded["model_params"] = dict(info.params)
    if recorded.get("features") is None and list(info.feature_names) != list(FEATURE_NAMES):
        recorded["features"] = tuple(info.feature_names)
    cfg = TrainConfig(**recorded)
    X, y, fwd, ts, _ = training_rows(data, cfg)
    splits = purged_walk_forward(len(X), cfg.n_folds, cfg.horizon, cfg.embargo)
    ppy = float(extra.get("periods_per_year", 252.0))
    return TrainingSet(model, info, data, cfg, X, y, fwd, ts, splits, ppy)
