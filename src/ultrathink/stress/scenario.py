"""Scenario files: a typed, strict TOML description of one stress scenario.

A scenario file (``<name>.toml``; the shipped ones live in ``ultrathink/stress/scenarios``)::

    kind = "broker"                      # the implementation (ultrathink.stress.scenarios)
    description = "one line for `ultrathink stress list`"
    seed = 11                            # the same seed gives the same faults and results
    in_suite = true                      # run by `ultrathink stress suite`
    note = ""                            # e.g. a known gap that keeps it out of the suite
    duration_s = 10.0                    # where the kind uses a duration (--duration)
    thresholds = ["lost_orders == 0", "invariant_failures == 0"]
    [shape]                              # the load shape: replay | constant | steps
    kind = "replay"
    speed = "max"
    [params]                             # the kind's own settings (its params_model)
    n_bars = 600
    [[faults]]                           # each entry is one case (the kind's fault_model)
    kind = "timeout"
    rate = 0.1
    [quick]                              # what --quick changes: duration_s, shape,
    params = { n_bars = 200 }            # params (merged key by key), faults (replaced),
    thresholds = ["kills >= 3"]          # thresholds (replacing those on the same metric)

Every key is checked: an unknown key, a wrong type, a bad threshold or a metric the kind
does not measure is one ``ConfigError`` line naming the file and the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from ultrathink.config_files import read_toml
from ultrathink.config_messages import dotted, plain, shown
from ultrathink.errors import ConfigError
from ultrathink.stress.base import COMMON_METRICS, STRICT, Scenario
from ultrathink.stress.scenarios import kinds, scenario_files
from ultrathink.stress.thresholds import Threshold, merge, parse_thresholds

__all__ = [
    "ConstantShape",
    "LoadShape",
    "ReplayShape",
    "ScenarioConfig",
    "StepsShape",
    "load_scenario",
    "merge_tables",
    "shipped_scenarios",
    "validate_part",
]


class ReplayShape(BaseModel):
    """Bars replayed from data, as fast as possible (``"max"``) or at ``speed`` x real time."""

    model_config = STRICT

    kind: Literal["replay"] = "replay"
    speed: Annotated[float, Field(gt=0, le=1e9)] | Literal["max"] = "max"


class ConstantShape(BaseModel):
    """An open model: events arrive at ``rate_per_s`` whatever the server does."""

    model_config = STRICT

    kind: Literal["constant"] = "constant"
    rate_per_s: float = Field(gt=0, le=10_000_000)


class Step(BaseModel):
    """One step of a ``steps`` shape."""

    model_config = STRICT

    rate_per_s: float = Field(gt=0, le=10_000_000)
    duration_s: float = Field(gt=0, le=7 * 86_400)


class StepsShape(BaseModel):
    """Arrival rates one after the other (a spike: baseline, 10x, baseline)."""

    model_config = STRICT

    kind: Literal["steps"] = "steps"
    steps: tuple[Step, ...] = Field(min_length=1, max_length=100)


LoadShape = Annotated[ReplayShape | ConstantShape | StepsShape, Field(discriminator="kind")]


class _Quick(BaseModel):
    model_config = STRICT

    duration_s: float | None = Field(default=None, gt=0)
    shape: dict[str, Any] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    faults: tuple[dict[str, Any], ...] | None = None
    thresholds: tuple[str, ...] = ()


class _File(BaseModel):
    model_config = STRICT

    kind: str
    description: str = Field(min_length=1, max_length=200, pattern=r"^[^\n]*$")
    seed: int = Field(ge=0, le=2**63 - 1)
    in_suite: bool = True
    note: str = Field(default="", max_length=500)
    duration_s: float | None = Field(default=None, gt=0, le=30 * 86_400)
    thresholds: tuple[str, ...] = ()
    shape: dict[str, Any] = Field(default_factory=lambda: {"kind": "replay"})
    params: dict[str, Any] = Field(default_factory=dict)
    faults: tuple[dict[str, Any], ...] = ()
    quick: _Quick = _Quick()


@dataclass(frozen=True)
class ScenarioConfig:
    """One scenario, resolved: the file's values (with ``--quick``, ``--seed`` and
    ``--duration`` applied), its params and faults validated by its kind."""

    name: str
    kind: str
    description: str
    source: Path
    seed: int
    in_suite: bool
    note: str
    duration_s: float | None
    shape: ReplayShape | ConstantShape | StepsShape
    params: Any
    faults: tuple[Any, ...]
    thresholds: tuple[Threshold, ...]
    quick: bool

    @property
    def implementation(self) -> type[Scenario]:
        """The kind's class."""
        return kinds()[self.kind]

    @property
    def metrics(self) -> dict[str, str]:
        """Every metric its thresholds may compare, with its meaning."""
        return {**self.implementation.metrics, **COMMON_METRICS}


def shipped_scenarios() -> list[str]:
    """The names of the scenarios shipped with the package, sorted."""
    return list(scenario_files())


def load_scenario(
    spec: str,
    *,
    quick: bool = False,
    seed: int | None = None,
    duration_s: float | None = None,
) -> ScenarioConfig:
    """Load a shipped scenario by name, or a scenario file by path (``*.toml``).

    Raises
    ------
    ConfigError
        Unknown scenario, unreadable or invalid file, or ``duration_s`` given to a kind that
        has no duration (one line naming the scenario and the key).
    """
    path = _find(spec)
    where = f"scenario {path.stem} ({plain(path)})"
    try:
        raw = read_toml(path)
    except ConfigError as exc:  # its messages say "config file": this one is a scenario
        raise ConfigError(str(exc).replace("config file", "scenario file", 1)) from None
    envelope = validate_part(_File, raw, where)
    impl = kinds().get(envelope.kind)
    if impl is None:
        raise ConfigError(
            f"{where}: kind {envelope.kind!r} is not a scenario kind; known: "
            f"{', '.join(sorted(kinds()))}"
        )
    values = _with_quick(envelope) if quick else envelope.model_dump()
    if seed is not None:
        values["seed"] = _check_seed(seed)
    if duration_s is not None:
        if not impl.uses_duration:
            raise ConfigError(
                f"--duration does not apply to scenario {path.stem} (kind {impl.kind}): it "
                "runs its data or its cases to the end; drop --duration"
            )
        if not 0 < duration_s <= 30 * 86_400:
            raise ConfigError(f"--duration must be in (0, 2592000] seconds, was {duration_s}")
        values["duration_s"] = float(duration_s)
    metrics = {**impl.metrics, **COMMON_METRICS}
    return ScenarioConfig(
        name=path.stem,
        kind=impl.kind,
        description=envelope.description,
        source=path,
        seed=values["seed"],
        in_suite=envelope.in_suite,
        note=envelope.note,
        duration_s=values["duration_s"],
        shape=validate_part(_SHAPE, values["shape"], f"{where}: shape"),
        params=validate_part(impl.params_model, values["params"], f"{where}: params"),
        faults=tuple(
            validate_part(impl.fault_model, fault, f"{where}: faults[{i}]")
            for i, fault in enumerate(values["faults"])
        ),
        thresholds=tuple(_thresholds(envelope, metrics, where, quick)),
        quick=quick,
    )


_SHAPE: Any = LoadShape


def validate_part(model: Any, value: Any, where: str) -> Any:
    """Validate ``value`` with ``model`` (a pydantic model or an annotated type); a
    ``ConfigError`` naming ``where`` and the first problem otherwise. TOML arrays are read
    as tuples (the models are frozen; strict validation takes no list for a tuple)."""
    value = _tuples(value)
    try:
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model.model_validate(value)
        return TypeAdapter(model).validate_python(value, strict=True)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_explain(exc, model)}") from None


def _tuples(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def _find(spec: str) -> Path:
    shipped = scenario_files()
    if spec in shipped:
        return shipped[spec]
    if spec.endswith(".toml"):
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"scenario file {plain(spec)} not found")
        return path
    raise ConfigError(
        f"unknown scenario {plain(spec)!s}; known: {', '.join(shipped)} (or a path to a "
        "scenario file, NAME.toml; see `ultrathink stress list`)"
    )


def _with_quick(envelope: _File) -> dict[str, Any]:
    values = envelope.model_dump(exclude={"quick"})
    quick = envelope.quick
    if quick.duration_s is not None:
        values["duration_s"] = quick.duration_s
    if quick.shape is not None:
        values["shape"] = quick.shape
    if quick.faults is not None:
        values["faults"] = quick.faults
    values["params"] = merge_tables(values["params"], quick.params)
    return values


def merge_tables(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` on top, table by table (a value that is not a table replaces)."""
    out = dict(base)
    for key, value in over.items():
        old = out.get(key)
        both_tables = isinstance(old, Mapping) and isinstance(value, Mapping)
        out[key] = merge_tables(old, value) if both_tables else value  # type: ignore[arg-type]
    return out


def _thresholds(
    envelope: _File, metrics: Mapping[str, str], where: str, quick: bool
) -> list[Threshold]:
    own = parse_thresholds(envelope.thresholds, metrics, where)
    if not quick:
        return own
    return merge(own, parse_thresholds(envelope.quick.thresholds, metrics, f"{where}: quick"))


def _check_seed(seed: int) -> int:
    if not 0 <= seed <= 2**63 - 1:
        raise ConfigError(f"--seed must be in [0, 2**63 - 1], was {seed}")
    return seed


def _explain(exc: ValidationError, model: Any) -> str:
    err = exc.errors()[0]
    loc = tuple(str(p) for p in err["loc"])
    name = dotted(loc) or "the value"
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    kind = err["type"]
    if kind == "extra_forbidden":
        known = ""
        if len(loc) == 1 and isinstance(model, type) and issubclass(model, BaseModel):
            known = f" (known here: {', '.join(model.model_fields)})"
        return f"{name} is not a key here{known}; remove or rename it{more}"
    if kind == "missing":
        return f"{name} is required but not set{more}"
    message = err["msg"].removeprefix("Value error, ").replace("Input should be", "must be", 1)
    return f"{name} {message}, was {shown(err.get('input'))}{more}"
