"""The result of ``compress``: one report row per lever, speed, the budget, the final fit.

``assemble`` fits the search's final recipe (and every lever's candidate, for its size) on
all rows, measures the float32-threshold lever (never applied), adds compiled latency and
throughput (``measure_speed``) and sums it up in a ``Compression``: the rows, the lineage
record of each lever and the budget checks. Sizes are ``len(pickle.dumps(model))``: the bytes
``ModelRegistry.save`` writes.
"""

from __future__ import annotations

import json
import pickle
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ultrathink.models.compiled import CompiledEnsemble
from ultrathink.models.compiled_kernels import THRESHOLD
from ultrathink.models.compress_recipe import Recipe, fit_recipe, version_of
from ultrathink.models.compress_search import Outcome, Score, Search, walk_forward
from ultrathink.models.ensemble import EnsembleClassifier
from ultrathink.models.training import WalkForwardReport


@dataclass(frozen=True)
class LeverRow:
    """One row of the report: a lever's measured candidate (or the model before/after)."""

    lever: str
    status: str  # before | applied | rejected | n/a | measured | final
    change: str
    bytes: int | None = None
    auc: float | None = None
    log_loss: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    rows_per_s: float | None = None


@dataclass(frozen=True)
class Compression:
    """What ``compress`` found: the report rows, the compressed model and its lineage."""

    parent: str
    max_auc_loss_pct: float
    rows: list[LeverRow]
    levers: dict[str, dict[str, Any]]
    recipe: Recipe
    model: EnsembleClassifier
    report: WalkForwardReport
    budget: dict[str, Any]
    recorded_auc: float | None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (NaN becomes None)."""
        out = {
            "parent": self.parent,
            "max_auc_loss_pct": self.max_auc_loss_pct,
            "rows": [vars(row) for row in self.rows],
            "levers": self.levers,
            "params": self.recipe.params,
            "distilled": self.recipe.teacher is not None,
            "budget": self.budget,
            "recorded_auc": self.recorded_auc,
        }
        return json.loads(json.dumps(out, default=json_default), parse_constant=lambda _: None)


def json_default(value: Any) -> Any:
    """``json.dumps`` default: NumPy scalars and arrays, tuples; anything else as text."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, tuple | np.ndarray):
        return list(value)
    return str(value)


def assemble(search: Search, outcomes: list[Outcome], speed: bool) -> Compression:
    """Fit the levers' candidates and the final recipe on all rows; sum up the search."""
    ts = search.ts
    built: dict[str, EnsembleClassifier] = {}

    def build(recipe: Recipe) -> EnsembleClassifier:
        if recipe.key() not in built:
            built[recipe.key()] = fit_recipe(recipe, ts.X, ts.y)
        return built[recipe.key()]

    final = build(search.current)
    entries: list[tuple[LeverRow, Any]] = [
        (_row("before", "before", "the parent, refitted per fold", ts.model, search.baseline),
         ts.model)
    ]  # fmt: skip
    for o in outcomes:
        model = build(o.recipe) if o.recipe is not None else None
        entries.append((_row(o.lever, o.status, o.change, model, o.score), model))
    float32 = _float32_outcome(final, ts.X, search.current_score)
    entries.append((float32, None))
    entries.append((_row("final", "final", "fitted on all rows", final, search.current_score),
                    final))  # fmt: skip
    rows = _with_speed(entries, ts.X) if speed else [row for row, _ in entries]
    levers = {o.lever: _lineage_record(o) for o in outcomes}
    levers["float32_thresholds"] = {
        "applied": False,
        "status": "measured",
        "change": float32.change,
    }
    recorded = ((ts.info.metrics or {}).get("overall") or {}).get("auc") if ts.info else None
    return Compression(
        parent=version_of(ts), max_auc_loss_pct=search.max_loss_pct, rows=rows, levers=levers,
        recipe=search.current, model=final, report=walk_forward(ts, search.current_score.proba),
        budget=_budget(rows, search.max_loss_pct), recorded_auc=recorded,
    )  # fmt: skip


def _row(lever: str, status: str, change: str, model: Any, score: Score | None) -> LeverRow:
    size = len(pickle.dumps(model, pickle.HIGHEST_PROTOCOL)) if model is not None else None
    auc = score.auc if score else None
    return LeverRow(lever, status, change, size, auc, score.log_loss if score else None)


def _lineage_record(o: Outcome) -> dict[str, Any]:
    out: dict[str, Any] = {"applied": o.status == "applied", "status": o.status, "change": o.change}
    if o.score is not None:
        out.update(auc=o.score.auc, log_loss=o.score.log_loss)
    return {**out, **o.record}


def _float32_outcome(model: EnsembleClassifier, X: np.ndarray, score: Score) -> LeverRow:
    compiled = CompiledEnsemble.from_ensemble(model)
    n_gbm, _ = compiled.n_trees
    first_forest = int(compiled.tree_i[0, n_gbm]) if n_gbm < compiled.tree_i.shape[1] else None
    thr = compiled.node_f[THRESHOLD].copy()
    rounded = thr.astype(np.float32).astype(np.float64)
    if first_forest is not None:  # forest: the largest float32 <= t decides as t does
        above = rounded[first_forest:] > thr[first_forest:]
        rounded[first_forest:][above] = np.nextafter(
            rounded[first_forest:][above].astype(np.float32), np.float32(-np.inf)
        )
    node_f = compiled.node_f.copy()
    node_f[THRESHOLD] = rounded
    quantised = CompiledEnsemble(compiled.node_i, node_f, compiled.tree_i, compiled.params)
    diff = np.abs(quantised.predict_batch(X) - compiled.predict_batch(X))
    tables = sum(a.nbytes for a in (compiled.node_i, compiled.node_f, compiled.tree_i))
    n_nodes = compiled.node_i.shape[1]
    change = (
        f"compiled tables {tables:,} → {tables - 4 * n_nodes:,} bytes, "
        f"{int(np.count_nonzero(diff))} of {X.shape[0]:,} rows changed (max |Δp| "
        f"{float(diff.max()):.1e}); not applied: the stored artefact would not shrink and "
        "float32 LightGBM thresholds break parity"
    )
    same = not np.any(diff)  # identical predictions: identical scores
    auc, log_loss = (score.auc, score.log_loss) if same else (None, None)
    return LeverRow("float32_thresholds", "measured", change, None, auc, log_loss)


def _with_speed(entries: list[tuple[LeverRow, Any]], X: np.ndarray) -> list[LeverRow]:
    models = [m for _, m in entries if m is not None]
    figures = dict(zip(map(id, models), measure_speed(models, X), strict=True))
    out = []
    for row, model in entries:
        if model is not None:
            p50, p99, rate = figures[id(model)]
            row = replace(row, p50_us=p50, p99_us=p99, rows_per_s=rate)
        out.append(row)
    return out


def measure_speed(
    models: list[Any], X: np.ndarray, *, n_calls: int = 3_000, n_rounds: int = 3
) -> list[tuple[float, float, float]]:
    """Compiled single-row p50/p99 (µs) and batch rows/s of each model, rounds interleaved.

    Calls run back to back (service time); the models take turns each round so that a
    noisy neighbour slows them alike. Batch: ``predict_batch`` on 32,768 rows, one thread.
    """
    compiled = [CompiledEnsemble.from_ensemble(m) for m in models]
    rows = np.ascontiguousarray(X[: min(len(X), 1024)], dtype=np.float64)
    batch = np.ascontiguousarray(np.resize(rows, (32_768, rows.shape[1])))
    samples: list[list[float]] = [[] for _ in compiled]
    rates: list[list[float]] = [[] for _ in compiled]
    clock = time.perf_counter_ns
    for c in compiled:
        c.warmup()
    for _ in range(n_rounds):
        for i, c in enumerate(compiled):
            predict = c.predict_row
            for j in range(n_calls // n_rounds):
                t0 = clock()
                predict(rows[j % rows.shape[0]])
                samples[i].append((clock() - t0) / 1e3)
            t0 = clock()
            c.predict_batch(batch)
            rates[i].append(batch.shape[0] / ((clock() - t0) / 1e9))
    return [
        (float(np.percentile(s, 50)), float(np.percentile(s, 99)), float(np.median(r)))
        for s, r in zip(samples, rates, strict=True)
    ]


def _budget(rows: list[LeverRow], max_loss_pct: float) -> dict[str, Any]:
    before, final = rows[0], rows[-1]
    assert before.bytes and final.bytes and before.auc and final.auc is not None
    smaller = 100.0 * (1.0 - final.bytes / before.bytes)
    loss = 100.0 * (before.auc - final.auc) / before.auc
    out: dict[str, Any] = {
        "bytes_before": before.bytes, "bytes_after": final.bytes, "smaller_pct": smaller,
        "size_ok": smaller >= 50.0, "auc_before": before.auc, "auc_after": final.auc,
        "auc_loss_pct": loss, "auc_ok": loss <= max_loss_pct + 1e-9,
    }  # fmt: skip
    if before.p50_us and final.p50_us and before.rows_per_s and final.rows_per_s:
        out.update(
            p50_us_before=before.p50_us, p50_us_after=final.p50_us,
            p50_ratio=final.p50_us / before.p50_us,
            rows_per_s_ratio=final.rows_per_s / before.rows_per_s,
        )  # fmt: skip
        out["latency_ok"] = out["p50_ratio"] <= 1.0 and out["rows_per_s_ratio"] >= 1.0
    return out
