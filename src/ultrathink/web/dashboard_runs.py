"""The run pages of the dashboard (``web/dashboard_app.py``): the run list with its filters, a
run's page (metrics, audit verdict, charts, positions, paged orders and fills), comparing two
runs, and the JSON and chart routes behind them.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response

from ultrathink.core.times import iso_ns
from ultrathink.persistence.records import RUN_KINDS, RUN_STATUSES
from ultrathink.web import browse, charts
from ultrathink.web.api_error import ApiError
from ultrathink.web.dashboard_kit import (
    _PAGING,
    DashboardConfig,
    _Caches,
    _chart,
    _figure,
    _Html,
    _json,
    _layout,
    _link,
    _note,
    _params,
    _pct,
    _run_id,
    _table,
    _text,
)

__all__ = ["run_chart_routes", "run_routes"]

_CHARTS = ("equity", "price", "monthly", "trades", "exposure")

_RUN_QUERY = {"strategy": _text, "mode": _text, "status": _text, "data": _text, "since": _text,
              "until": _text, **_PAGING}  # fmt: skip


def _run_filter(q: dict[str, Any]) -> browse.RunFilter:
    since_ns, until_ns = browse.day_bounds_ns(q["since"], q["until"])
    return browse.RunFilter(strategy=q["strategy"], kind=q["mode"], status=q["status"],
                            data_name=q["data"], since_ns=since_ns, until_ns=until_ns)  # fmt: skip


def run_routes(app: FastAPI, config: DashboardConfig, caches: _Caches) -> None:
    """The run list, a run's page and JSON, and comparing two runs."""

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


def run_chart_routes(app: FastAPI, config: DashboardConfig, caches: _Caches) -> None:
    """A run's charts and the compare chart, as plotly figure JSON."""

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
