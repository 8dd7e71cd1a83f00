"""What a scenario run found: named invariants, cases with their figures, the run's metrics.

Plain data, JSON-ready through ``to_dict``: the runner judges thresholds over
``Outcome.metrics`` and the report renders everything, so a scenario only measures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Invariant(NamedTuple):
    """One invariant checked on one run: its name, whether it held, and why (one line)."""

    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class Case:
    """One case of a scenario (one fault, one crash, one kill trial...).

    Attributes
    ----------
    name : str
        Unique within the scenario, e.g. ``drop30/sp500``.
    figures : dict
        What the case measured (numbers, short strings), shown in its row of the report.
    invariants : list of Invariant
        Checked on the case's run(s).
    skipped : str
        Why the case could not run here ("" when it ran).
    """

    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    invariants: list[Invariant] = field(default_factory=list)
    skipped: str = ""

    @property
    def ok(self) -> bool:
        """True when every invariant held (a skipped case is neither: see ``skipped``)."""
        return all(i.ok for i in self.invariants)

    @property
    def failed_invariants(self) -> list[Invariant]:
        """The invariants that did not hold."""
        return [i for i in self.invariants if not i.ok]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "ok": self.ok,
            "skipped": self.skipped,
            "figures": self.figures,
            "invariants": [i.to_dict() for i in self.invariants],
        }


@dataclass
class Outcome:
    """Everything a scenario run measured.

    Attributes
    ----------
    cases : list of Case
        In the order they ran.
    metrics : dict
        The scenario's metrics (thresholds compare these); None = not measured.
    not_measured : dict
        Why a metric is None (e.g. the filesystem could not be mounted here).
    figures : list of (title, note, plotly figure)
        Plots for the HTML report.
    series : dict
        Small time series kept in the JSON (e.g. the trading-state timeline).
    """

    cases: list[Case] = field(default_factory=list)
    metrics: dict[str, float | None] = field(default_factory=dict)
    not_measured: dict[str, str] = field(default_factory=dict)
    figures: list[tuple[str, str, Any]] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)

    @property
    def invariant_failures(self) -> int:
        """Invariants that did not hold, over every case."""
        return sum(len(c.failed_invariants) for c in self.cases)

    def skip(self, metrics: tuple[str, ...], reason: str) -> None:
        """Mark ``metrics`` not measured, for ``reason``."""
        for name in metrics:
            self.metrics[name] = None
            self.not_measured[name] = reason
