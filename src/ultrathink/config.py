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
"""

from __future__ import annotations

import os
import stat
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from ultrathink.engine.config import EngineConfig, SizingConfig
from ultrathink.errors import ConfigError
from ultrathink.execution.costs import REALISTIC_COSTS, PaperBrokerConfig
from ultrathink.risk.config import PRODUCTION_LIMITS, RiskConfig

ENV_PREFIX = "ULTRATHINK__"
#: A configuration is a few hundred bytes; a larger file is not one.
MAX_CONFIG_BYTES = 1024 * 1024
#: Tables and arrays nest at most 3 deep in ``EngineConfig`` (``rate_limits.windows[0]``).
MAX_CONFIG_DEPTH = 8
_SHOWN_CHARS = 60  # of a bad value in an error message
_SHOWN_ERRORS = 3  # problems listed in one message; the rest are counted

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

Sources = dict[tuple[str, ...], str]


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
        If the file cannot be read or is not a small UTF-8 TOML file, an environment value
        does not parse, a key is unknown, or a value is invalid (one line, naming where the
        value was set).
    """
    values: dict[str, Any] = {}
    sources: Sources = {}
    _layer(values, sources, base or {}, "the defaults")
    if path is not None:
        _layer(values, sources, _read_toml(Path(path)), f"config file {_plain(path)}")
    for name, parsed in _from_env(os.environ if environ is None else environ):
        _layer(values, sources, parsed, f"environment variable {_plain(name)}")
    _layer(values, sources, overrides or {}, "the command line")
    return _validate(values, sources)


def engine_config_from_values(values: Mapping[str, Any], source: str) -> EngineConfig:
    """Validate stored config ``values`` (e.g. a run's JSON config); ``ConfigError`` if bad.

    ``source`` says where they come from in the message, e.g. ``"the stored config of run 3"``.
    """
    _check_depth(values, source)
    merged: dict[str, Any] = {}
    sources: Sources = {}
    _layer(merged, sources, values, source)
    return _validate(merged, sources)


def _validate(values: dict[str, Any], sources: Sources) -> EngineConfig:
    try:
        return EngineConfig(**values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, sources)) from None


# -- the TOML file ---------------------------------------------------------------------------


def _read_toml(path: Path) -> dict[str, Any]:
    shown = _plain(path)
    data = _read_capped(path, shown)
    try:
        text = data.decode("utf-8-sig")  # an editor's byte-order mark is not content
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {shown} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); a config is a UTF-8 TOML file: save it as UTF-8"
        ) from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {shown} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(_too_deep(f"config file {shown}")) from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise ConfigError(
            f"config file {shown} holds a number Python will not read "
            f"({str(exc).partition(':')[0]}); no setting needs such a number"
        ) from None
    _check_depth(values, f"config file {shown}")
    return values


def _read_capped(path: Path, shown: str) -> bytes:
    # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ConfigError(f"config file {shown} not found; check the --config path") from None
    except PermissionError:
        raise ConfigError(
            f"config file {shown} cannot be read: permission denied; make it readable by "
            "this user (e.g. chmod u+r) or pass another --config"
        ) from None
    except IsADirectoryError:
        raise ConfigError(_is_directory(shown)) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise ConfigError(f"config file {shown} cannot be opened: {_reason(exc)}") from None
    try:
        return _read_regular(fd, shown)
    finally:
        os.close(fd)


def _read_regular(fd: int, shown: str) -> bytes:
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode):
        raise ConfigError(_is_directory(shown))
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise ConfigError(
            f"config file {shown} is {kind}, not a regular file; pass the path of a TOML file"
        )
    chunks, n_bytes = [], 0
    while chunk := _read_chunk(fd, shown):
        n_bytes += len(chunk)
        if n_bytes > MAX_CONFIG_BYTES:  # checked while reading: the file may be growing
            raise ConfigError(
                f"config file {shown} is larger than {MAX_CONFIG_BYTES} bytes (the limit); "
                "a configuration is a few hundred bytes: pass the right file"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _read_chunk(fd: int, shown: str) -> bytes:
    try:
        return os.read(fd, 64 * 1024)
    except OSError as exc:
        raise ConfigError(f"config file {shown} cannot be read: {_reason(exc)}") from None


def _is_directory(shown: str) -> str:
    return (
        f"config file {shown} is a directory; pass the path of a TOML file "
        "(e.g. --config ultrathink.toml)"
    )


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _too_deep(where: str) -> str:
    return (
        f"{where} nests tables or arrays more than {MAX_CONFIG_DEPTH} levels deep; no setting "
        "nests that deep: check the brackets"
    )


def _check_depth(value: Any, where: str) -> None:
    # iterative: a deep value must not blow the stack here, in merging or in pydantic
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping | list):
            if depth >= MAX_CONFIG_DEPTH:
                raise ConfigError(_too_deep(where))
            children = item.values() if isinstance(item, Mapping) else item
            stack.extend((child, depth + 1) for child in children)


# -- the environment -------------------------------------------------------------------------


def _from_env(environ: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    claimed: dict[tuple[str, ...], str] = {}
    for name in sorted(k for k in environ if k.startswith(ENV_PREFIX)):
        parts = tuple(p.lower() for p in name[len(ENV_PREFIX) :].split("__"))
        if not all(parts):
            raise ConfigError(
                f"environment variable {_plain(name)} does not name a setting; use "
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
                f"environment variables {_plain(other)} and {_plain(name)} both set "
                f"{_dotted(parts[:n])}; "
                "unset one of them"
            )
    claimed[parts] = name


def _env_value(name: str, parts: tuple[str, ...], raw: str) -> Any:
    annotation = _annotation_at(parts)
    if annotation is None or _takes_text(annotation):
        return raw  # an unknown key is refused by validation, naming it
    try:
        parsed = tomllib.loads(f"value = {raw}")
    except (ValueError, RecursionError):  # TOMLDecodeError is a ValueError
        parsed = {}
    if set(parsed) != {"value"}:  # not one TOML value (or a newline smuggled a second key)
        expected, example = _expected(annotation)
        raise ConfigError(
            f"environment variable {_plain(name)} sets {_dotted(parts)}, which must be "
            f"{expected}, to {_shown(raw)}; e.g. {_plain(name)}={example}"
        )
    _check_depth(parsed["value"], f"environment variable {_plain(name)}")
    return parsed["value"]


def _annotation_at(parts: tuple[str, ...]) -> Any:
    model: type[BaseModel] | None = EngineConfig
    annotation: Any = None
    for part in parts:
        if part.isdigit():  # an array index: the element model was resolved already
            continue
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            return None
        annotation = field.annotation
        model = _model_in(annotation)
    return annotation


def _flat_args(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) for a in _flat_args(arg)]
    return [annotation]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for arg in _flat_args(annotation):
        if typing.get_origin(arg) is tuple:  # tuple[RateWindow, ...]
            return _model_in(typing.get_args(arg)[0])
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _takes_text(annotation: Any) -> bool:
    args = [a for a in _flat_args(annotation) if a is not type(None)]
    return bool(args) and all(
        a is str
        or (typing.get_origin(a) is Literal and all(isinstance(v, str) for v in typing.get_args(a)))
        for a in args
    )


def _expected(annotation: Any) -> tuple[str, str]:
    args = _flat_args(annotation)
    if _model_in(annotation) is not None:
        if any(typing.get_origin(a) is tuple for a in args):
            return "a TOML array", "'[{limit = 50, per_s = 1.0}]'"
        return "a TOML inline table", "'{key = 1}'"
    if bool in args:
        return "true or false", "true"
    if int in args and float not in args:
        return "a whole number", "100"
    return "a number", "20"


# -- merging and messages --------------------------------------------------------------------


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
                    f"invalid configuration: {_dotted(path)} must be a table of settings, was "
                    f"{_shown(into[key])}{_where(path, sources)}"
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


def _describe(exc: ValidationError, sources: Sources) -> str:
    errors = exc.errors()
    parts = []
    for err in errors[:_SHOWN_ERRORS]:
        loc = tuple(str(p) for p in err["loc"])
        where = _where(loc[:-1] if err["type"] == "missing" else loc, sources)
        parts.append(f"{_dotted(loc) or 'the configuration'}{_rule(err, loc)}{where}")
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
        known = _model_in(_annotation_at(loc[:-1])) if len(loc) > 1 else EngineConfig
        names = ", ".join(known.model_fields) if known is not None else "none"
        return f" is not a setting (known here: {names}), was {_shown(value)}; remove or rename it"
    if kind == "value_error":  # our own validators: their message names the value and the fix
        return ": " + _one_line(err["msg"].removeprefix("Value error, "))
    rule = rules.get(kind) or err["msg"].replace("Input should be", "must be", 1)
    return f" {_one_line(rule)}, was {_shown(value)}"


def _where(loc: tuple[str, ...], sources: Sources) -> str:
    # the layer that set the value, or the values in the table of a table's error
    found = [s for p, s in sources.items() if p[: len(loc)] == loc]
    found = found or [s for p, s in sources.items() if loc[: len(p)] == p]
    named = list(dict.fromkeys(s for s in found if s != "the defaults"))
    return f" (set by {' and '.join(named)})" if named else ""


def _dotted(loc: tuple[str, ...]) -> str:
    return ".".join(p if p.isprintable() and len(p) <= 40 else _shown(p) for p in loc)


def _shown(value: Any) -> str:
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


def _plain(text: str | Path) -> str:
    # a path or a variable name as typed, unless it holds characters a terminal would act on
    text = str(text)
    return text if text.isprintable() else repr(text)
