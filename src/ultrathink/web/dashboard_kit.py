"""What every page of the dashboard shares (``web/dashboard_app.py``): the configuration, the
page layout (CSS, the script that draws ``<div data-fig=URL>`` charts, the headers), HTML
fragments whose values are escaped once, JSON and figure answers, query-parameter parsing
(400 for an unknown or repeated parameter, 422 for a value out of its rules) and the caches
kept between requests.
"""

from __future__ import annotations

import html
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from ultrathink.web import browse, charts
from ultrathink.web.api_error import ApiError

__all__ = [
    "DashboardConfig",
    "message_page",
]

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


def _pct(value: Any) -> str | None:
    return None if value is None else f"{100 * value:.2f}%"


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
