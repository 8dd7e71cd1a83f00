"""One self-contained HTML report per study (it opens offline: plotly.js is inlined once).

Optuna's own plotly figures show the search (history, parameter importances, parallel
coordinates, slices, and the Pareto front of a multi-objective study); the rest are this
project's: in-sample versus out-of-sample per walk-forward window, the Deflated Sharpe Ratio
against the Sharpe ratios of all trials, and the PBO's logit distribution with the
out-of-sample versus in-sample degradation.
"""

from __future__ import annotations

import html
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ultrathink.optimization.overfitting import return_moments
from ultrathink.optimization.trials import StudyOutcome, trial_returns
from ultrathink.web.html import page, write_html


def write_report(study: Any, outcome: StudyOutcome, path: Path) -> Path:
    """Write the report of ``study`` to ``path`` (a directory gets ``STUDY.html``)."""
    if path.is_dir() or path.suffix.lower() not in (".html", ".htm"):
        path = path / f"{_safe(outcome.study_name)}.html"
    return write_html(path, render(study, outcome))


def render(study: Any, outcome: StudyOutcome) -> str:
    """The report as one HTML page."""
    sections: list[tuple[str, str, str]] = []  # (title, note, figure html)
    for title, note, make in _figures(study, outcome):
        try:
            with warnings.catch_warnings():  # Optuna's notes on experimental features
                warnings.simplefilter("ignore")
                fig = make()
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # too few trials, …
            sections.append((title, f"not available: {exc}", ""))
            continue
        if fig is None:
            continue
        fig.update_layout(height=420, margin={"l": 60, "r": 20, "t": 40, "b": 50})
        sections.append((title, note, fig.to_html(full_html=False, include_plotlyjs=False)))
    return page(f"study {outcome.study_name}", _summary(outcome), sections)


def _summary(outcome: StudyOutcome) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in outcome.counts.items())
    rows = [
        ("kind", outcome.kind),
        ("storage", outcome.storage),
        ("objectives", ", ".join(f"{o} ({d})" for o, d in
                                 zip(outcome.objectives, outcome.directions, strict=True))),
        ("trials", counts),
        ("reproducible", "yes (seeded, sequential)" if outcome.reproducible else "no"),
    ]  # fmt: skip
    if outcome.dsr:
        rows.append(("deflated Sharpe ratio", f"{outcome.dsr['dsr']:.3f}"))
    if outcome.pbo:
        rows.append(("probability of backtest overfitting", f"{outcome.pbo['pbo']:.3f}"))
    if outcome.registered:
        rows.append(("registered", f"model {outcome.registered['version']}"))
    table = "".join(
        f"<tr><th>{html.escape(k)}</th><td style=text-align:left>{html.escape(str(v))}</td></tr>"
        for k, v in rows
    )
    best = "".join(
        f"<tr><td>{r['trial']}</td><td style=text-align:left>"
        f"{html.escape(', '.join(f'{k}={_fmt(v)}' for k, v in r['params'].items()))}</td>"
        + "".join(f"<td>{_fmt(r['in_sample'].get(o))}</td>" for o in outcome.objectives)
        + "</tr>"
        for r in outcome.best
    )
    head = "".join(f"<th>{html.escape(o)}</th>" for o in outcome.objectives)
    warnings = "".join(f"<p class=warn>warning: {html.escape(w)}</p>" for w in outcome.warnings)
    title = "winner" if len(outcome.best) == 1 else "Pareto front"
    return (
        f"<table>{table}</table>{warnings}<h2>{title}</h2>"
        f"<table><tr><th>trial</th><th>params</th>{head}</tr>{best}</table>"
    )


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


Figure = Callable[[], Any]


def _figures(study: Any, outcome: StudyOutcome) -> list[tuple[str, str, Figure]]:
    import optuna.visualization as vis

    multi = len(outcome.objectives) > 1
    target: dict[str, Any] = {}
    if multi:
        target = {
            "target": lambda t: t.values[0],
            "target_name": outcome.objectives[0],
        }
    first = outcome.objectives[0]
    importance = dict(target)
    if multi and outcome.directions[0] == "maximize":  # the evaluator assumes lower is better
        importance["target"] = lambda t: -t.values[0]
    figures: list[tuple[str, str, Figure]] = [
        ("optimisation history", f"{first} of every completed trial and the best so far",
         lambda: vis.plot_optimization_history(study, **target)),
        ("parameter importances", f"how much each parameter moves {first} (Optuna's "
         "default importance evaluator)",
         lambda: vis.plot_param_importances(study, **importance)),
        ("parallel coordinates", "each line is a completed trial",
         lambda: vis.plot_parallel_coordinate(study, **target)),
        ("slices", f"{first} against each parameter", lambda: vis.plot_slice(study, **target)),
    ]  # fmt: skip
    if multi:
        names = list(outcome.objectives[:3])
        figures.append(
            ("Pareto front", "trials no other trial beats on every objective",
             lambda: vis.plot_pareto_front(study, target_names=names)),
        )  # fmt: skip
    figures += [
        ("in sample vs out of sample, per window", _window_note(outcome),
         lambda: _window_figure(outcome)),
        ("deflated Sharpe ratio", "per-period Sharpe ratio of every completed trial; the "
         "dashed line is the best a set of worthless trials this size would reach",
         lambda: _dsr_figure(study, outcome)),
        ("probability of backtest overfitting", "left: the logit of the in-sample winner's "
         "out-of-sample rank per CSCV split (left of 0: below the median, overfit); right: "
         "out-of-sample vs in-sample Sharpe of the winner per split, with the fitted line",
         lambda: _pbo_figure(outcome)),
    ]  # fmt: skip
    return figures


def _window_note(outcome: StudyOutcome) -> str:
    if outcome.kind == "model":
        return (
            "nested walk-forward: per fold, the trial best on the earlier folds (in sample) "
            "and its score on this fold (out of sample)"
        )
    return "per window, the trial best in sample and what it earned out of sample"


def _window_figure(outcome: StudyOutcome) -> Any:
    import plotly.graph_objects as go

    if not outcome.walk_forward:
        return None
    labels = [str(w["window"]) for w in outcome.walk_forward]
    fig = go.Figure()
    fig.add_bar(name="in sample", x=labels, y=[w["in_sample"] for w in outcome.walk_forward])
    fig.add_bar(
        name="out of sample", x=labels, y=[w["out_of_sample"] for w in outcome.walk_forward]
    )
    fig.update_layout(
        barmode="group", xaxis_title="fold" if outcome.kind == "model" else "window",
        yaxis_title=outcome.objectives[0],
    )  # fmt: skip
    return fig


def _dsr_figure(study: Any, outcome: StudyOutcome) -> Any:
    import optuna
    import plotly.graph_objects as go

    if outcome.dsr is None:
        return None
    done = optuna.trial.TrialState.COMPLETE
    trials = study.get_trials(deepcopy=False)
    series = [trial_returns(t) for t in trials if t.state == done]
    sharpes = [return_moments(r).sharpe for r in series if r is not None]
    sharpes = [s for s in sharpes if math.isfinite(s)]
    fig = go.Figure(go.Histogram(x=sharpes, name="trials", nbinsx=30))
    fig.add_vline(x=outcome.dsr["expected_max_sharpe"], line_dash="dash",
                  annotation_text="expected max of worthless trials")  # fmt: skip
    fig.add_vline(x=outcome.dsr["sharpe"], line_color="red",
                  annotation_text=f"winner (DSR {outcome.dsr['dsr']:.2f})")  # fmt: skip
    fig.update_layout(xaxis_title="per-period Sharpe ratio", yaxis_title="trials")
    return fig


def _pbo_figure(outcome: StudyOutcome) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    detail = outcome.pbo_detail
    if detail is None:
        return None
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        f"logits (PBO {detail.pbo:.2f})", "degradation"))  # fmt: skip
    fig.add_trace(go.Histogram(x=detail.logits, nbinsx=40, name="logit"), row=1, col=1)
    fig.add_vline(x=0.0, line_dash="dash", row=1, col=1)
    step = max(1, len(detail.is_sharpe) // 2000)  # a readable, light scatter
    xs, ys = detail.is_sharpe[::step], detail.oos_sharpe[::step]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", marker={"size": 4},
                             name="splits"), row=1, col=2)  # fmt: skip
    if len(xs):
        line_x = np.array([float(np.min(xs)), float(np.max(xs))])
        line_y = detail.degradation_intercept + detail.degradation_slope * line_x
        fig.add_trace(go.Scatter(x=line_x, y=line_y, mode="lines", name=(
            f"OOS = {detail.degradation_intercept:.3f} + {detail.degradation_slope:.2f} IS")),
            row=1, col=2)  # fmt: skip
    fig.update_xaxes(title_text="logit", row=1, col=1)
    fig.update_xaxes(title_text="in-sample Sharpe", row=1, col=2)
    fig.update_yaxes(title_text="out-of-sample Sharpe", row=1, col=2)
    return fig
