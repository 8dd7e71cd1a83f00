"""The performance page of the dashboard (``web/dashboard_app.py``): the benchmark history with
every regression ``bench --compare``'s rule flags, and the latest profile.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from ultrathink.web import browse, charts
from ultrathink.web.dashboard_kit import (
    DashboardConfig,
    _chart,
    _figure,
    _fmt,
    _int,
    _json,
    _layout,
    _note,
    _params,
    _pct,
    _table,
)

__all__ = ["perf_routes"]


def perf_routes(app: FastAPI, config: DashboardConfig) -> None:
    """The performance page, its JSON and its charts."""

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
