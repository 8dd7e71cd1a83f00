"""``ultrathink serve ab status``: the A/B report of a running server as tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["print_ab"]


def _num(value: Any, fmt: str = "{:.4f}") -> str:
    return "—" if value is None else fmt.format(value)


def print_ab(report: dict[str, Any]) -> None:
    """Per-variant figures, then each candidate's test against the primary."""
    console = Console(width=140)
    table = Table(title=f"variants (primary {report['primary']})")
    for col in ("version", "role", "traffic %", "requests", "errors", "cache hits",
                "p50 µs", "p99 µs", "mean p", "feedback", "log loss", "AUC"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("version", "role") else "right")
    for v in report["variants"]:
        s = v.get("stats") or {}
        q = v.get("quality") or {}
        lat = s.get("latency_us") or {}
        table.add_row(
            v["version"], v["role"], f"{v['traffic_pct']:g}", f"{s.get('requests', 0):,}",
            f"{s.get('errors', 0):,}", f"{s.get('cache_hits', 0):,}",
            _num(lat.get("p50"), "{:.0f}"),
            _num(lat.get("p99"), "{:.0f}"), _num(s.get("prediction_mean"), "{:.3f}"),
            f"{q.get('n', 0):,}", _num(q.get("logloss")), _num(q.get("auc")),
        )  # fmt: skip
        shadow = s.get("shadow") or {}
        if v["role"] == "shadow" and shadow.get("requests"):
            console.print(
                f"shadow {v['version']}: {shadow['requests']:,} mirrored, disagreement "
                f"{shadow['disagreement_rate']:.2%}, mean |Δp| {shadow['mean_abs_diff']:.4f}, "
                f"errors {shadow['errors']:,}"
            )
    console.print(table)
    for test in report["tests"]:
        console.print(
            f"{test['candidate']} vs {test['incumbent']}: Welch t-test on per-prediction log loss, "
            f"n {test['n_b']:,} vs {test['n_a']:,}, p-value {_num(test.get('p_value'))}: "
            f"{test['verdict']}"
        )
    if not report["tests"]:
        console.print(
            "no candidate to test: route traffic to a second version with --ab or --canary"
        )
