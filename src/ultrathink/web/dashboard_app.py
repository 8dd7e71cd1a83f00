"""The dashboard's app: small server-rendered pages and the JSON API they draw from.

Pages (HTML; every value escaped)::

    GET /                 redirect to /runs
    GET /runs             runs with filters (strategy, mode, status, data, since, until), paged
    GET /runs/{id}        metrics, audit verdict, charts, positions, orders and fills (paged)
    GET /compare?a=&b=    two runs' equity curves overlaid, their metrics side by side
    GET /models           registry versions
    GET /models/{v}       walk-forward folds, importances, ROC, calibration, predictions, lineage
    GET /models/{v}/report  the HTML report ``train`` wrote (sandboxed: its scripts reach
                          nothing of the dashboard)
    GET /perf             benchmark history with regressions, the latest profile

JSON (``/api/...``): the same data (``/api/runs``, ``/api/runs/{id}``, ``.../orders``,
``.../fills``, ``.../audit``, ``/api/compare``, ``/api/models``, ``/api/models/{v}``,
``/api/perf``) and every chart as plotly figure JSON (``/api/runs/{id}/charts/{equity,
price, monthly, trades, exposure}``, ``/api/compare/chart``, ``/api/models/{v}/charts/{folds,
importances, roc, calibration, predictions}``, ``/api/perf/charts/{history, stages}``),
drawn by ``web/charts.py``, which downsamples on the server. A page holds empty
``<div data-fig=URL>`` that ``/assets/dashboard.js`` fills with ``Plotly.newPlot``; plotly.js
itself comes from the installed wheel at ``/assets/plotly.min.js`` (cached for a year, its
version in the URL): no CDN.

Bad input never gets a 500: 400 for an unknown or repeated query parameter, 422 for a
value out of its rules, 404 for a run, model version or file that does not exist, 503 when
the store is locked by another process, 409 for a model whose files fail their hashes.
``/api/*`` answers ``{"error": message}``, a page a short HTML page with the message.
Authentication is not here: ``dashboard_server.LoginGate`` wraps this app.
"""

from __future__ import annotations

import html
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException
from starlette.middleware.gzip import GZipMiddleware

from ultrathink.core.times import iso_ns
from ultrathink.errors import ConfigError, PersistenceError, UltrathinkError
from ultrathink.models.artifacts import ModelIntegrityError
from ultrathink.models.registry import ModelNotFoundError
from ultrathink.persistence.records import RUN_KINDS, RUN_STATUSES
from ultrathink.web import browse, charts
from ultrathink.web.api_error import ApiError

__all__ = ["DashboardConfig", "create_app", "message_page"]

_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (ApiError, 400), (browse.NotFoundError, 404), (ModelNotFoundError, 404),
    (browse.StoreBusyError, 503), (ModelIntegrityError, 409), (ConfigError, 422),
    (PersistenceError, 503), (UltrathinkError, 400),
)  # fmt: skip
_CHARTS = ("equity", "price", "monthly", "trades", "exposure")
_OOS_CHARTS = ("roc", "calibration", "predictions")
_FOLD_COLUMNS = ("name", "n_train", "n_test", "positive_rate", "auc", "log_loss",
                 "baseline_log_loss", "accuracy", "baseline_accuracy", "sharpe",
                 "buy_hold_sharpe", "exposure_pct")  # fmt: skip
_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#24292f}
header{background:#24292f;padding:.55rem 1.5rem;display:flex;gap:1.3rem;align-items:baseline}
header a{color:#fff;text-decoration:none}header a.brand{font-weight:700;margin-right:1rem}
main{padding:.8rem 1.5rem 3rem;max-width:1400px}
h1{font-size:1.35rem}h2{font-size:1.1rem;margin-top:1.8rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:.4rem 0}
th,td{border:1px solid #d0d7de;padding:.2rem .5rem;text-align:right;white-space:nowrap}
th{background:#f6f8fa}.l{text-align:left}.chart{min-height:120px;margin:.4rem 0 1rem}
.note{color:#57606a;max-width:75rem}.ok{color:#1a7f37;font-weight:600}
.bad{color:#d1242f;font-weight:600}form{display:flex;flex-wrap:wrap;gap:.6rem;align-items:end}
label{display:flex;flex-direction:column;font-size:12px;color:#57606a}
"""
_SCRIPT = """"use strict";
function note(div, text) { div.classList.add("note"); div.textContent = text; }
function fetchJson(url) {
  return fetch(url, {credentials: "same-origin"})
    .then((r) => r.json().then((body) => [r.ok, body]));
}
function draw(div) {
  fetchJson(div.dataset.fig).then(([ok, body]) => {
    if (!ok) { note(div, body.error || "this chart cannot be drawn"); return; }
    div.textContent = "";
    Plotly.newPlot(div, body.data, body.layout, {responsive: true, displaylogo: false});
  }).catch((err) => note(div, "cannot load this chart: " + err));
}
function audit(div) {
  fetchJson(div.dataset.audit).then(([ok, body]) => {
    if (!ok) { note(div, body.error || "the audit cannot be verified"); return; }
    const verdict = document.createElement("span");
    verdict.className = body.ok ? "ok" : "bad";
    verdict.textContent = body.ok ? "verified" : "FAILED";
    const line = document.createElement("p");
    line.append(verdict, " " + body.message);
    div.replaceChildren(line);
    if (body.problems.length) {
      const list = document.createElement("ul");
      for (const text of body.problems.slice(0, 50)) {
        const item = document.createElement("li");
        item.textContent = text;
        list.append(item);
      }
      div.append(list);
    }
  }).catch((err) => note(div, "cannot verify the audit: " + err));
}
document.querySelectorAll("[data-fig]").forEach(draw);
document.querySelectorAll("[data-audit]").forEach(audit);
"""
_PAGE_HEADERS = {
    "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-eval'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'",
}  # fmt: skip
_ASSET_CACHE = "private, max-age=31536000, immutable"
_SANDBOX = ("sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline' "
            "'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:")  # fmt: skip


@dataclass(frozen=True)
class DashboardConfig:
    """What a dashboard shows.

    Attributes
    ----------
    db : Path
        The SQLite store (opened read-only for every request).
    registry : Path
        The model registry.
    bench_results : Path
        ``results.jsonl`` of ``ultrathink bench``.
    profile : Path
        ``profile.json`` of ``ultrathink profile``.
    """

    db: Path
    registry: Path
    bench_results: Path
    profile: Path


class _Html(str):
    """A fragment of HTML built here (its values already escaped): not escaped again."""


def _e(value: Any) -> str:
    return value if isinstance(value, _Html) else html.escape(_fmt(value))


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        return str(value)
    if isinstance(value, int | np.integer):
        return f"{value:,}"
    number = float(value)
    if not np.isfinite(number):
        return "n/a"
    return f"{number:,.2f}" if abs(number) >= 1000 else f"{number:.6g}"


def _link(href: str, text: Any) -> _Html:
    return _Html(f'<a href="{html.escape(href)}">{_e(text)}</a>')


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> _Html:
    def cells(tag: str, values: Sequence[Any]) -> str:
        return "".join(
            f"<{tag}{' class=l' if i < left else ''}>{_e(v)}</{tag}>" for i, v in enumerate(values)
        )

    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return _Html(f"<table><thead><tr>{cells('th', headers)}</tr></thead><tbody>{body}</tbody>"
                 "</table>")  # fmt: skip


def _chart(src: str) -> _Html:
    return _Html(f'<div class="chart" data-fig="{html.escape(src)}">loading…</div>')


def _note(text: str) -> _Html:
    return _Html(f'<p class="note">{html.escape(text)}</p>')


def _layout(title: str, body: str, status: int = 200) -> HTMLResponse:
    from plotly import __version__ as plotly_version

    nav = "".join(
        f'<a href="{href}">{name}</a>'
        for href, name in (("/runs", "Runs"), ("/compare", "Compare"), ("/models", "Models"),
                           ("/perf", "Performance"), ("/live", "Live"),
                           ("/logout", "Log out"))
    )  # fmt: skip
    text = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<link rel="icon" href="data:,"><title>{html.escape(title)} · ultrathink</title>'
        f"<style>{_CSS}</style></head><body><header>"
        f'<a class="brand" href="/runs">ULTRATHINK</a>{nav}</header><main>'
        f"<h1>{html.escape(title)}</h1>{body}</main>"
        f'<script src="/assets/plotly.min.js?v={plotly_version}"></script>'
        '<script src="/assets/dashboard.js?v=1"></script></body></html>'
    )
    return HTMLResponse(text, status, headers=_PAGE_HEADERS)


def message_page(title: str, message: str, status: int) -> HTMLResponse:
    """A small page that says one thing (errors, the login and logout pages)."""
    text = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title><style>{_CSS}</style></head><body><main><h1>{html.escape(title)}</h1>"
        f'<p class="note">{html.escape(message)}</p></main></body></html>'
    )
    return HTMLResponse(text, status, headers=_PAGE_HEADERS)


def _json(value: Any, status: int = 200) -> Response:
    # orjson: NaN and infinities become null, numpy values are serialised
    body = orjson.dumps(value, default=str,
                        option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)  # fmt: skip
    return Response(body, status, media_type="application/json",
                    headers={"Cache-Control": "no-store"})  # fmt: skip


def _figure(fig: Any) -> Response:
    return Response(charts.figure_json(fig), media_type="application/json",
                    headers={"Cache-Control": "no-store"})  # fmt: skip


# -- query parameters --------------------------------------------------------------------------

Parser = Callable[[str, str], Any]


def _int(lo: int, hi: int) -> Parser:
    def parse(name: str, text: str) -> int:
        if not (text.isascii() and text.lstrip("-").isdigit() and len(text) <= 12):
            raise ApiError(422, f"{name} must be an integer in {lo}..{hi}, was {text[:40]!r}")
        value = int(text)
        if not lo <= value <= hi:
            raise ApiError(422, f"{name} must be in {lo}..{hi}, was {value}")
        return value

    return parse


def _text(name: str, text: str) -> str:
    if len(text) > 500:
        raise ApiError(422, f"{name} must be at most 500 characters, was {len(text)}")
    return text


def _params(request: Request, **spec: Parser) -> dict[str, Any]:
    query = request.query_params
    unknown = sorted(set(query) - set(spec))
    if unknown:
        accepted = ", ".join(spec) or "none"
        raise ApiError(400, f"unknown query parameter {unknown[0][:40]!r}; accepted: {accepted}")
    out: dict[str, Any] = {}
    for name, parse in spec.items():
        values = query.getlist(name)
        if len(values) > 1:
            raise ApiError(400, f"query parameter {name!r} was given {len(values)} times; once")
        out[name] = parse(name, values[0]) if values and values[0] != "" else None
    return out


def _run_id(text: str) -> int:
    return int(_int(1, 2**62)("run id", text))


_PAGING = {"page": _int(1, 10**9), "limit": _int(1, browse.MAX_PAGE_ROWS)}
_RUN_QUERY = {"strategy": _text, "mode": _text, "status": _text, "data": _text, "since": _text,
              "until": _text, **_PAGING}  # fmt: skip


def _run_filter(q: dict[str, Any]) -> browse.RunFilter:
    since_ns, until_ns = browse.day_bounds_ns(q["since"], q["until"])
    return browse.RunFilter(strategy=q["strategy"], kind=q["mode"], status=q["status"],
                            data_name=q["data"], since_ns=since_ns, until_ns=until_ns)  # fmt: skip


# -- the app -----------------------------------------------------------------------------------


class _Caches:
    """What is worth keeping between requests: reloaded prices, plotly.js, importances."""

    def __init__(self) -> None:
        self.prices = browse.RunPrices()
        self.lock = threading.Lock()
        self.plotly_js: bytes | None = None
        self.importances: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def plotly(self) -> bytes:
        with self.lock:
            if self.plotly_js is None:
                from plotly.offline import get_plotlyjs

                self.plotly_js = get_plotlyjs().encode()
            return self.plotly_js

    def model_importances(self, registry: Path, version: str) -> dict[str, Any]:
        # a version's files never change once written: keep the last few (unpickling is slow)
        with self.lock:
            found = self.importances.get(version)
        if found is None:
            found = browse.model_importances(registry, version)
            with self.lock:
                self.importances[version] = found
                while len(self.importances) > 8:
                    self.importances.popitem(last=False)
        return found


def _error_answer(request: Request, exc: Exception) -> Response:
    status = next((s for kind, s in _STATUS if isinstance(exc, kind)), 500)
    if isinstance(exc, ApiError):
        status, message = exc.status, exc.message
    elif isinstance(exc, HTTPException):
        status, message = exc.status_code, f"{exc.detail}: {request.url.path[:200]}"
    else:
        message = str(exc) if status != 500 else f"internal error: {exc!r}"
    if request.url.path.startswith("/api/"):
        return _json({"error": message}, status)
    return message_page({404: "Not found", 503: "Store busy"}.get(status, "Error"), message, status)


async def _handle(request: Request, exc: Exception) -> Response:
    return _error_answer(request, exc)


def create_app(config: DashboardConfig, *, routes: Sequence[Any] = ()) -> FastAPI:
    """Build the dashboard's pages and JSON API over ``config``'s store, registry and files.

    Parameters
    ----------
    config : DashboardConfig
        What to show.
    routes : sequence of fastapi.APIRouter or starlette routes
        More routes served by the same app, behind the same login (the live pages of
        ``web/live.py``); they come after this module's own.

    Returns
    -------
    FastAPI
        The ASGI app, without authentication: serve it behind ``dashboard_server.LoginGate``.
    """
    app = FastAPI(title="ultrathink dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(GZipMiddleware, minimum_size=1024)  # plotly.js: 4.8 MB, 1.4 MB gzipped
    for kind in (ApiError, HTTPException, UltrathinkError, Exception):
        app.add_exception_handler(kind, _handle)
    caches = _Caches()
    _asset_routes(app, caches)
    _run_routes(app, config, caches)
    _run_chart_routes(app, config, caches)
    _model_routes(app, config, caches)
    _perf_routes(app, config)
    for extra in routes:
        if isinstance(extra, APIRouter):
            app.include_router(extra)
        else:
            app.router.routes.append(extra)
    return app


def _asset_routes(app: FastAPI, caches: _Caches) -> None:
    @app.get("/")
    def home() -> Response:
        return RedirectResponse("/runs", status_code=303)

    @app.get("/assets/plotly.min.js")
    def plotly_js() -> Response:
        return Response(caches.plotly(), media_type="text/javascript",
                        headers={"Cache-Control": _ASSET_CACHE})  # fmt: skip

    @app.get("/assets/dashboard.js")
    def dashboard_js() -> Response:
        return Response(_SCRIPT, media_type="text/javascript",
                        headers={"Cache-Control": _ASSET_CACHE})  # fmt: skip


# -- runs --------------------------------------------------------------------------------------


def _run_routes(app: FastAPI, config: DashboardConfig, caches: _Caches) -> None:
    db = config.db

    @app.get("/api/runs")
    def api_runs(request: Request) -> Response:
        q = _params(request, **_RUN_QUERY)
        return _json(browse.list_runs(db, _run_filter(q), q["page"] or 1, q["limit"] or 50))

    @app.get("/runs")
    def runs_page(request: Request) -> Response:
        q = _params(request, **_RUN_QUERY)
        listed = browse.list_runs(db, _run_filter(q), q["page"] or 1, q["limit"] or 50)
        body = _filter_form(q, browse.run_facets(db)) + _runs_table(listed)
        body += _pager(request, "page", listed)
        return _layout(f"Runs in {db.name}", body)

    @app.get("/api/runs/{run_id}")
    def api_run(request: Request, run_id: str) -> Response:
        _params(request)
        return _json(browse.run_detail(db, _run_id(run_id)))

    @app.get("/api/runs/{run_id}/orders")
    def api_orders(request: Request, run_id: str) -> Response:
        q = _params(request, **_PAGING)
        return _json(browse.orders_page(db, _run_id(run_id), q["page"] or 1, q["limit"] or 50))

    @app.get("/api/runs/{run_id}/fills")
    def api_fills(request: Request, run_id: str) -> Response:
        q = _params(request, **_PAGING)
        return _json(browse.fills_page(db, _run_id(run_id), q["page"] or 1, q["limit"] or 50))

    @app.get("/api/runs/{run_id}/audit")
    def api_audit(request: Request, run_id: str) -> Response:
        _params(request)
        status = browse.audit_status(db, _run_id(run_id))
        return _json({**status, "message": _audit_text(status)})

    @app.get("/runs/{run_id}")
    def run_page(request: Request, run_id: str) -> Response:
        q = _params(request, orders_page=_PAGING["page"], fills_page=_PAGING["page"],
                    limit=_PAGING["limit"], symbol=_text)  # fmt: skip
        rid = _run_id(run_id)
        detail = browse.run_detail(db, rid)
        limit = q["limit"] or 50
        orders = browse.orders_page(db, rid, q["orders_page"] or 1, limit)
        fills = browse.fills_page(db, rid, q["fills_page"] or 1, limit)
        body = _run_body(rid, detail, q["symbol"], caches)
        body += "<h2>Orders</h2>" + _rows_table(orders) + _pager(request, "orders_page", orders)
        body += "<h2>Fills</h2>" + _rows_table(fills) + _pager(request, "fills_page", fills)
        run = detail["run"]
        return _layout(f"Run {rid}: {run['strategy']} on {run['data_name']}", body)

    @app.get("/api/compare")
    def api_compare(request: Request) -> Response:
        a, b = _pair(request)
        return _json({"a": browse.run_detail(db, a), "b": browse.run_detail(db, b)})

    @app.get("/compare")
    def compare_page(request: Request) -> Response:
        q = _params(request, a=_text, b=_text)
        form = _compare_form(q)
        if q["a"] is None or q["b"] is None:
            return _layout("Compare two runs", form + _note("Pick two run ids."))
        a, b = _run_id(q["a"]), _run_id(q["b"])
        da, dba = browse.run_detail(db, a), browse.run_detail(db, b)
        chart = _chart(f"/api/compare/chart?a={a}&b={b}")
        body = form + chart + "<h2>Metrics</h2>" + _side_by_side(a, da, b, dba)
        return _layout(f"Run {a} vs run {b}", body)


def _pair(request: Request) -> tuple[int, int]:
    q = _params(request, a=_text, b=_text)
    if q["a"] is None or q["b"] is None:
        raise ApiError(422, "compare needs two run ids: ?a=ID&b=ID")
    return _run_id(q["a"]), _run_id(q["b"])


def _audit_text(status: dict[str, Any]) -> str:
    counts = ", ".join(f"{n:,} {what}" for what, n in status["counts"].items())
    text = (
        f"{status['n_rows']:,} audit rows; chain and tables "
        f"{'agree' if status['ok'] else 'disagree'} ({counts}); head "
        f"#{status['head_seq']} {status['head_hash'][:16]}…"
    )
    if status["anchored"] is not None:
        text += ("; the head this run published is in the chain" if status["anchored"]
                 else "; the head this run published is NOT in the chain")  # fmt: skip
    mine = len(status["run_problems"])
    if not status["ok"]:
        text += f"; {len(status['problems'])} problem(s) in the store, {mine} naming this run"
    return text


def _filter_form(q: dict[str, Any], facets: dict[str, list[str]]) -> _Html:
    def select(name: str, label: str, options: Sequence[str]) -> str:
        opts = "".join(
            f"<option{' selected' if q[name] == o else ''}>{html.escape(o)}</option>"
            for o in options
        )
        return f'<label>{label}<select name="{name}"><option value="">any</option>{opts}</select>' \
               "</label>"  # fmt: skip

    def day(name: str) -> str:
        value = html.escape(q[name] or "")
        return f'<label>{name}<input type="date" name="{name}" value="{value}"></label>'

    return _Html(
        '<form method="get" action="/runs">'
        + select("strategy", "strategy", facets["strategy"]) + select("mode", "mode", RUN_KINDS)
        + select("status", "status", RUN_STATUSES) + select("data", "data", facets["data_name"])
        + day("since") + day("until") + '<button type="submit">filter</button>'
        '<a href="/runs">clear</a></form>'
    )  # fmt: skip


def _runs_table(listed: dict[str, Any]) -> _Html:
    rows = [
        (_link(f"/runs/{r['run_id']}", r["run_id"]), r["kind"], r["strategy"], r["data_name"],
         r["status"], r["started"][:19].replace("T", " "), r["final_equity"],
         _pct(r["total_return"]), r["sharpe"], _pct(r["max_drawdown"]), r["n_trades"])
        for r in listed["rows"]
    ]  # fmt: skip
    headers = ("run", "mode", "strategy", "data", "status", "started (UTC)", "final equity",
               "return", "Sharpe", "max DD", "trades")  # fmt: skip
    shown = f"{listed['total']:,} run(s) match; newest first."
    return _Html(_note(shown) + (_table(headers, rows, left=6) if rows else ""))


def _pct(value: Any) -> str | None:
    return None if value is None else f"{100 * value:.2f}%"


def _pager(request: Request, param: str, page: dict[str, Any]) -> _Html:
    def href(n: int) -> str:
        query = dict(request.query_params)
        query[param] = str(n)
        return f"?{urlencode(query)}"

    parts = [f"page {page['page']:,} of {page['pages']:,} ({page['total']:,} rows)"]
    if page["page"] > 1:
        parts.insert(0, str(_link(href(page["page"] - 1), "← previous")))
    if page["page"] < page["pages"]:
        parts.append(str(_link(href(page["page"] + 1), "next →")))
    return _Html(f'<nav class="note">{" · ".join(parts)}</nav>')


def _rows_table(page: dict[str, Any]) -> _Html:
    if not page["rows"]:
        return _note("none on this page")
    headers = list(page["rows"][0])
    rows = [[iso_ns(v)[:19] if k.endswith("_ns") and v else v for k, v in r.items()]
            for r in page["rows"]]  # fmt: skip
    return _table([h.removesuffix("_ns") for h in headers], rows, left=len(headers))


def _run_body(rid: int, detail: dict[str, Any], symbol: str | None, caches: _Caches) -> str:
    run = detail["run"]
    params = ", ".join(f"{k}={v}" for k, v in run["params"].items()) or "defaults"
    facts = [
        ("mode", run["kind"]), ("status", run["status"]), ("params", params),
        ("data", run["data_name"]), ("data hash", run["data_hash"]),
        ("started / ended (UTC)", f"{run['started']} / {run['ended'] or 'running'}"),
        ("equity points", f"{detail['n_equity_points']:,} ({detail['first']} … {detail['last']})"),
        ("orders / fills", f"{detail['n_orders']:,} / {detail['n_fills']:,}"),
        ("code version", run["code_version"]),
    ]  # fmt: skip
    base = f"/api/runs/{rid}/charts"
    sym = f"?{urlencode({'symbol': symbol})}" if symbol else ""
    positions = [(p["symbol"], p["quantity"], p["avg_price"], p["realized_pnl"], p["last_price"])
                 for p in detail["positions"]]  # fmt: skip
    return (
        _table(("", ""), facts)
        + "<h2>Audit trail</h2>"
        + f'<div data-audit="/api/runs/{rid}/audit">verifying the store…</div>'
        + "<h2>Metrics</h2>" + _table(("metric", "value"), detail["metrics"])
        + "<h2>Equity, drawdown, time under water</h2>" + _chart(f"{base}/equity")
        + "<h2>Fills on the price</h2>" + _chart(f"{base}/price{sym}")
        + "<h2>Monthly returns</h2>" + _chart(f"{base}/monthly")
        + "<h2>PnL of closed trades</h2>"
        + _note("Round trips rebuilt from the run's fills by the engine's Portfolio.")
        + _chart(f"{base}/trades")
        + "<h2>Exposure</h2>"
        + _note("(equity − cash) / equity: the net market value of the positions.")
        + _chart(f"{base}/exposure")
        + "<h2>Positions</h2>"
        + _table(("symbol", "quantity", "avg price", "realized PnL", "last price"), positions)
    )  # fmt: skip


def _compare_form(q: dict[str, Any]) -> _Html:
    a, b = (html.escape(q[k] or "") for k in ("a", "b"))
    return _Html(
        f'<form method="get" action="/compare"><label>run a<input name="a" value="{a}" size="6">'
        f'</label><label>run b<input name="b" value="{b}" size="6"></label>'
        '<button type="submit">compare</button></form>'
    )


def _side_by_side(a: int, da: dict[str, Any], b: int, db_: dict[str, Any]) -> _Html:
    left, right = dict(da["metrics"]), dict(db_["metrics"])
    names = list(dict.fromkeys([*left, *right]))
    rows: list[tuple[Any, ...]] = [
        ("strategy", da["run"]["strategy"], db_["run"]["strategy"]),
        ("data", da["run"]["data_name"], db_["run"]["data_name"]),
    ]
    rows += [(n, left.get(n), right.get(n)) for n in names]
    return _table(("metric", _link(f"/runs/{a}", f"run {a}"), _link(f"/runs/{b}", f"run {b}")),
                  rows)  # fmt: skip


# -- run charts --------------------------------------------------------------------------------


def _run_chart_routes(app: FastAPI, config: DashboardConfig, caches: _Caches) -> None:
    db = config.db

    @app.get("/api/runs/{run_id}/charts/{name}")
    def run_chart(request: Request, run_id: str, name: str) -> Response:
        if name not in _CHARTS:
            raise ApiError(404, f"no chart {name[:40]!r}; charts: {', '.join(_CHARTS)}")
        q = _params(request, symbol=_text) if name == "price" else _params(request)
        rid = _run_id(run_id)
        if name == "price":
            return _figure(_price_figure(db, rid, q["symbol"], caches))
        if name == "trades":
            return _figure(charts.trade_pnl_figure(browse.trade_pnls(db, rid)))
        ts, equity, cash = browse.equity_curve(db, rid)
        if name == "equity":
            return _figure(charts.equity_figure(ts, equity))
        if name == "monthly":
            return _figure(charts.monthly_returns_figure(ts, equity))
        ratio = browse.exposure(equity, cash)
        title = "net position value / equity (%)"
        return _figure(charts.exposure_figure(ts, ratio, y_title=title))

    @app.get("/api/compare/chart")
    def compare_chart(request: Request) -> Response:
        a, b = _pair(request)
        curves = []
        for rid in (a, b):
            ts, equity, _ = browse.equity_curve(db, rid)
            curves.append((f"run {rid}", ts, equity))
        return _figure(charts.compare_equity_figure(curves))


def _price_figure(db: Path, rid: int, symbol: str | None, caches: _Caches) -> Any:
    fills = browse.symbol_fills(db, rid)
    try:
        data, reason = caches.prices.get(db, rid), ""
    except browse.NotFoundError as exc:
        data, reason = None, str(exc)
    symbols = list(data.symbols) if data is not None else list(fills)
    if symbol is not None and symbol not in symbols and symbol not in fills:
        raise ApiError(404, f"run {rid} has no symbol {symbol[:40]!r}; it has {symbols}")
    symbol = symbol or next((s for s in symbols if s in fills), symbols[0] if symbols else "")
    ts = close = np.empty(0)
    if data is not None and symbol in data.symbols:
        mask = data.symbol_idx == data.symbols.index(symbol)
        ts, close = data.ts_ns[mask], data.close[mask]
    fig = charts.price_fills_figure(ts, close, fills.get(symbol, []), symbol=symbol)
    others = [s for s in symbols if s != symbol]
    if reason or others:
        text = reason or f"other symbols (?symbol=…): {', '.join(others[:20])}"
        fig.update_layout(title={"text": html.escape(text[:200]), "font": {"size": 11}})
    return fig


# -- models ------------------------------------------------------------------------------------


def _model_routes(app: FastAPI, config: DashboardConfig, caches: _Caches) -> None:
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


# -- performance -------------------------------------------------------------------------------


def _perf_routes(app: FastAPI, config: DashboardConfig) -> None:
    @app.get("/api/perf")
    def api_perf(request: Request) -> Response:
        _params(request)
        return _json({"bench": _or_error(browse.bench_history, config.bench_results),
                      "profile": _or_error(browse.latest_profile, config.profile)})  # fmt: skip

    @app.get("/api/perf/charts/history")
    def history_chart(request: Request) -> Response:
        _params(request)
        history = browse.bench_history(config.bench_results)
        return _figure(charts.bench_history_figure(history["records"], history["regressions"]))

    @app.get("/api/perf/charts/stages")
    def stages_chart(request: Request) -> Response:
        runs = browse.latest_profile(config.profile)["runs"]
        index = _params(request, run=_int(1, max(1, len(runs))))["run"] or 1
        if not runs:
            raise browse.NotFoundError("the profile holds no engine run")
        return _figure(charts.stage_shares_figure(runs[index - 1]))

    @app.get("/perf")
    def perf_page(request: Request) -> Response:
        _params(request)
        body = "<h2>Benchmark history</h2>" + _bench_section(config.bench_results)
        body += "<h2>Latest profile</h2>" + _profile_section(config.profile)
        return _layout("Performance", body)


def _or_error(read: Callable[[Path], dict[str, Any]], path: Path) -> dict[str, Any]:
    try:
        return read(path)
    except browse.NotFoundError as exc:
        return {"error": str(exc)}


def _bench_section(path: Path) -> str:
    try:
        history = browse.bench_history(path)
    except browse.NotFoundError as exc:
        return _note(str(exc))
    regressions = [(r["name"], r["base_commit"], r["commit"], _pct(r["slowdown"]), r["p_value"],
                    r["reason"]) for r in history["regressions"]]  # fmt: skip
    other = [(name, commit) for name, commit in history["other"].items()]
    return (
        _note(f"{len(history['records']):,} `ultrathink bench` results in {path}; each is "
              "judged against the previous result of its benchmark on the same CPU with the "
              "test of `bench --compare`; every result it flags is marked with a red cross "
              "where it happened in the history.")
        + _chart("/api/perf/charts/history")
        + (_table(("benchmark", "from", "to", "slower by", "p", "verdict"), regressions)
           if regressions else _note("No regression between consecutive results."))
        + (_note(f"{len(other)} other benchmark record(s) (pytest budgets: no common measure "
                 "to draw), latest commit each:") + _table(("name", "commit"), other, left=2)
           if other else "")
        + (_note(f"{history['bad_lines']} unreadable line(s) skipped.") if history["bad_lines"]
           else "")
    )  # fmt: skip


def _profile_section(path: Path) -> str:
    try:
        profile = browse.latest_profile(path)
    except browse.NotFoundError as exc:
        return _note(str(exc))
    parts: list[str] = [_note(f"From {path}: {len(profile['runs'])} engine run(s).")]
    for i, run in enumerate(profile["runs"], start=1):
        stages = {**run.get("calls", {}), **run.get("stages", {})}
        rows = [(b["stage"], _pct(b["share"]), *(stages.get(b["stage"], {}).get(k) for k in
                 ("p50_us", "p90_us", "p99_us", "p99.9_us", "max_us", "count")))
                for b in run.get("bottleneck", [])]  # fmt: skip
        parts.append(f"<h3>run {html.escape(str(run.get('label', i)))} "
                     f"({html.escape(str(run.get('strategy', '')))}): "
                     f"{_fmt(run.get('n_sampled_bars'))} of {_fmt(run.get('n_bars'))} bars "
                     "timed</h3>")  # fmt: skip
        parts.append(_chart(f"/api/perf/charts/stages?run={i}"))
        parts.append(_table(("stage", "share", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs",
                             "max µs", "n"), rows))  # fmt: skip
    return "".join(parts)
