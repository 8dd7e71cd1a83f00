"""The environment layer of ``ultrathink.config``: ``ULTRATHINK__SECTION__KEY`` variables.

Each variable names one setting; its text is read as the TOML value of that setting's type
(``20``, ``2.5``, ``true``, ``[{limit = 50, per_s = 1.0}]``), except that text settings take
the text as it is. Two variables that set one value (``ULTRATHINK__RISK`` and
``ULTRATHINK__RISK__X``, or two spellings of a key) are refused rather than letting the
order of the environment decide.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

from ultrathink.config_files import check_depth
from ultrathink.config_messages import dotted, plain, shown
from ultrathink.config_schema import annotation_at, expected, takes_text
from ultrathink.errors import ConfigError

ENV_PREFIX = "ULTRATHINK__"


def from_env(environ: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """``(variable name, nested values)`` of each ``ULTRATHINK__`` variable, sorted by name."""
    out: list[tuple[str, dict[str, Any]]] = []
    claimed: dict[tuple[str, ...], str] = {}
    for name in sorted(k for k in environ if k.startswith(ENV_PREFIX)):
        parts = tuple(p.lower() for p in name[len(ENV_PREFIX) :].split("__"))
        if not all(parts):
            raise ConfigError(
                f"environment variable {plain(name)} does not name a setting; use "
                f"{ENV_PREFIX}SECTION__KEY, e.g. {ENV_PREFIX}RISK__MAX_DRAWDOWN_PCT=20"
            )
        _claim(claimed, parts, name)
        value = _env_value(name, parts, environ[name])
        nested: dict[str, Any] = {parts[-1]: value}
        for part in reversed(parts[:-1]):
            nested = {part: nested}
        out.append((name, nested))
    return out


def _claim(claimed: dict[tuple[str, ...], str], parts: tuple[str, ...], name: str) -> None:
    # ULTRATHINK__RISK and ULTRATHINK__RISK__X (or two spellings of one key) would overwrite
    # each other depending on the order the environment lists them: refuse both
    for other_parts, other in claimed.items():
        n = min(len(parts), len(other_parts))
        if parts[:n] == other_parts[:n]:
            raise ConfigError(
                f"environment variables {plain(other)} and {plain(name)} both set "
                f"{dotted(parts[:n])}; "
                "unset one of them"
            )
    claimed[parts] = name


def _env_value(name: str, parts: tuple[str, ...], raw: str) -> Any:
    annotation = annotation_at(parts)
    if annotation is None or takes_text(annotation):
        return raw  # an unknown key is refused by validation, naming it
    try:
        parsed = tomllib.loads(f"value = {raw}")
    except (ValueError, RecursionError):  # TOMLDecodeError is a ValueError
        parsed = {}
    if set(parsed) != {"value"}:  # not one TOML value (or a newline smuggled a second key)
        what, example = expected(annotation)
        raise ConfigError(
            f"environment variable {plain(name)} sets {dotted(parts)}, which must be "
            f"{what}, to {shown(raw)}; e.g. {plain(name)}={example}"
        )
    check_depth(parsed["value"], f"environment variable {plain(name)}")
    return parsed["value"]
