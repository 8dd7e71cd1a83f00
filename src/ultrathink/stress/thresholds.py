"""Thresholds in the k6 style: ``p99_decision_us < 1000``, ``lost_orders == 0``.

A threshold is a metric name, a comparison and a number, written on one line::

    threshold := metric op number
    metric    := [a-z_][a-z0-9_]*          (a metric the scenario measures)
    op        := "<" | "<=" | ">" | ">=" | "==" | "!="
    number    := a finite decimal or scientific literal, e.g. 0, -2.5, 1e3, .999

It is parsed by a regular expression, never evaluated: nothing in a threshold file can run.
A threshold holds when the measured value satisfies the comparison; one that is breached is
reported as ``threshold breached: NAME OP VALUE (measured X)``. A metric a run could not
measure (a part skipped, e.g. a filesystem it may not mount) leaves its thresholds
``not measured``: reported with the reason, neither held nor breached.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import NamedTuple

from ultrathink.errors import ConfigError

#: The comparisons, longest first (so ``<=`` is never read as ``<`` then ``=``).
OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_GRAMMAR = re.compile(
    rf"\s*(?P<metric>[a-z_][a-z0-9_]*)\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<value>{_NUMBER})\s*"
)
_MAX_CHARS = 200
_SHOWN = 60


class Threshold(NamedTuple):
    """One threshold: ``metric op value``."""

    metric: str
    op: str
    value: float

    @property
    def text(self) -> str:
        """The threshold as written canonically (``parse_threshold`` reads it back)."""
        return f"{self.metric} {self.op} {format_number(self.value)}"

    def holds(self, measured: float) -> bool:
        """True when ``measured`` satisfies the comparison (NaN never does)."""
        return not math.isnan(measured) and OPS[self.op](measured, self.value)


class Verdict(NamedTuple):
    """A threshold, what was measured (None: not measured) and whether it held."""

    threshold: Threshold
    measured: float | None
    ok: bool
    note: str = ""

    @property
    def status(self) -> str:
        """``ok``, ``breached`` or ``not measured``."""
        if self.measured is None:
            return "not measured"
        return "ok" if self.ok else "breached"

    def line(self) -> str:
        """``threshold breached: p99 < 5 (measured 7.25)`` and the like."""
        t = self.threshold.text
        if self.measured is None:
            return f"threshold not measured: {t}" + (f" ({self.note})" if self.note else "")
        word = "held" if self.ok else "breached"
        return f"threshold {word}: {t} (measured {format_number(self.measured)})"


def format_number(value: float) -> str:
    """A number as thresholds and reports show it: an integer without ``.0``, else repr."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def parse_threshold(text: object, metrics: Collection[str] | None = None) -> Threshold:
    """Parse one threshold; ``metrics`` (when given) are the names it may compare.

    Raises
    ------
    ConfigError
        If ``text`` is not a string of the grammar above, its number is not finite, or its
        metric is not one of ``metrics`` (one line naming the text and the rule).
    """
    if not isinstance(text, str):
        raise ConfigError(
            f'a threshold must be a string such as "lost_orders == 0", was {_shown(text)}'
        )
    if len(text) > _MAX_CHARS:
        raise ConfigError(
            f"threshold {_shown(text)} is {len(text)} characters; a threshold is one short "
            f"line (at most {_MAX_CHARS})"
        )
    match = _GRAMMAR.fullmatch(text)
    if match is None:
        raise ConfigError(
            f"threshold {_shown(text)} is not METRIC OP NUMBER (a lower-case metric name, one "
            f'of {" ".join(sorted(OPS, key=len))}, a number), e.g. "p99_decision_us < 1000"'
        )
    value = float(match["value"])
    if not math.isfinite(value):
        raise ConfigError(f"threshold {_shown(text)}: the number must be finite")
    metric = match["metric"]
    if metrics is not None and metric not in metrics:
        raise ConfigError(
            f"threshold {_shown(text)}: unknown metric {metric!r}; known: "
            f"{', '.join(sorted(metrics)) or 'none'}"
        )
    return Threshold(metric, match["op"], value)


def parse_thresholds(
    texts: Iterable[object], metrics: Collection[str] | None, where: str
) -> list[Threshold]:
    """Parse each threshold of ``where`` (a file, a scenario), naming it in any error."""
    out = []
    for text in texts:
        try:
            out.append(parse_threshold(text, metrics))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return out


def merge(defaults: Iterable[Threshold], overrides: Iterable[Threshold]) -> list[Threshold]:
    """``defaults`` with every threshold on a metric that ``overrides`` names replaced by the
    overrides of that metric; overrides of other metrics are added, in their order."""
    overrides = list(overrides)
    replaced = {t.metric for t in overrides}
    return [t for t in defaults if t.metric not in replaced] + overrides


def evaluate(
    thresholds: Iterable[Threshold],
    measured: Mapping[str, float | None],
    notes: Mapping[str, str] | None = None,
) -> list[Verdict]:
    """Judge every threshold against the ``measured`` metrics (missing or None: not
    measured, with the reason from ``notes``)."""
    out = []
    for t in thresholds:
        value = measured.get(t.metric)
        if value is None:
            out.append(Verdict(t, None, True, (notes or {}).get(t.metric, "")))
        else:
            out.append(Verdict(t, float(value), t.holds(float(value))))
    return out


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}…"
