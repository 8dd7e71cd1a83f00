"""Render walk-forward fold metrics as a Markdown table or a standalone HTML page."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from ultrathink.models.metrics import FoldMetrics, StrategyRule

# (header, attribute, format) of each table column, in display order
_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("fold", "name", "s"),
    ("train rows", "n_train", "d"),
    ("test rows", "n_test", "d"),
    ("class-1 rate", "positive_rate", ".3f"),
    ("AUC", "auc", ".3f"),
    ("log loss", "log_loss", ".4f"),
    ("baseline log loss", "baseline_log_loss", ".4f"),
    ("accuracy", "accuracy", ".3f"),
    ("baseline accuracy", "baseline_accuracy", ".3f"),
    ("Sharpe", "sharpe", ".2f"),
    ("buy & hold Sharpe", "buy_hold_sharpe", ".2f"),
    ("exposure %", "exposure_pct", ".1f"),
)

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f0f0f0; }
tr.overall td { font-weight: bold; border-top: 2px solid #444; }
p.note { max-width: 60rem; color: #555; }
"""


def describe_rule(rule: StrategyRule) -> str:
    """Return one sentence describing the strategy and the Sharpe annualisation."""
    short = (
        f"short when p <= {rule.short_threshold:g}"
        if rule.short_threshold is not None
        else "flat otherwise"
    )
    return (
        f"Strategy: long when p >= {rule.long_threshold:g}, {short}. Sharpe: per-row forward "
        f"returns over {rule.horizon} bar(s) as given, annualised by "
        f"sqrt({rule.periods_per_year:g} / {rule.horizon}), zero risk-free rate, no costs"
        + (
            "; rows overlap, so it is noisier than the row count suggests."
            if rule.horizon > 1
            else "."
        )
    )


def render_markdown(folds: Sequence[FoldMetrics], overall: FoldMetrics, rule: StrategyRule) -> str:
    """Return a Markdown table of ``folds`` followed by ``overall``, and a note on the rule."""
    header = "| " + " | ".join(h for h, _, _ in _COLUMNS) + " |"
    align = "| " + " | ".join("---" if a == "name" else "---:" for _, a, _ in _COLUMNS) + " |"
    rows = [_markdown_row(f, bold=False) for f in folds] + [_markdown_row(overall, bold=True)]
    return "\n".join([header, align, *rows, "", describe_rule(rule), ""])


def render_html(folds: Sequence[FoldMetrics], overall: FoldMetrics, rule: StrategyRule) -> str:
    """Return a standalone HTML page (inline CSS, no scripts or external assets)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h, _, _ in _COLUMNS)
    body = [_html_row(f, css_class="") for f in folds] + [_html_row(overall, "overall")]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>Walk-forward report</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n<h1>Walk-forward report</h1>\n"
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(body)
        + f'\n</tbody>\n</table>\n<p class="note">{html.escape(describe_rule(rule))}</p>\n'
        "</body>\n</html>\n"
    )


def _cells(metrics: FoldMetrics) -> list[str]:
    return [_format(getattr(metrics, attr), fmt) for _, attr, fmt in _COLUMNS]


def _format(value: object, fmt: str) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return format(value, fmt)


def _markdown_row(metrics: FoldMetrics, *, bold: bool) -> str:
    cells = _cells(metrics)
    if bold:
        cells = [f"**{c}**" for c in cells]
    return "| " + " | ".join(cells) + " |"


def _html_row(metrics: FoldMetrics, css_class: str) -> str:
    cls = f' class="{css_class}"' if css_class else ""
    return f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(metrics)) + "</tr>"
