"""Spec strings for the synthetic generator, as typed on the command line.

``synthetic`` alone means the defaults; otherwise ``synthetic:key=value,key=value,...`` with
any ``SyntheticConfig`` field (``symbols=AAA+BBB``, ``n_symbols=3``) and repeatable scenario
keys, each optionally ending in ``:SYMBOL`` to hit one symbol only::

    crash=PCT@START_BAR/N_BARS                      crash=20@1000/50
    gap=PCT@BAR                                     gap=-5@300
    flash_crash=PCT@BAR/N_BARS_DOWN/N_BARS_RECOVER  flash_crash=10@2000/5/20
    vol_spike=MULTIPLIER@START_BAR/N_BARS           vol_spike=3@100/200
    halt=START_BAR/N_BARS                           halt=400/30:AAA
"""

from __future__ import annotations

import difflib
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError

from ultrathink.data.synthetic_config import (
    Crash,
    FlashCrash,
    Gap,
    Halt,
    Scenario,
    SyntheticConfig,
    VolSpike,
    default_symbol_names,
)
from ultrathink.errors import ConfigError

PREFIX = "synthetic"


class ScenarioFormat(NamedTuple):
    """How one scenario key is written: model, fields in order, whether ``@`` follows field 1."""

    model: type[BaseModel]
    fields: tuple[str, ...]
    has_at: bool
    example: str

    def usage(self) -> str:
        """Return e.g. ``PCT@START_BAR/N_BARS``."""
        names = [f.upper() for f in self.fields]
        if self.has_at:
            return f"{names[0]}@{'/'.join(names[1:])}"
        return "/".join(names)


SCENARIO_FORMATS: dict[str, ScenarioFormat] = {
    "crash": ScenarioFormat(Crash, ("pct", "start_bar", "n_bars"), True, "20@1000/50"),
    "gap": ScenarioFormat(Gap, ("pct", "at_bar"), True, "-5@300"),
    "flash_crash": ScenarioFormat(
        FlashCrash, ("pct", "at_bar", "n_bars_down", "n_bars_recover"), True, "10@2000/5/20"
    ),
    "vol_spike": ScenarioFormat(VolSpike, ("multiplier", "start_bar", "n_bars"), True, "3@100/200"),
    "halt": ScenarioFormat(Halt, ("start_bar", "n_bars"), False, "400/30"),
}
_SCALAR_KEYS: tuple[str, ...] = (
    *(name for name in SyntheticConfig.model_fields if name != "scenarios"),
    "n_symbols",
)
_TEXT_KEYS = frozenset({"freq", "start", "symbols"})


def _known_keys() -> list[str]:
    return [*_SCALAR_KEYS, *SCENARIO_FORMATS]


def _number(text: str) -> int | float | str:
    # int first so large counts stay exact; pydantic reports anything still a string
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def _pydantic_reason(exc: ValidationError) -> tuple[str, str, Any]:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"] if not isinstance(part, int))
    message = str(error["msg"]).removeprefix("Value error, ")
    return field, message, error.get("input")


def parse_scenario(key: str, value: str) -> Scenario:
    """Parse one scenario item such as ``crash`` = ``20@1000/50`` (see the module docstring).

    Raises
    ------
    ConfigError
        When the value does not match the key's format or breaks a scenario constraint.
    """
    fmt = SCENARIO_FORMATS[key]
    usage = f"usage {key}={fmt.usage()}[:SYMBOL], e.g. {key}={fmt.example}"
    body, _, symbol = value.partition(":")
    if fmt.has_at:
        first, at, rest = body.partition("@")
        parts = [first, *rest.split("/")] if at else []
    else:
        parts = [] if "@" in body else body.split("/")
    if len(parts) != len(fmt.fields) or not all(p.strip() for p in parts):
        raise ConfigError(f"synthetic spec: {key}={value!r} is malformed; {usage}")
    fields: dict[str, Any] = {
        name: _number(p.strip()) for name, p in zip(fmt.fields, parts, strict=True)
    }
    if symbol.strip():
        fields["symbol"] = symbol.strip()
    try:
        scenario: Scenario = fmt.model.model_validate(fields)  # type: ignore[assignment]
    except ValidationError as exc:
        field, message, bad = _pydantic_reason(exc)
        raise ConfigError(
            f"synthetic spec: {key}={value!r}: {field} {message}, was {bad!r}; {usage}"
        ) from None
    return scenario


def _unknown_key(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, _known_keys(), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(
        f"synthetic spec: unknown key {key!r}{hint}; known keys: {', '.join(_known_keys())}"
    )


def _split_items(spec: str) -> list[tuple[str, str]]:
    head, _, body = spec.strip().partition(":")
    if head.strip().lower() != PREFIX:
        raise ConfigError(
            f"synthetic spec {spec!r} must start with 'synthetic', e.g. "
            f"synthetic:n_bars=1000,seed=7"
        )
    items = []
    for item in body.split(","):
        if not item.strip():
            continue
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise ConfigError(
                f"synthetic spec: item {item.strip()!r} must be key=value, e.g. n_bars=1000"
            )
        items.append((key.strip().lower(), value.strip()))
    return items


def parse_synthetic_spec(spec: str) -> SyntheticConfig:
    """Parse a spec such as ``synthetic:n_bars=5000,seed=7,crash=20@1000/50``.

    Parameters
    ----------
    spec : str
        ``synthetic`` or ``synthetic:key=value,...`` (see the module docstring).

    Raises
    ------
    ConfigError
        Naming the key, the broken rule, the value and the fix.
    """
    fields: dict[str, Any] = {}
    scenarios: list[Scenario] = []
    for key, value in _split_items(spec):
        if key in SCENARIO_FORMATS:
            scenarios.append(parse_scenario(key, value))
        elif key not in _SCALAR_KEYS:
            raise _unknown_key(key)
        elif key in fields:
            raise ConfigError(f"synthetic spec: key {key!r} given twice; fix: keep one")
        elif key == "symbols":
            fields[key] = tuple(value.split("+"))
        else:
            fields[key] = value if key in _TEXT_KEYS else _number(value)
    fields["scenarios"] = tuple(scenarios)
    try:
        return SyntheticConfig.model_validate(fields)
    except ValidationError as exc:
        field, message, bad = _pydantic_reason(exc)
        if not field:
            raise ConfigError(f"synthetic spec {spec!r}: {message}") from None
        default = SyntheticConfig.model_fields[field].default if field != "n_symbols" else 1
        raise ConfigError(
            f"synthetic spec: {field}={bad!r}: {message}; fix: change {field} (default {default!r})"
        ) from None


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _scenario_text(scenario: Scenario) -> str:
    fmt = SCENARIO_FORMATS[scenario.kind]
    values = [_text(getattr(scenario, name)) for name in fmt.fields]
    body = f"{values[0]}@{'/'.join(values[1:])}" if fmt.has_at else "/".join(values)
    suffix = f":{scenario.symbol}" if scenario.symbol is not None else ""
    return f"{scenario.kind}={body}{suffix}"


def format_synthetic_spec(config: SyntheticConfig) -> str:
    """Return the shortest spec string that ``parse_synthetic_spec`` turns back into ``config``."""
    items = []
    for name, field in SyntheticConfig.model_fields.items():
        value = getattr(config, name)
        if name == "scenarios" or value == field.default:
            continue
        if name != "symbols":
            items.append(f"{name}={_text(value)}")
        elif value == default_symbol_names(len(value)):
            items.append(f"n_symbols={len(value)}")
        else:
            items.append(f"symbols={'+'.join(value)}")
    items.extend(_scenario_text(s) for s in config.scenarios)
    return f"{PREFIX}:{','.join(items)}" if items else PREFIX
