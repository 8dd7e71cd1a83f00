"""The plug-in interface of a stress scenario kind, and what a run of one receives.

A *kind* (``crash``, ``broker``, ``resources``, ``chaos``; later ``load``, ``spike``,
``endurance``, ``network``) is a ``Scenario`` subclass in a module of
``ultrathink.stress.scenarios`` that sets ``SCENARIO``. A *scenario* is a TOML file naming its
kind: several scenarios may share one kind with other faults, data or thresholds. The kind
declares what its file may hold (``params_model``, ``fault_model``), what it measures
(``metrics``: the names thresholds may compare) and runs one scenario (``run``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ultrathink.stress.outcome import Outcome

if TYPE_CHECKING:
    from ultrathink.stress.scenario import ScenarioConfig

#: Metrics every scenario has (the runner measures them from the outcome).
COMMON_METRICS: dict[str, str] = {
    "invariant_failures": "invariants that did not hold, over every case",
    "cases_run": "cases that ran (not skipped)",
}

#: The config of every part of a scenario file: frozen, strict, unknown keys refused.
STRICT = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


class NoParams(BaseModel):
    """A kind without parameters: ``[params]`` must be empty."""

    model_config = STRICT


@dataclass(frozen=True)
class RunContext:
    """What one scenario run gets: its resolved config, a private directory, a logger.

    Attributes
    ----------
    config : ScenarioConfig
        Seed, shape, faults, duration, params (validated by the kind), thresholds.
    work_dir : Path
        Empty at the start; stores, journals and child-process files go here and stay for
        inspection (``ultrathink audit verify --db <work_dir>/<case>/stress.db``).
    log : callable
        One progress line (stderr, not part of the result).
    shared_dir : Path or None
        A directory shared by the scenarios of one ``run``/``suite`` invocation, for what
        they may build once (the model the load scenarios trade); None: build it in
        ``work_dir``.
    """

    config: ScenarioConfig
    work_dir: Path
    log: Callable[[str], None]
    shared_dir: Path | None = None


class Scenario(ABC):
    """A kind of stress scenario (see the module docstring).

    Class attributes
    ----------------
    kind : str
        The name scenario files use (``kind = "crash"``).
    metrics : mapping of str to str
        Each metric it measures and what it means (with its unit); thresholds may compare
        these and ``COMMON_METRICS``.
    params_model : type of BaseModel
        Validates the file's ``[params]`` table.
    fault_model : type
        Validates one entry of the file's ``[[faults]]`` array (a model or a union).
    uses_duration : bool
        Whether ``duration_s`` (and ``--duration``) means anything to it.
    """

    kind: ClassVar[str]
    metrics: ClassVar[Mapping[str, str]]
    params_model: ClassVar[type[BaseModel]] = NoParams
    fault_model: ClassVar[Any]
    uses_duration: ClassVar[bool] = False

    @abstractmethod
    def run(self, ctx: RunContext) -> Outcome:
        """Run the scenario ``ctx.config`` describes and return what it measured."""
