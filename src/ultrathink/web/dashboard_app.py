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

The routes live by page: ``dashboard_runs`` (runs, a run, compare), ``dashboard_models``
(the registry, a version), ``dashboard_perf`` (benchmarks, profile); what they share (the
configuration, the layout, escaping, query parsing, caches) is in ``dashboard_kit``. This
module puts them together, with the assets and the error answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException
from starlette.middleware.gzip import GZipMiddleware

from ultrathink.errors import ConfigError, PersistenceError, UltrathinkError
from ultrathink.models.artifacts import ModelIntegrityError
from ultrathink.models.registry import ModelNotFoundError
from ultrathink.web import browse
from ultrathink.web.api_error import ApiError
from ultrathink.web.dashboard_kit import (
    _ASSET_CACHE,
    _SCRIPT,
    DashboardConfig,
    _Caches,
    _json,
    message_page,
)
from ultrathink.web.dashboard_models import model_routes
from ultrathink.web.dashboard_perf import perf_routes
from ultrathink.web.dashboard_runs import run_chart_routes, run_routes

__all__ = ["DashboardConfig", "create_app", "message_page"]

_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (ApiError, 400), (browse.NotFoundError, 404), (ModelNotFoundError, 404),
    (browse.StoreBusyError, 503), (ModelIntegrityError, 409), (ConfigError, 422),
    (PersistenceError, 503), (UltrathinkError, 400),
)  # fmt: skip


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
    run_routes(app, config, caches)
    run_chart_routes(app, config, caches)
    model_routes(app, config, caches)
    perf_routes(app, config)
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
