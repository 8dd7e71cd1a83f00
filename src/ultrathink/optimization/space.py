"""Search spaces: ``--space fast=int:5:50`` on the command line, ``[space]`` in TOML.

A dimension is ``NAME=KIND:SPEC``:

- ``int:LOW:HIGH[:STEP]`` and ``int:LOW:HIGH:log`` (inclusive bounds);
- ``float:LOW:HIGH[:STEP]`` and ``float:LOW:HIGH:log``;
- ``cat:A,B,C`` (at least two distinct values; kept as text, the strategy's ``Params``
  converts them like a ``--param``).

They map one to one onto Optuna's distributions, which do the sampling. A space is
validated before any trial runs: bounds in order, a positive step, log bounds above zero,
a categorical with two values or more, and every name a parameter of the strategy (and not
also fixed with ``--param``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ultrathink.errors import ConfigError

KINDS = ("int", "float", "cat")


@dataclass(frozen=True)
class Dimension:
    """One searched parameter."""

    name: str
    kind: str  # int | float | cat
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    choices: tuple[str, ...] = ()

    def spec(self) -> str:
        """The canonical ``KIND:…`` text (what a study records and compares)."""
        if self.kind == "cat":
            return "cat:" + ",".join(self.choices)
        low, high = _num(self.low, self.kind), _num(self.high, self.kind)
        tail = ":log" if self.log else (f":{_num(self.step, self.kind)}" if self.step else "")
        return f"{self.kind}:{low}:{high}{tail}"

    def distribution(self) -> Any:
        """The Optuna distribution of this dimension."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.kind == "int":
            return IntDistribution(
                int(self.low), int(self.high), log=self.log, step=int(self.step or 1)
            )
        if self.kind == "float":
            return FloatDistribution(self.low, self.high, log=self.log, step=self.step)
        return CategoricalDistribution(self.choices)

    def grid(self) -> list[Any]:
        """Every value, for the grid sampler (a float needs a step)."""
        if self.kind == "cat":
            return list(self.choices)
        if self.log or (self.kind == "float" and self.step is None):
            raise ConfigError(
                f"--sampler grid needs a finite grid: give {self.name} a step "
                f"(e.g. {self.name}={self.kind}:{_num(self.low, self.kind)}:"
                f"{_num(self.high, self.kind)}:{1 if self.kind == 'int' else 0.1})"
            )
        step = self.step or 1
        n = math.floor((self.high - self.low) / step + 1e-9) + 1
        values = [self.low + i * step for i in range(n)]
        return [int(v) for v in values] if self.kind == "int" else [round(v, 12) for v in values]


def _num(value: float | None, kind: str) -> str:
    if value is None:
        return ""
    return str(int(value)) if kind == "int" else repr(float(value))


def parse_dimension(item: str) -> Dimension:
    """``fast=int:5:50`` → a :class:`Dimension` (a clear error on anything else)."""
    name, sep, spec = item.partition("=")
    name = name.strip()
    if not sep or not name or not spec.strip():
        raise ConfigError(
            f"--space expects NAME=KIND:SPEC, was {item!r} "
            "(e.g. --space fast=int:5:50, --space stop=float:0.5:5:log, --space mode=cat:a,b)"
        )
    return dimension_from_spec(name, spec.strip())


def dimension_from_spec(name: str, spec: str) -> Dimension:
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    where = f"space {name}={spec}"
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown kind {kind!r}; use int, float or cat")
    if kind == "cat":
        choices = tuple(c.strip() for c in rest.split(",") if c.strip())
        if len(set(choices)) < 2:
            raise ConfigError(f"{where}: a categorical needs at least two distinct values")
        if len(set(choices)) != len(choices):
            raise ConfigError(f"{where}: a categorical lists a value twice")
        return Dimension(name, "cat", choices=choices)
    parts = [p.strip() for p in rest.split(":")]
    if len(parts) not in (2, 3):
        raise ConfigError(f"{where}: expected {kind}:LOW:HIGH[:STEP|:log]")
    low, high = _bound(where, parts[0], kind), _bound(where, parts[1], kind)
    if low > high:
        raise ConfigError(f"{where}: low {parts[0]} is above high {parts[1]}")
    if low == high:
        raise ConfigError(f"{where}: low equals high: fix it with --param {name}={parts[0]}")
    log, step = False, None
    if len(parts) == 3:
        if parts[2].lower() == "log":
            log = True
            if low <= 0:
                raise ConfigError(f"{where}: a log scale needs low > 0")
        else:
            step = _bound(where, parts[2], kind)
            if step <= 0:
                raise ConfigError(f"{where}: the step must be positive")
            if step > high - low:
                raise ConfigError(f"{where}: the step is larger than the range")
    return Dimension(name, kind, low=low, high=high, step=step, log=log)


def _bound(where: str, text: str, kind: str) -> float:
    try:
        value = int(text) if kind == "int" else float(text)
    except ValueError:
        raise ConfigError(
            f"{where}: {text!r} is not {'an integer' if kind == 'int' else 'a number'}"
        ) from None
    if not math.isfinite(value):
        raise ConfigError(f"{where}: {text!r} is not a finite number")
    return float(value)


@dataclass(frozen=True)
class SearchSpace:
    """The searched dimensions, in the order given."""

    dimensions: tuple[Dimension, ...]

    @classmethod
    def parse(cls, items: Iterable[str], table: Mapping[str, Any] | None = None) -> SearchSpace:
        """From ``--space`` items, after a TOML ``[space]`` table (the command line wins)."""
        dims: dict[str, Dimension] = {}
        for name, spec in (table or {}).items():
            if not isinstance(spec, str):
                raise ConfigError(f'[space] {name} must be a text like "int:5:50", was {spec!r}')
            dims[name] = dimension_from_spec(name, spec)
        for item in items:
            dim = parse_dimension(item)
            dims[dim.name] = dim
        if not dims:
            raise ConfigError(
                "the search space is empty: give --space NAME=KIND:SPEC (e.g. --space "
                "fast=int:5:50) or a [space] table in --config"
            )
        return cls(tuple(dims.values()))

    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    def canonical(self) -> dict[str, str]:
        return {d.name: d.spec() for d in self.dimensions}

    def check_against(self, known: Iterable[str], fixed: Mapping[str, Any], what: str) -> None:
        """Every dimension must be a parameter of ``what`` and not fixed too."""
        known = set(known)
        for name in self.names():
            if name not in known:
                raise ConfigError(
                    f"--space {name}: {what} has no parameter {name!r} "
                    f"(its parameters: {', '.join(sorted(known)) or 'none'})"
                )
            if name in fixed:
                raise ConfigError(f"{name} is both searched (--space) and fixed (--param)")

    def suggest(self, trial: Any) -> dict[str, Any]:
        """The trial's values, sampled by its study's sampler."""
        out: dict[str, Any] = {}
        for d in self.dimensions:
            if d.kind == "int":
                out[d.name] = trial.suggest_int(
                    d.name, int(d.low), int(d.high), step=int(d.step or 1), log=d.log
                )
            elif d.kind == "float":
                out[d.name] = trial.suggest_float(d.name, d.low, d.high, step=d.step, log=d.log)
            else:
                out[d.name] = trial.suggest_categorical(d.name, list(d.choices))
        return out

    def grid(self) -> dict[str, list[Any]]:
        return {d.name: d.grid() for d in self.dimensions}
