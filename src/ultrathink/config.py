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
``ULTRATHINK__RISK__MAX_DRAWDOWN_PCT=20``). Where the store lives: ``--db PATH``, else
``$ULTRATHINK_DB``, else ``$ULTRATHINK_HOME/ultrathink.db``, else ``./.ultrathink/ultrathink.db``.
Unknown keys and bad values are refused with a message that names them.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ultrathink.engine.config import EngineConfig, SizingConfig
from ultrathink.errors import ConfigError
from ultrathink.execution.costs import REALISTIC_COSTS, PaperBrokerConfig
from ultrathink.risk.config import PRODUCTION_LIMITS, RiskConfig

ENV_PREFIX = "ULTRATHINK__"

__all__ = [
    "EngineConfig",
    "PaperBrokerConfig",
    "RiskConfig",
    "SizingConfig",
    "default_db_path",
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
) -> EngineConfig:
    """Build an ``EngineConfig`` from ``base`` < TOML file < environment < ``overrides``.

    Raises
    ------
    ConfigError
        If the file is missing or not TOML, or a key is unknown, or a value is invalid.
    """
    values: dict[str, Any] = _deep_copy(base or {})
    if path is not None:
        _merge(values, _read_toml(Path(path)))
    _merge(values, _from_env(os.environ if environ is None else environ))
    _merge(values, _deep_copy(overrides or {}))
    try:
        return EngineConfig(**values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in key[len(ENV_PREFIX) :].split("__") if p]
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = raw
    return out


def _merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = _deep_copy(value) if isinstance(value, Mapping) else value


def _deep_copy(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in values.items()}


def _describe(exc: ValidationError, path: str | Path | None) -> str:
    where = f" (from {path} and the environment)" if path else ""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}, was {err.get('input')!r}")
    return f"invalid configuration{where}: " + "; ".join(parts)
