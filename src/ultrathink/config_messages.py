"""The one-line ``ConfigError`` texts of ``ultrathink.config``: what is wrong, where it was set.

``describe`` turns pydantic's validation errors into ``<setting> <rule>, was <value> (set by
<source>)``, at most ``_SHOWN_ERRORS`` of them; ``shown``, ``dotted`` and ``plain`` render a
value, a setting's path and a path or variable name so that a message stays one short,
printable line whatever the input held.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ultrathink.config_schema import model_at

#: The layer (``"config file c.toml"``, ...) that set each leaf, and each table left empty.
Sources = dict[tuple[str, ...], str]

_SHOWN_CHARS = 60  # of a bad value in an error message
_SHOWN_ERRORS = 3  # problems listed in one message; the rest are counted


def describe(exc: ValidationError, sources: Sources) -> str:
    """The message of a ``ConfigError`` for a failed ``EngineConfig`` validation."""
    errors = exc.errors()
    parts = []
    for err in errors[:_SHOWN_ERRORS]:
        loc = tuple(str(p) for p in err["loc"])
        where_set = where(loc[:-1] if err["type"] == "missing" else loc, sources)
        parts.append(f"{dotted(loc) or 'the configuration'}{_rule(err, loc)}{where_set}")
    if len(errors) > _SHOWN_ERRORS:
        parts.append(f"and {len(errors) - _SHOWN_ERRORS} more problems")
    return "invalid configuration: " + "; ".join(parts)


def _rule(err: Any, loc: tuple[str, ...]) -> str:
    kind, value = err["type"], err.get("input")
    rules = {
        "float_type": "must be a number (e.g. 20 or 2.5)",
        "int_type": "must be a whole number (e.g. 100)",
        "bool_type": "must be true or false",
        "string_type": "must be a quoted string",
        "literal_error": err["msg"].replace("Input should be", "must be", 1),
        "finite_number": "must be a finite number",
        "model_type": "must be a table of settings",
        "model_attributes_type": "must be a table of settings",
        "dict_type": "must be a table of settings",
        "tuple_type": "must be an array (e.g. [{limit = 50, per_s = 1.0}])",
    }
    if kind == "missing":
        return " is required but not set"
    if kind == "extra_forbidden":
        known = model_at(loc[:-1])
        names = ", ".join(known.model_fields) if known is not None else "none"
        return f" is not a setting (known here: {names}), was {shown(value)}; remove or rename it"
    if kind == "value_error":  # our own validators: their message names the value and the fix
        return ": " + _one_line(err["msg"].removeprefix("Value error, "))
    rule = rules.get(kind) or err["msg"].replace("Input should be", "must be", 1)
    return f" {_one_line(rule)}, was {shown(value)}"


def where(loc: tuple[str, ...], sources: Sources) -> str:
    """`` (set by <layer>)`` for the value at ``loc``, or ``""`` if only the defaults did."""
    # the layer that set the value, or the values in the table of a table's error
    found = [s for p, s in sources.items() if p[: len(loc)] == loc]
    found = found or [s for p, s in sources.items() if loc[: len(p)] == p]
    named = list(dict.fromkeys(s for s in found if s != "the defaults"))
    return f" (set by {' and '.join(named)})" if named else ""


def dotted(loc: tuple[str, ...]) -> str:
    """A setting's path as ``risk.max_drawdown_pct``; odd or long keys shown quoted."""
    return ".".join(p if p.isprintable() and len(p) <= 40 else shown(p) for p in loc)


def shown(value: Any) -> str:
    """A bad value as a message shows it: its kind, or its repr cut to ``_SHOWN_CHARS``."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, int) and value.bit_length() > 128:  # repr of 10**5000 is refused
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _one_line(text: str) -> str:
    return " ".join(text.split())


def plain(text: str | Path) -> str:
    """A path or a variable name as typed, unless it holds characters a terminal acts on."""
    text = str(text)
    return text if text.isprintable() else repr(text)
