"""Charts of the performance page (``web/charts.py``): the benchmark history across commits
with its regressions marked, and the profiler's stage shares and percentiles.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ultrathink.web.chart_kit import (
    COLORS,
    SERIES,
    _empty,
    _finish,
    _note,
    _numeric,
)

__all__ = [
    "bench_history_figure",
    "stage_shares_figure",
]


def bench_history_figure(
    records: Sequence[Mapping[str, Any]], regressions: Sequence[Any] = ()
) -> go.Figure:
    """One series per benchmark across commits, relative to its first commit shown.

    Parameters
    ----------
    records : sequence of dict
        Lines of ``.bench/results.jsonl`` in file order; those with a ``name``, a ``commit``
        and a numeric ``median`` (``ultrathink bench`` results) are drawn, the last one per
        commit and benchmark. Quick-mode results are their own series.
    regressions : sequence of str or dict
        Regressions to mark. A dict with an integer ``"index"`` (a regression of
        ``web.browse.bench_history``: ``records[index]`` judged against its predecessor) is
        marked on that record's point, anywhere in the history. Names, or
        ``Comparison.to_dict()`` results of ``bench --compare`` (those whose verdict status
        is ``"regression"``), which judge the working tree, are marked on the benchmark's
        latest point.

    Notes
    -----
    Values are in time terms, as ``perf/stats.py`` judges a slowdown: ``median / first`` for
    a time (lower is better), ``first / median`` for a throughput; above 1 is slower.
    """
    series: dict[str, dict[str, Mapping[str, Any]]] = {}
    commits: list[str] = []
    latest: dict[str, tuple[str, str]] = {}
    placed: dict[int, tuple[str, str]] = {}
    for i, rec in enumerate(records):
        median, commit = rec.get("median"), rec.get("commit")
        if not (isinstance(rec.get("name"), str) and isinstance(commit, str) and _numeric(median)):
            continue
        key = rec["name"] + (" (quick)" if rec.get("mode") == "quick" else "")
        x = commit[:10] + ("+dirty" if rec.get("dirty") else "")
        if x not in commits:
            commits.append(x)
        series.setdefault(key, {})[x] = rec
        latest[rec["name"]] = placed[i] = (key, x)
    if not series:
        return _empty("no benchmark results with a median (run `ultrathink bench`)")
    fig = go.Figure()
    firsts: dict[str, Mapping[str, Any]] = {}
    for i, (key, points) in enumerate(series.items()):
        xs = [c for c in commits if c in points]
        firsts[key] = points[xs[0]]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=[_ratio(points[x], firsts[key]) for x in xs],
                mode="lines+markers",
                name=key,
                line={"color": SERIES[i % len(SERIES)]},
                text=[_bench_hover(points[c]) for c in xs],
                hovertemplate="%{text}<extra>" + key + "</extra>",
            )
        )
    marks, unplaced = _regression_marks(records, regressions, placed, latest, series)
    if marks:
        fig.add_trace(
            go.Scatter(
                x=[x for _, x, _, _ in marks],
                y=[_ratio(rec, firsts[key]) for key, _, rec, _ in marks],
                mode="markers",
                name="regression (bench --compare)",
                marker={"symbol": "x", "size": 13, "color": COLORS["drawdown"]},
                text=[text for _, _, _, text in marks],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    if unplaced:
        _note(fig, "regressions with no recorded result: " + ", ".join(unplaced))
    fig.add_hline(y=1.0, line_dash="dot", line_color=COLORS["reference"])
    fig.update_layout(
        xaxis={"title": {"text": "commit"}, "type": "category"},
        yaxis_title="vs first commit shown (time terms: above 1 is slower)",
    )
    return _finish(fig, height=460, hovermode="closest")


def _regression_marks(
    records: Sequence[Mapping[str, Any]],
    regressions: Sequence[Any],
    placed: Mapping[int, tuple[str, str]],
    latest: Mapping[str, tuple[str, str]],
    series: Mapping[str, Mapping[str, Mapping[str, Any]]],
) -> tuple[list[tuple[str, str, Mapping[str, Any], str]], list[str]]:
    # (series key, commit, the record marked, hover text) of each regression; unplaced names
    marks: list[tuple[str, str, Mapping[str, Any], str]] = []
    seen: set[tuple[str, str]] = set()
    for item in regressions:
        index = item.get("index") if isinstance(item, Mapping) else None
        if isinstance(index, int) and index in placed:
            key, x = placed[index]
            if (key, x) not in seen:
                seen.add((key, x))
                marks.append((key, x, records[index], _regression_hover(key, item)))
    flagged = _regression_names(
        [r for r in regressions if not (isinstance(r, Mapping) and "index" in r)]
    )
    for name in flagged:
        if name in latest and latest[name] not in seen:
            key, x = latest[name]
            seen.add((key, x))
            marks.append((key, x, series[key][x], f"{key}: regression"))
    return marks, [n for n in flagged if n not in latest]


def _regression_hover(key: str, item: Mapping[str, Any]) -> str:
    slowdown, p_value = item.get("slowdown"), item.get("p_value")
    text = f"{key}: regression"
    if _numeric(slowdown):
        text += f", {slowdown:.1%} slower"
    if isinstance(item.get("base_commit"), str):
        text += f" than {item['base_commit'][:10]}"
    if _numeric(p_value):
        text += f" (p={p_value:.2g})"
    return text


def stage_shares_figure(stages: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> go.Figure:
    """The profiler's stages: share of the loop time, and p50/p90/p99 per call.

    ``stages`` is a run profile as ``Profiler.to_json()`` returns it (its ``bottleneck``
    rows, with percentiles from its ``stages`` and ``calls``), or rows ``{"stage", "share",
    "p50_us", "p90_us", "p99_us"}`` (percentiles optional).
    """
    rows = _stage_rows(stages)
    if not rows:
        return _empty("no sampled bars")
    rows.sort(key=lambda r: -float(r.get("share") or 0.0))
    names = [str(r["stage"]) for r in rows]
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        horizontal_spacing=0.04,
        subplot_titles=(
            "share of the estimated loop time (%)",
            "µs per sampled bar, or per call (log scale)",
        ),
    )
    shares = [100.0 * float(r.get("share") or 0.0) for r in rows]
    fig.add_trace(
        go.Bar(
            x=shares,
            y=names,
            orientation="h",
            marker_color=COLORS["equity"],
            name="share",
            showlegend=False,
            texttemplate="%{x:.1f} %",
            textposition="auto",
        ),
        row=1,
        col=1,
    )
    for i, p in enumerate(("p50", "p90", "p99")):
        xs = [r.get(f"{p}_us") for r in rows]
        fig.add_trace(
            go.Scatter(
                x=[x if _numeric(x) and x > 0 else None for x in xs],
                y=names,
                mode="markers",
                name=p,
                marker={"size": 9, "color": SERIES[i]},
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(type="log", row=1, col=2)
    fig.update_layout(legend={"yanchor": "top", "y": -0.06, "x": 0.52})  # below the µs panel
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    return _finish(fig, height=max(280, 100 + 32 * len(rows)), hovermode="closest")


def _ratio(rec: Mapping[str, Any], first: Mapping[str, Any]) -> float | None:
    # the record against its series' first point, in time terms (a throughput is inverted)
    num, den = float(rec["median"]), float(first["median"])
    if not rec.get("lower_is_better", True):  # a throughput: slower is smaller
        num, den = den, num
    return num / den if den and math.isfinite(num / den) else None


def _bench_hover(rec: Mapping[str, Any]) -> str:
    when = rec.get("date_utc") or rec.get("time") or ""
    return (
        f"{rec.get('commit', '')[:10]} {when}<br>median {rec['median']:.6g} {rec.get('unit', '')}"
    )


def _regression_names(regressions: Sequence[Any]) -> list[str]:
    names: list[str] = []
    for raw in regressions:
        item = raw.to_dict() if hasattr(raw, "to_dict") else raw  # a perf.compare.Comparison
        if isinstance(item, str):
            names.append(item)
            continue
        verdict = item.get("verdict") if isinstance(item, Mapping) else None
        status = verdict.get("status") if isinstance(verdict, Mapping) else None
        if status == "regression" and isinstance(item.get("name"), str):
            names.append(item["name"])
    return list(dict.fromkeys(names))


def _stage_rows(stages: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if not isinstance(stages, Mapping):
        return [dict(r) for r in stages if "stage" in r]
    summaries = {**stages.get("calls", {}), **stages.get("stages", {})}
    rows = []
    for row in stages.get("bottleneck", []):
        summary = summaries.get(row["stage"], {})
        rows.append({**{k: summary.get(k) for k in ("p50_us", "p90_us", "p99_us")}, **row})
    return rows
