"""The TOML file of ``ultrathink.config``, read safely, and the nesting limit of any value.

``read_toml`` accepts only a regular file of at most ``MAX_CONFIG_BYTES`` bytes (capped while
reading: the file may be growing), UTF-8 with an optional byte-order mark, that is valid TOML
nested at most ``MAX_CONFIG_DEPTH`` deep. A FIFO is opened without blocking and refused, as is
a directory or a device. Anything else is one ``ConfigError`` line saying what to do.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ultrathink.config_messages import plain
from ultrathink.errors import ConfigError

#: A configuration is a few hundred bytes; a larger file is not one.
MAX_CONFIG_BYTES = 1024 * 1024
#: Tables and arrays nest at most 3 deep in ``EngineConfig`` (``rate_limits.windows[0]``).
MAX_CONFIG_DEPTH = 8


def read_toml(path: Path) -> dict[str, Any]:
    """The values of the config file at ``path``; ``ConfigError`` if it is not a small,
    regular, UTF-8 TOML file nested at most ``MAX_CONFIG_DEPTH`` deep."""
    shown = plain(path)
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
    check_depth(values, f"config file {shown}")
    return values


def check_depth(value: Any, where: str) -> None:
    """``ConfigError`` if ``value`` nests tables or arrays ``MAX_CONFIG_DEPTH`` or more deep."""
    # iterative: a deep value must not blow the stack here, in merging or in pydantic
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping | list):
            if depth >= MAX_CONFIG_DEPTH:
                raise ConfigError(_too_deep(where))
            children = item.values() if isinstance(item, Mapping) else item
            stack.extend((child, depth + 1) for child in children)


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
