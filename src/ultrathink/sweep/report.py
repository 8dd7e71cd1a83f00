"""What a finished sweep says: its best points, their robustness, and an HTML report.

Robustness of a point: the mean and the worst of the metric over its grid neighbours (the
points one grid step away in one or more parameters, same data and window). A best point
whose neighbours are much worse sits on a spike, and is likely fitted noise.
"""

from __future__ import annotations

import html
import itertools
import math
from pathlib import Path
from typing import Any

from ultrathink.errors import ConfigError
from ultrathink.sweep.store import PointRow, SweepRecord

#: metrics where smaller is better; every other is maximised
_SMALLER_IS_BETTER = frozenset({"max_drawdown", "max_drawdown_duration_bars", "volatility"})


def sign(metric: str) -> float:
    return -1.0 if metric in _SMALLER_IS_BETTER else 1.0


def value(row: PointRow, metric: str) -> float:
    if row.metrics is None:
        return math.nan
    v = row.metrics.get(metric)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan


def check_metric(rows: list[PointRow], metric: str) -> None:
    ok = next((r for r in rows if r.metrics is not None), None)
    if ok is not None and metric not in ok.metrics:  # type: ignore[operator]
        names = ", ".join(sorted(k for k, v in ok.metrics.items()  # type: ignore[union-attr]
                                 if isinstance(v, int | float)))  # fmt: skip
        raise ConfigError(f"--metric {metric!r} is not a metric of a run; the metrics: {names}")


def best(rows: list[PointRow], metric: str, grid: dict[str, list[Any]], n: int = 5
         ) -> list[dict[str, Any]]:  # fmt: skip
    """The ``n`` best points by ``metric`` (ties broken by enumeration order), each with its
    neighbours' mean and worst value."""
    s = sign(metric)
    scored = [r for r in rows if not math.isnan(value(r, metric))]
    scored.sort(key=lambda r: (-s * value(r, metric), r.seq))
    index = {(r.data, r.window, _key(r.params, grid)): r for r in rows}
    out = []
    for r in scored[:n]:
        neigh = [value(x, metric) for x in _neighbours(r, grid, index)]
        neigh = [v for v in neigh if not math.isnan(v)]
        out.append({
            "point_id": r.point_id, "data": r.data, "window": r.window, "params": r.params,
            "value": value(r, metric),
            "n_trades": (r.metrics or {}).get("n_trades"),
            "neighbours": len(neigh),
            "neighbours_mean": sum(neigh) / len(neigh) if neigh else None,
            "neighbours_worst": (min(neigh) if s > 0 else max(neigh)) if neigh else None,
        })  # fmt: skip
    return out


def _key(params: dict[str, Any], grid: dict[str, list[Any]]) -> tuple[Any, ...]:
    return tuple(params.get(k) for k in grid)


def _neighbours(r: PointRow, grid: dict[str, list[Any]], index: dict[Any, PointRow]
                ) -> list[PointRow]:  # fmt: skip
    pos = []
    for name, values in grid.items():
        try:
            pos.append(values.index(r.params[name]))
        except ValueError:
            return []
    out = []
    for delta in itertools.product((-1, 0, 1), repeat=len(pos)):
        if not any(delta):
            continue
        idx = [p + d for p, d in zip(pos, delta, strict=True)]
        if any(i < 0 or i >= len(v) for i, v in zip(idx, grid.values(), strict=True)):
            continue
        key = tuple(v[i] for i, v in zip(idx, grid.values(), strict=True))
        hit = index.get((r.data, r.window, key))
        if hit is not None:
            out.append(hit)
    return out


def render(record: SweepRecord, rows: list[PointRow], metric: str, x: str | None,
           y: str | None) -> str:  # fmt: skip
    """The sweep's HTML report: summary, best points with robustness, the heatmap over two
    parameters (the best value over the others, data and windows), the metric's distribution."""
    import plotly.graph_objects as go

    from ultrathink.web.html import page

    grid = record.spec.grid
    names = list(grid)
    x = x or names[0]
    y = y or (names[1] if len(names) > 1 else None)
    for axis in (x, y):
        if axis is not None and axis not in grid:
            raise ConfigError(f"--x/--y {axis!r} is not a --grid name ({', '.join(names)})")
    s = sign(metric)
    values = [value(r, metric) for r in rows]
    sections: list[tuple[str, str, str]] = []
    top = best(rows, metric, grid, n=10)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in
                   [*names, "data", "window", metric, "trades", "neighbours mean",
                    "neighbours worst"])  # fmt: skip
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in
                         [*(b["params"][n] for n in names), b["data"], b["window"], b["value"],
                          b["n_trades"], b["neighbours_mean"], b["neighbours_worst"]]) + "</tr>"
        for b in top
    )  # fmt: skip
    sections.append((
        "best points", "robustness: the metric of each point's grid neighbours (one step in "
        "any parameter, same data and window); a best point far above its neighbours is "
        "likely fitted noise", f"<table><tr>{head}</tr>{body}</table>",
    ))  # fmt: skip
    if y is not None:
        xs, ys = grid[x], grid[y]
        cell: dict[tuple[Any, Any], float] = {}
        for r, v in zip(rows, values, strict=True):
            if math.isnan(v):
                continue
            k = (r.params[x], r.params[y])
            cell[k] = v if k not in cell else (max if s > 0 else min)(cell[k], v)
        z = [[cell.get((a, b)) for a in xs] for b in ys]
        fig = go.Figure(go.Heatmap(x=xs, y=ys, z=z, colorscale="RdYlGn" if s > 0 else "RdYlGn_r",
                                   colorbar={"title": metric}))  # fmt: skip
        fig.update_layout(xaxis_title=x, yaxis_title=y, height=480)
        note = ("the best value over the other parameters, data and windows; empty cells: "
                "excluded by --where or failed")  # fmt: skip
        chart = fig.to_html(full_html=False, include_plotlyjs=False)
        sections.append((f"{metric} over {x} x {y}", note, chart))
    finite = [v for v in values if not math.isnan(v)]
    fig = go.Figure(go.Histogram(x=finite, nbinsx=min(60, max(10, len(finite) // 5))))
    fig.update_layout(xaxis_title=metric, yaxis_title="points", height=380)
    sections.append((f"distribution of {metric}", f"{len(finite)} points with a value",
                     fig.to_html(full_html=False, include_plotlyjs=False)))  # fmt: skip
    failed = [r for r in rows if r.error is not None]
    summary = (
        "<table>"
        + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in [
            ("strategy", record.spec.strategy), ("grid", _grid_text(grid)),
            ("where", record.spec.where or "—"), ("data", ", ".join(record.spec.data)),
            ("windows", record.spec.windows), ("points", f"{len(rows)} of {record.n_points}"),
            ("failed", len(failed)), ("status", record.status), ("backend", record.backend),
            ("elapsed", f"{record.elapsed_s:.1f} s"),
        ])
        + "</table>"
    )  # fmt: skip
    return page(f"sweep {record.sweep_id}", summary, sections)


def write(path: Path, record: SweepRecord, rows: list[PointRow], metric: str,
          x: str | None = None, y: str | None = None) -> Path:  # fmt: skip
    from ultrathink.web.html import write_html

    if path.is_dir() or path.suffix.lower() not in (".html", ".htm"):
        path = path / f"sweep-{record.sweep_id}.html"
    return write_html(path, render(record, rows, metric, x, y))


def _grid_text(grid: dict[str, list[Any]]) -> str:
    return ", ".join(f"{k}: {len(v)} values ({v[0]}…{v[-1]})" for k, v in grid.items())


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
