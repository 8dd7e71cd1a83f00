"""The model pages of the dashboard (``web/dashboard_app.py``): the registry's versions, and a
version's page (walk-forward folds, importances, ROC, calibration and prediction
distribution from its ``oos.npz``, lineage), the report ``train`` wrote (sandboxed), and
their JSON and chart routes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from ultrathink.web import browse, charts
from ultrathink.web.api_error import ApiError
from ultrathink.web.dashboard_kit import (
    _PAGE_HEADERS,
    DashboardConfig,
    _Caches,
    _chart,
    _e,
    _figure,
    _Html,
    _json,
    _layout,
    _link,
    _note,
    _params,
    _table,
    _text,
)

__all__ = ["model_routes"]

_OOS_CHARTS = ("roc", "calibration", "predictions")

_FOLD_COLUMNS = ("name", "n_train", "n_test", "positive_rate", "auc", "log_loss",
                 "baseline_log_loss", "accuracy", "baseline_accuracy", "sharpe",
                 "buy_hold_sharpe", "exposure_pct")  # fmt: skip

_SANDBOX = ("sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline' "
            "'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:")  # fmt: skip


def model_routes(app: FastAPI, config: DashboardConfig, caches: _Caches) -> None:
    """The registry's versions, a version's page, JSON, charts and training report."""

    registry = config.registry

    @app.get("/api/models")
    def api_models(request: Request) -> Response:
        _params(request)
        return _json({"registry": str(registry), "versions": browse.list_models(registry)})

    @app.get("/models")
    def models_page(request: Request) -> Response:
        _params(request)
        versions = browse.list_models(registry)
        rows = [(_link(f"/models/{v['version']}", v["version"]), "*" if v["production"] else "",
                 v["created"][:19], v["symbol"], f"{v['train_start']} … {v['train_end']}",
                 v["n_rows"], v["n_features"], v["auc"], v["log_loss"], v["sharpe"], v["kind"],
                 v["parent"]) for v in versions]  # fmt: skip
        headers = ("version", "prod", "created", "symbol", "train period", "rows", "features",
                   "OOS AUC", "OOS log loss", "OOS Sharpe", "made by", "parent")  # fmt: skip
        body = _table(headers, rows, left=5) if rows else _note(f"no versions in {registry}")
        return _layout(f"Models in {registry}", body)

    @app.get("/api/models/{version}")
    def api_model(request: Request, version: str) -> Response:
        _params(request)
        return _json(browse.model_detail(registry, version))

    @app.get("/api/models/{version}/charts/{name}")
    def model_chart(request: Request, version: str, name: str) -> Response:
        if name == "folds":
            _params(request)
            return _figure(charts.folds_figure(_fold_rows(browse.model_detail(registry, version))))
        if name in _OOS_CHARTS:
            _params(request)
            return _figure(_oos_figure(registry, version, name))
        if name != "importances":
            charts_ = ", ".join(("folds", "importances", *_OOS_CHARTS))
            raise ApiError(404, f"no chart {name[:40]!r}; charts: {charts_}")
        member = _params(request, member=_text)["member"]
        found = caches.model_importances(registry, version)
        members = found["members"]
        member = member or next(iter(sorted(members, key=lambda m: -members[m]["weight"])), None)
        if member not in members:
            raise ApiError(404, f"no member {str(member)[:40]!r}; members: {', '.join(members)}")
        fig = charts.importances_figure(found["features"], members[member]["values"])
        fig.update_layout(title={"text": f"{member}: {members[member]['kind']}"})
        return _figure(fig)

    @app.get("/models/{version}")
    def model_page(request: Request, version: str) -> Response:
        _params(request)
        detail = browse.model_detail(registry, version)
        try:
            report: str | None = str(browse.model_report(registry, version))
        except browse.NotFoundError:
            report = None
        return _layout(f"Model {version}", _model_body(version, detail, report))

    @app.get("/models/{version}/report")
    def model_report(request: Request, version: str) -> Response:
        # the file train wrote (plotly inlined): sandboxed, so its scripts reach nothing here
        _params(request)
        text = browse.model_report(registry, version).read_text(encoding="utf-8")
        return HTMLResponse(text, headers={**_PAGE_HEADERS, "Content-Security-Policy": _SANDBOX})


def _oos_figure(registry: Path, version: str, name: str) -> Any:
    # ROC, calibration or prediction distribution from the binned out-of-sample rows
    oos = browse.model_oos(registry, version)
    if oos is None:
        raise browse.NotFoundError(f"{version}: {browse.MISSING.format(file='oos.npz')}")
    if name == "predictions":
        edges, class1, class0 = oos.distribution()
        return charts.prediction_histogram_figure(
            edges, {f"class 1 rows ({int(class1.sum()):,})": class1,
                    f"class 0 rows ({int(class0.sum()):,})": class0}
        )  # fmt: skip
    if name == "calibration":
        predicted, positive, _ = oos.calibration(10)
        return charts.calibration_figure([("all folds", predicted, positive)])
    metrics = browse.model_detail(registry, version)
    aucs = {f.get("name"): f.get("auc") for f in metrics["folds"]}
    curves = []
    for i, fold in enumerate(oos.folds):
        found = oos.roc(i)
        if found is not None:  # a single-class fold has no ROC curve
            curves.append((fold, *found, _auc(aucs.get(fold))))
    found = oos.roc()
    if found is not None:
        curves.append(("all folds", *found, _auc((metrics["overall"] or {}).get("auc"))))
    return charts.roc_figure(curves)


def _auc(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else float("nan")


def _fold_rows(detail: dict[str, Any]) -> list[dict[str, Any]]:
    keys = ("auc", "log_loss", "baseline_log_loss", "accuracy", "baseline_accuracy", "sharpe")
    return [{"fold": f.get("name", i + 1), **{k: f.get(k) for k in keys}}
            for i, f in enumerate(detail["folds"])]  # fmt: skip


def _model_body(version: str, detail: dict[str, Any], report: str | None) -> str:
    info, lineage = detail["info"], detail["lineage"]
    folds = detail["folds"] + ([detail["overall"]] if detail["overall"] else [])
    columns = [c for c in _FOLD_COLUMNS if any(c in f for f in folds)]
    facts = [("production", "yes" if detail["production"] else "no"),
             ("created", info["created"]), ("model", info["model_class"]),
             ("train period", " … ".join(info["train_period"])),
             ("features", f"{len(info['feature_names'])}: {', '.join(info['feature_names'])}"),
             ("libraries", ", ".join(f"{k} {v}" for k, v in info["versions"].items()))]  # fmt: skip
    lineage_rows = [(k, v if not isinstance(v, dict | list) else orjson.dumps(v).decode())
                    for k, v in lineage.items()]  # fmt: skip
    lineage_rows += [(k, v if not isinstance(v, dict | list) else orjson.dumps(v).decode())
                     for k, v in info["extra"].items()]  # fmt: skip
    base = f"/api/models/{version}/charts"
    oos = _oos_sections(base, detail["oos"])
    if report is not None:
        oos += _Html(
            f'<p class="note">The report <code>train</code> wrote with the version ({_e(report)}; '
            "not among its hashed files) draws them from the rows themselves: "
            f"{_link(f'/models/{version}/report', 'open it')}.</p>"
        )
    return (
        _table(("", ""), facts)
        + "<h2>Walk-forward (out of sample)</h2>"
        + _table(columns, [[f.get(c) for c in columns] for f in folds])
        + _chart(f"{base}/folds")
        + "<h2>Feature importances</h2>"
        + _note("The fitted members' own in-sample importances, normalised to sum to 1 "
                "(?member=gbm|forest|linear; default: the member with the largest weight).")
        + _chart(f"{base}/importances")
        + oos + "<h2>Lineage and provenance</h2>" + _table(("field", "value"), lineage_rows)
    )  # fmt: skip


def _oos_sections(base: str, oos: dict[str, Any]) -> str:
    titles = ("ROC curve", "Calibration", "Prediction distribution")
    if not oos["stored"]:
        return "".join(f"<h2>{t}</h2>" + _note(oos["why"]) for t in titles)
    rows = f"{oos['n_rows']:,} out-of-sample rows of {oos['n_folds']} folds"
    return (
        f"<h2>{titles[0]}</h2>"
        + _note(f"Per fold and over all folds, on the {rows}. The registry keeps them binned "
                f"({oos['n_bins']:,} bins on the probabilities' 0.1 % quantiles): a step per "
                "bin, exact when there are fewer rows than bins; the AUCs are the version's "
                "own, computed on the rows.")
        + _chart(f"{base}/roc")
        + f"<h2>{titles[1]}</h2>"
        + _note("Over all folds: the fraction of class 1 among the rows of each of 10 "
                "equal-width probability bins against their mean prediction (exact).")
        + _chart(f"{base}/calibration")
        + f"<h2>{titles[2]}</h2>"
        + _note(f"Predicted class-1 probability on the {rows}, by true class (exact).")
        + _chart(f"{base}/predictions")
    )  # fmt: skip
