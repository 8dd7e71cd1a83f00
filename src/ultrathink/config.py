"""The whole configuration: TOML file + environment, gathered from each stage's config.

A TOML file mirrors ``EngineConfig``::

    starting_cash = 250000
    [sizing]
    mode = "fixed"
    quantity = 100
    [broker]
    commission_bps = 1.0
    [risk]
    max_drawdown_pct = 25

Environment variables override single values with ``ULTRATHINK__SECTION__KEY`` (e.g.
``ULTRATHINK__RISK__MAX_DRAWDOWN_PCT=20``). A value is read as the TOML value of its setting
(``20``, ``2.5``, ``true``, ``[{limit = 50, per_s = 1.0}]``); text settings (``sizing.mode``,
``control.session_file``) take the variable's text as it is. Where the store lives:
``--db PATH``, else ``$ULTRATHINK_DB``, else ``$ULTRATHINK_HOME/ultrathink.db``, else
``./.ultrathink/ultrathink.db``.

Every value is checked strictly: ``true`` is not a number and ``"5"`` is not 5 (an integer is
a valid float); unknown keys, non-finite numbers, a file that is not a small UTF-8 TOML file
and nesting deeper than any setting are refused with a one-line ``ConfigError`` that names the
setting, the rule, the value and where it was set.

This module is the entry point and the layering; the parts live beside it:
``config_files`` (reading the TOML file safely, the nesting limit), ``config_env`` (the
variables), ``config_schema`` (what a setting's type is) and ``config_messages`` (the text of
each ``ConfigError``).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ultrathink.config_env import ENV_PREFIX as ENV_PREFIX
from ultrathink.config_env import from_env
from ultrathink.config_files import MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH, check_depth, read_toml
from ultrathink.config_messages import Sources, describe, dotted, plain, shown, where
from ultrathink.engine.config import EngineConfig, SizingConfig
from ultrathink.errors import ConfigError
from ultrathink.execution.costs import REALISTIC_COSTS, PaperBrokerConfig
from ultrathink.risk.config import PRODUCTION_LIMITS, RiskConfig

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_DEPTH",
    "EngineConfig",
    "PaperBrokerConfig",
    "RiskConfig",
    "SizingConfig",
    "default_db_path",
    "engine_config_from_values",
    "load_engine_config",
]


def default_db_path() -> Path:
    """Where the SQLite store lives when ``--db`` is not given."""
    if os.environ.get("ULTRATHINK_DB"):
        return Path(os.environ["ULTRATHINK_DB"])
    home = os.environ.get("ULTRATHINK_HOME")
    return (Path(home) if home else Path(".ultrathink")) / "ultrathink.db"


def realistic_defaults() -> dict[str, Any]:
    """Costs and limits of paper sessions and ``ultrathink run``, as config values."""
    return {
        "broker": REALISTIC_COSTS.model_dump(),
        "risk": PRODUCTION_LIMITS.model_dump(),
        "kill_switch": {"on_limit_breach": True, "flatten": True},
        "rate_limits": {},  # RateLimitConfig defaults: 100 orders/s, cancels 1,000/s
        "hardening": {"enabled": True},  # breakers, fallbacks, degraded mode
    }


def load_engine_config(
    path: str | Path | None = None,
    *,
    base: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    other_tables: Collection[str] = (),
) -> EngineConfig:
    """Build an ``EngineConfig`` from ``base`` < TOML file < environment < ``overrides``.

    ``other_tables`` are top-level tables of the file that belong to the calling command
    (e.g. ``optimize``'s ``[space]``), not to the engine: they are left out.

    Raises
    ------
    ConfigError
        If the file cannot be read or is not a small UTF-8 TOML file, an environment value
        does not parse, a key is unknown, or a value is invalid (one line, naming where the
        value was set).
    """
    values: dict[str, Any] = {}
    sources: Sources = {}
    _layer(values, sources, base or {}, "the defaults")
    if path is not None:
        table = {k: v for k, v in read_toml(Path(path)).items() if k not in other_tables}
        _layer(values, sources, table, f"config file {plain(path)}")
    for name, parsed in from_env(os.environ if environ is None else environ):
        _layer(values, sources, parsed, f"environment variable {plain(name)}")
    _layer(values, sources, overrides or {}, "the command line")
    return _validate(values, sources)


def engine_config_from_values(values: Mapping[str, Any], source: str) -> EngineConfig:
    """Validate stored config ``values`` (e.g. a run's JSON config); ``ConfigError`` if bad.

    ``source`` says where they come from in the message, e.g. ``"the stored config of run 3"``.
    """
    check_depth(values, source)
    merged: dict[str, Any] = {}
    sources: Sources = {}
    _layer(merged, sources, values, source)
    return _validate(merged, sources)


def _validate(values: dict[str, Any], sources: Sources) -> EngineConfig:
    try:
        return EngineConfig(**values)
    except ValidationError as exc:
        raise ConfigError(describe(exc, sources)) from None


# -- layering --------------------------------------------------------------------------------


def _layer(into: dict[str, Any], sources: Sources, new: Mapping[str, Any], source: str) -> None:
    _merge(into, new, sources, (), source)


def _merge(
    into: dict[str, Any],
    new: Mapping[str, Any],
    sources: Sources,
    prefix: tuple[str, ...],
    source: str,
) -> None:
    # sources: the layer that set each leaf (and each table that stayed empty)
    for key, value in new.items():
        path = (*prefix, key)
        if isinstance(value, Mapping):
            if into.get(key) is not None and not isinstance(into[key], dict):
                # e.g. `risk = 5` in the file: a later [risk] table must not hide it
                raise ConfigError(
                    f"invalid configuration: {dotted(path)} must be a table of settings, was "
                    f"{shown(into[key])}{where(path, sources)}"
                )
            if into.get(key) is None:  # None (a switched-off section) becomes a table
                _forget(sources, path)
                into[key] = {}
            _merge(into[key], value, sources, path, source)
            if not into[key]:
                sources.setdefault(path, source)
        else:
            _forget(sources, path)
            into[key] = value
            sources[path] = source


def _forget(sources: Sources, path: tuple[str, ...]) -> None:
    for old in [p for p in sources if p[: len(path)] == path]:
        del sources[old]
