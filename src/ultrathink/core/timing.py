"""Timing points: where a component lets the profiler time it, declared by the component.

A component that wants its work attributed to a profiler stage lists ``TimingPoint``s: an
instance attribute (or slot) of its own that holds a callable it calls through that
attribute on every use. On a sampled bar the profiler replaces the attribute's value with a
timed wrapper and puts the original back afterwards; it never reaches into names a component
did not declare. Only values of existing attributes are swapped: adding an instance
attribute at run time slows attribute access on CPython 3.11+.

Stages: ``market_data``, ``features``, ``model``, ``decision``, ``risk``, ``execution``,
``portfolio`` (see ``ultrathink.perf.profiler``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol


class TimingPoint(NamedTuple):
    """``getattr(owner, attr)`` is a callable whose time counts towards ``stage``."""

    stage: str
    owner: object
    attr: str


class Timed(Protocol):
    """A component with timing points."""

    def timing_points(self) -> Sequence[TimingPoint]:
        """The component's timing points (may change between calls, e.g. per symbol)."""
        ...
