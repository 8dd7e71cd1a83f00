"""Measurements shared by the scenario kinds: latency percentiles, audit rows, a figure helper.

Latency figures come from HdrHistogram (``core/latency.py``: 3 significant digits) and are
reported at p50, p99, p99.9 and max. In a replay at ``--speed max`` there is no intended
arrival time, so a decision's latency is its service time (``on_bar`` entry to return);
the load scenarios, which have one, measure from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ultrathink.core.latency import percentiles_us
from ultrathink.stress.invariants import read_rows

#: The latency metrics a kind reports for ``what`` (e.g. ``decision``): name -> meaning.
LATENCY_POINTS = (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9"), ("max", "max"))


def latency_metric_names(what: str, meaning: str) -> dict[str, str]:
    """``p50_<what>_us`` ... ``max_<what>_us`` with their meaning (for a kind's metrics)."""
    return {
        f"{name}_{what}_us": f"{label} of {meaning}, µs (HdrHistogram)"
        for name, label in LATENCY_POINTS
    }


def latency_metrics(what: str, values_ns: Iterable[int]) -> dict[str, float | None]:
    """``p50_<what>_us`` ... ``max_<what>_us`` of ``values_ns`` (None when there are none)."""
    stats = percentiles_us(values_ns)
    return {
        f"{name}_{what}_us": None if stats is None else round(stats[key], 3)
        for name, key in LATENCY_POINTS
    }


def audit_rows(db: Path, run_id: int, kinds: Sequence[str]) -> list[tuple[int, str, str]]:
    """``(ts_ns, kind, detail)`` of a run's audit rows of ``kinds``, in order."""
    marks = ", ".join("?" * len(kinds))
    rows = read_rows(
        db,
        f"SELECT ts_ns, kind, detail FROM audit_log WHERE run_id = ? AND kind IN ({marks}) "
        "ORDER BY seq",
        (run_id, *kinds),
    )
    return [(int(ts), str(kind), str(detail or "")) for ts, kind, detail in rows]


def count_rows(db: Path, run_id: int, kind: str) -> int:
    """How many audit rows of ``kind`` the run has."""
    rows = read_rows(
        db, "SELECT COUNT(*) FROM audit_log WHERE run_id = ? AND kind = ?", (run_id, kind)
    )
    return int(rows[0][0]) if rows else 0


def rounded(value: float | None, digits: int = 4) -> float | None:
    """``value`` rounded for a report (None stays None)."""
    return None if value is None else round(float(value), digits)


def worst(values: Iterable[Any], *, largest: bool = True) -> float | None:
    """The largest (or smallest) of the values that are not None; None when there are none."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return None
    return max(present) if largest else min(present)
