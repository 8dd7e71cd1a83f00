"""``ultrathink features select``: a registered version in, a selected version out.

Loads and verifies the version with the exact rows and folds it was trained on
(``services.version_training_set``), runs the selection of ``selection.py`` on them,
registers a version trained on the kept features with its lineage (not promoted), and times
the single-row inference of both models side by side.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ultrathink.errors import ConfigError
from ultrathink.models.metrics import StrategyRule
from ultrathink.optimization.selection import (
    Problem,
    Selection,
    SelectionConfig,
    fold_se,
    select_features,
)

# --- single-row latency -------------------------------------------------------------------


def row_latency_us(
    models: dict[str, Any],
    rows: dict[str, np.ndarray],
    *,
    n_calls: int = 20_000,
    n_warmup: int = 2_000,
    n_rounds: int = 5,
) -> dict[str, dict[str, float]]:
    """Median and p99 of ``predict_row`` per compiled model, in microseconds.

    The models take turns in ``n_rounds`` rounds (a noisy machine slows them alike), each
    call timed on its own with ``perf_counter_ns`` on the next of ``rows[name]`` (real
    feature rows on that model's columns), after ``n_warmup`` untimed calls.
    """
    clock = time.perf_counter_ns
    samples: dict[str, list[np.ndarray]] = {name: [] for name in models}
    for name, model in models.items():
        data = rows[name]
        for i in range(n_warmup):
            model.predict_row(data[i % data.shape[0]])
    per_round = max(1, n_calls // n_rounds)
    for _ in range(n_rounds):
        for name, model in models.items():
            data, out = rows[name], np.empty(per_round, dtype=np.int64)
            predict = model.predict_row
            for i in range(per_round):
                row = data[i % data.shape[0]]
                t0 = clock()
                predict(row)
                out[i] = clock() - t0
            samples[name].append(out)
    result = {}
    for name, parts in samples.items():
        ns = np.concatenate(parts)
        p50, p99 = np.percentile(ns, [50, 99]) / 1e3
        result[name] = {"p50_us": float(p50), "p99_us": float(p99), "n": float(ns.size)}
    return result


def contiguous_rows(X: np.ndarray, limit: int = 4_096) -> np.ndarray:
    """The last ``limit`` rows of ``X`` as a C-contiguous float64 array (rows for timing)."""
    return np.ascontiguousarray(X[-limit:], dtype=np.float64)


# --- the command: a registered version in, a selected version out ----------------------


@dataclass(frozen=True)
class SelectRequest:
    """What ``features select`` was asked (``data``…: only when the version has no source)."""

    version: str
    registry: str | None = None
    data: str | None = None
    start: str | None = None
    end: str | None = None
    symbol: str | None = None
    config: SelectionConfig = field(default_factory=SelectionConfig)
    register: bool = True
    latency_calls: int = 20_000


@dataclass(frozen=True)
class SelectOutcome:
    """A selection, the version it registered (or None) and the single-row latencies."""

    parent: str
    selection: Selection
    version: str | None
    latency_us: dict[str, dict[str, float]]
    report: str | None
    seconds: float
    registered: dict[str, Any] | None = None  # the new version's own walk-forward figures

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the decision, every importance, the figures before and after."""
        sel = self.selection
        metrics = {m: sel.summary(m) for m in ("auc", "log_loss", "accuracy")}
        return {
            "parent": self.parent,
            "version": self.version,
            "config": sel.config.model_dump(),
            "kept": list(sel.kept),
            "dropped": list(sel.dropped),
            "n_features": {"before": len(sel.names), "after": len(sel.kept)},
            "reduction_pct": sel.reduction_pct,
            "fallback": sel.fallback,
            "metrics": metrics,
            "loss": sel.loss,
            "loss_se": sel.loss_se,
            "target_met": sel.target_met,
            "latency_us": self.latency_us,
            "features": [imp.to_dict() for imp in sel.features],
            "clusters": [imp.to_dict() for imp in sel.clusters],
            "steps": list(sel.steps),
            "report": self.report,
            "registered": self.registered,
            "seconds": self.seconds,
        }


def run_selection(request: SelectRequest) -> SelectOutcome:
    """Load and verify ``request.version`` with its training rows, select its features,
    register a version trained on the kept ones (not promoted) and time both models."""
    from ultrathink import services

    t0 = time.perf_counter()
    registry = services.registry_root(request.registry)
    version = _resolve(registry, request.version)
    ts = services.version_training_set(
        registry, version, request.data, request.start, request.end, request.symbol
    )
    problem = _problem(ts)
    selection = select_features(problem, request.config)
    new_version, report, after_model, own = None, None, None, None
    if request.register:
        new_version, report, after_model, own = _register(ts, registry, version, selection, request)
    else:
        from ultrathink.models.training import fit_final

        columns = [problem.names.index(n) for n in selection.kept]
        after_model = fit_final(ts.X[:, columns], ts.y, problem.make_model)
    latency = _latency(ts, problem, selection, after_model, request.latency_calls)
    return SelectOutcome(
        version, selection, new_version, latency, report, time.perf_counter() - t0, own
    )


def _resolve(registry: Any, version: str) -> str:
    if version != "production":
        return version
    from ultrathink import services

    production = services.model_registry(registry).production()
    if production is None:
        raise ConfigError("VERSION production: no version is in production; name a version")
    return str(production)


def _problem(ts: Any) -> Problem:
    from ultrathink.models.ensemble import EnsembleClassifier

    params = dict(ts.config.model_params)
    cfg = ts.config
    rule = StrategyRule(cfg.long_threshold, None, ts.periods_per_year, cfg.horizon)
    names = tuple(ts.info.feature_names)
    if len(names) < 2:
        raise ConfigError(
            f"model {ts.info.version} uses {len(names)} feature; there is nothing to select"
        )
    return Problem(ts.X, ts.y, ts.splits, names, lambda: EnsembleClassifier(**params),
                   ts.fwd, rule)  # fmt: skip


def _register(
    ts: Any, registry: Any, parent: str, selection: Selection, request: SelectRequest
) -> tuple[str, str, Any, dict[str, Any]]:
    from ultrathink.models.pipeline import train, write_reports
    from ultrathink.models.registry import ModelRegistry

    cfg = selection.config
    parent_extra = dict(ts.info.extra or {})
    source = parent_extra.get("source") or {
        "data": request.data, "start": request.start, "end": request.end,
        "symbol": request.symbol,
    }  # fmt: skip
    lineage = {
        "kind": "select",
        "parent": parent,
        "data_sha256": ts.info.data_hash,
        "method": cfg.method,
        "scoring": cfg.scoring,
        "n_repeats": cfg.n_repeats,
        "seed": cfg.seed,
        "min_t": cfg.min_t,
        "dropped": list(selection.dropped),
        "kept": list(selection.kept),
    }
    extra: dict[str, Any] = {"lineage": lineage, "source": source}
    if "decision" in parent_extra:  # a tuned entry threshold belongs to the model's use
        extra["decision"] = parent_extra["decision"]
    reg = ModelRegistry(registry)
    result = train(ts.data, ts.config.model_copy(update={"features": selection.kept}), reg,
                   extra=extra)  # fmt: skip
    html, _ = write_reports(result, registry / "reports")
    folds = result.report.folds
    own: dict[str, Any] = {"n_rows": result.n_rows}
    for metric in ("auc", "log_loss", "accuracy"):
        values = [getattr(f, metric) for f in folds]
        own[metric] = {"mean": float(np.mean(values)), "se": fold_se(values)}
    return result.version, str(html), reg.load(result.version).model, own


def _latency(
    ts: Any, problem: Problem, selection: Selection, after_model: Any, n_calls: int
) -> dict[str, dict[str, float]]:
    from ultrathink.models.compiled import CompiledEnsemble

    columns = [problem.names.index(n) for n in selection.kept]
    models = {"before": CompiledEnsemble.from_ensemble(ts.model),
              "after": CompiledEnsemble.from_ensemble(after_model)}  # fmt: skip
    for model in models.values():
        model.warmup()
    rows = {"before": contiguous_rows(ts.X), "after": contiguous_rows(ts.X[:, columns])}
    return row_latency_us(models, rows, n_calls=n_calls, n_warmup=max(100, n_calls // 10))
